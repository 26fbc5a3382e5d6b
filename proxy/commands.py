"""Running the netfilter command-line tools, optionally inside a named network namespace.

One seam for the external commands the proxy runs (iptables, iptables-save, conntrack,
sysctl; iptables-restore streams its input itself, see iptables/restore.py), so functional
tests and the benchmark can point a whole proxier at a private namespace
("ip netns exec NAME ...") and unit tests can replace it with a fake.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _argv(argv: Sequence[str], netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


async def run(argv: Sequence[str], *, netns: str | None = None) -> CommandResult:
    """Run a command without blocking the event loop; never raises for a non-zero exit."""
    process = await asyncio.create_subprocess_exec(
        *_argv(argv, netns),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    return CommandResult(process.returncode or 0, stdout, stderr)


def run_sync(
    argv: Sequence[str], *, input_bytes: bytes | None = None, netns: str | None = None
) -> CommandResult:
    """Blocking variant for one-shot actions (``--cleanup``, backend detection)."""
    completed = subprocess.run(
        _argv(argv, netns), input=input_bytes, capture_output=True, check=False
    )
    return CommandResult(completed.returncode, completed.stdout, completed.stderr)
