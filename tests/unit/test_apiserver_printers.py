"""Table cells read like kubectl's: durations, pod status reasons, ports, selectors."""

from __future__ import annotations

import pytest

from apiserver import printers
from apiserver.handlers import table
from apiserver.handlers.discovery import resource_list
from apiserver.registry import Registry


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-0.5, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (8 * 3600, "8h"),
        (2 * 86400, "2d"),
        (2 * 86400 + 3600, "2d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert printers.human_duration(seconds) == text


def _pod(**status):
    return {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": status,
    }


def test_pod_status_running_and_ready_count() -> None:
    pod = _pod(
        phase="Running",
        containerStatuses=[
            {"name": "a", "ready": True, "restartCount": 0, "state": {"running": {}}},
            {
                "name": "b",
                "ready": False,
                "restartCount": 2,
                "state": {"running": {}},
                "lastState": {"terminated": {"finishedAt": "2000-01-01T00:00:00Z"}},
            },
        ],
    )
    assert printers.pod_status(pod) == "Running"
    assert printers.pod_ready(pod) == "1/2"
    assert printers.pod_restarts(pod).startswith("2 (")


def test_pod_status_prefers_waiting_reason_and_terminating() -> None:
    pod = _pod(
        phase="Running",
        containerStatuses=[{"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
    )
    assert printers.pod_status(pod) == "CrashLoopBackOff"
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert printers.pod_status(pod) == "Terminating"


def test_pod_status_init_containers() -> None:
    pod = _pod(
        phase="Pending",
        initContainerStatuses=[{"name": "i", "state": {"terminated": {"exitCode": 1}}}],
    )
    pod["spec"]["initContainers"] = [{"name": "i"}]
    assert printers.pod_status(pod) == "Init:ExitCode:1"


def test_service_columns() -> None:
    svc = {
        "spec": {
            "type": "NodePort",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
            "selector": {"b": "2", "a": "1"},
        }
    }
    assert printers.service_ports(svc) == "80:30080/TCP,53/UDP"
    assert printers.service_external_ip(svc) == "<none>"
    assert printers.service_selector(svc) == "a=1,b=2"
    svc["spec"]["type"] = "LoadBalancer"
    assert printers.service_external_ip(svc) == "<pending>"


def test_endpoints_summary_caps_at_three() -> None:
    ep = {
        "subsets": [
            {"addresses": [{"ip": f"10.0.0.{i}"} for i in range(5)], "ports": [{"port": 80}]}
        ]
    }
    assert printers.endpoints_summary(ep) == "10.0.0.0:80,10.0.0.1:80,10.0.0.2:80 + 2 more..."


def test_wants_table() -> None:
    kubectl = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    assert table.wants_table(kubectl)
    assert not table.wants_table("application/json")
    assert not table.wants_table("")


def test_table_has_wide_columns_and_metadata_rows() -> None:
    pods = Registry().lookup("", "v1", "pods")
    assert pods is not None
    result = table.table(pods, [_pod(phase="Pending")], resource_version="7")
    names = [c["name"] for c in result["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert {"IP", "Node"} <= {c["name"] for c in result["columnDefinitions"] if c["priority"]}
    assert result["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_discovery_lists_subresources_with_their_kinds() -> None:
    entries = {r["name"]: r for r in resource_list(Registry(), "apps", "v1")["resources"]}
    assert entries["deployments"]["shortNames"] == ["deploy"]
    assert entries["deployments/scale"]["kind"] == "Scale"
    assert entries["deployments/scale"]["group"] == "autoscaling"
