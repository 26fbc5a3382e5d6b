"""Node heartbeat knobs and the agent's status report after the controller marked it Unknown.

``--node-monitor-grace-period`` reaches the node lifecycle controller; the agent's Lease
duration (renewed every quarter of it) can be shortened for tests; and a status report is
sent whenever the server's conditions differ from ours, even if ours did not change.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from apiclient.controller import SharedInformers
from apiclient.resources import NODES
from controllers import ControllerManagerOptions, default_controllers
from controllers.nodelifecycle import NodeLifecycleController, unknown_conditions
from nodeagent import node_status
from nodeagent.node_status import NodeFacts, NodeReporter, lease_duration_seconds

KEELSON = Path(sys.executable).with_name("keelson")
FACTS = NodeFacts(cpu_count=2, memory_total=8 * 2**30, memory_available=4 * 2**30,
                  disk_total=100 * 2**30, disk_available=50 * 2**30, pids_in_use=200,
                  pid_max=32768, internal_ip="192.0.2.7", hostname="node-a", kernel="6.1.0",
                  os_image="Debian", architecture="amd64", machine_id="m", boot_id="b",
                  runtime_version="20.10.24")


def test_the_grace_period_reaches_the_node_lifecycle_controller() -> None:
    factories = default_controllers(ControllerManagerOptions(node_monitor_grace_period=4))
    informers = SharedInformers(client=None)  # type: ignore[arg-type]  (never started)
    built = [factory(None, informers) for factory in factories]  # type: ignore[arg-type]
    lifecycle = [c for c in built if isinstance(c, NodeLifecycleController)]
    assert [c.grace_period_seconds for c in lifecycle] == [4]


def test_a_grace_period_that_cannot_work_is_a_one_line_usage_error() -> None:
    result = subprocess.run([str(KEELSON), "apiserver", "--data-dir", "/tmp/kt-cli",
                             "--node-monitor-grace-period", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--node-monitor-grace-period" in result.stderr


def test_lease_duration_defaults_to_kubelets_and_can_be_shortened(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEELSON_NODE_LEASE_DURATION_SECONDS", raising=False)
    assert lease_duration_seconds() == 40
    monkeypatch.setenv("KEELSON_NODE_LEASE_DURATION_SECONDS", "4")
    assert lease_duration_seconds() == 4
    for bad in ("0", "1.5", "soon"):
        monkeypatch.setenv("KEELSON_NODE_LEASE_DURATION_SECONDS", bad)
        with pytest.raises(ValueError, match="KEELSON_NODE_LEASE_DURATION_SECONDS"):
            lease_duration_seconds()


class FakeNodes:
    """The apiserver's copy of one Node: get returns it, a merge patch of status updates it."""

    def __init__(self) -> None:
        self.node: dict[str, Any] = {"metadata": {"name": "node-a"}, "spec": {}, "status": {}}
        self.patches = 0

    async def get(self, resource: object, name: str) -> dict[str, Any]:
        assert resource is NODES and name == "node-a"
        return copy.deepcopy(self.node)

    async def create(self, resource: object, body: dict[str, Any]) -> dict[str, Any]:
        self.node = {**copy.deepcopy(body), "status": {}}
        return copy.deepcopy(self.node)

    async def patch(self, resource: object, name: str, body: dict[str, Any], *,
                    subresource: str, patch_type: str) -> dict[str, Any]:
        assert (resource, subresource, patch_type) == (NODES, "status", "merge")
        self.node["status"] = {**self.node["status"], **copy.deepcopy(body["status"])}
        self.patches += 1
        return copy.deepcopy(self.node)


def ready(server: FakeNodes) -> tuple[str, str]:
    condition = next(c for c in server.node["status"]["conditions"] if c["type"] == "Ready")
    return condition["status"], condition["reason"]


async def test_a_node_marked_unknown_while_silent_reports_ready_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_status, "gather_facts", lambda **_: FACTS)
    server = FakeNodes()
    reporter = NodeReporter(server, node_name="node-a", max_pods=110,  # type: ignore[arg-type]
                            kubelet_port=10250, data_dir="/tmp",
                            runtime_version=lambda: "20.10.24", runtime_healthy=lambda: True)
    await reporter.register()
    assert ready(server) == ("True", "KubeletReady")
    assert await reporter.report_status() is False  # nothing changed: no write

    # The node lifecycle controller's write while the agent was silent (every condition).
    server.node["status"]["conditions"] = unknown_conditions(server.node,
                                                             now="2026-11-25T00:00:00Z")
    assert ready(server) == ("Unknown", "NodeStatusUnknown")

    assert await reporter.report_status() is True
    assert ready(server) == ("True", "KubeletReady")
    assert {c["status"] for c in server.node["status"]["conditions"]} == {"True", "False"}
    assert await reporter.report_status() is False
    assert server.patches == 2
