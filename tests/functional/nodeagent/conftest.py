"""Fixtures for privileged pod-network tests: throw-away namespaces, always removed.

The "host" namespace stands in for the node (bridge and host veths live there) so the real
host's links are never touched; "pod" namespaces stand in for sandboxes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator

import pytest
from pyroute2 import netns

pytestmark = pytest.mark.root

NETNS_DIR = "/var/run/netns"


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    created: list[str] = []

    def make(role: str) -> str:
        name = f"kt-{role}-{secrets.token_hex(3)}"
        netns.create(name)
        created.append(name)
        return f"{NETNS_DIR}/{name}"

    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    yield make
    for name in created:
        netns.remove(name)


@pytest.fixture
def host_netns(make_netns: Callable[[str], str]) -> str:
    return make_netns("host")


def run_in(namespace: str, *command: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", os.path.basename(namespace), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
