"""run_agent's start-up errors: one sentence a person can act on, nothing left running.

Only what needs no API server semantics stays here, on ``apiclient.testing``'s fake: a
runtime that is down fails the agent before it asks the API anything. Registration and
waiting for a pod CIDR run against the real apiserver
(``tests/e2e/nodeagent/test_agent_registration.py``).
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from apiclient.client import ApiClient
from apiclient.resources import NODES
from apiclient.testing import FakeApiServer
from nodeagent.agent import AgentError, AgentOptions, run_agent
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.runtime.interface import RuntimeUnavailableError


async def test_unreachable_runtime_is_a_clear_error(tmp_path):
    class DownRuntime(FakeRuntime):
        async def version(self) -> str:
            raise RuntimeUnavailableError("cannot reach dockerd: connection refused")

    async with FakeApiServer() as server, ApiClient(server.config()) as client:
        options = AgentOptions(kubeconfig="", node_name="kt-node", data_dir=str(tmp_path))

        with pytest.raises(AgentError, match="cannot talk to the container runtime"):
            await run_agent(options, client, registry=CollectorRegistry(), runtime=DownRuntime())

        assert (NODES, "kt-node") not in server.objects
