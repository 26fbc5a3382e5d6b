"""Node agent: the kubelet loop (pods as Docker containers, pod networking, status).

Public surface: ``AgentOptions`` and ``run_agent`` (the CLI and ``bench/`` use them); see
docs/nodeagent.md for the design. They are loaded on first use, so that a process that
only needs one submodule (a test, ``python -m nodeagent...``) does not import the whole
agent.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AgentOptions", "run_agent"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nodeagent import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'nodeagent' has no attribute {name!r}")
