"""Node lifecycle decisions: conditions to write, eviction times. Pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apiclient.meta import format_time
from controllers.nodelifecycle import eviction_due, unknown_conditions

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
UNREACHABLE = "node.kubernetes.io/unreachable"


def test_every_condition_becomes_unknown_keeping_heartbeats() -> None:
    node = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": "2026-11-24T11:00:00Z",
                },
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                },
            ]
        }
    }
    patch = unknown_conditions(node, now="2026-11-24T12:00:00Z")
    assert [(c["type"], c["status"], c["reason"]) for c in patch] == [
        ("Ready", "Unknown", "NodeStatusUnknown"),
        ("MemoryPressure", "Unknown", "NodeStatusUnknown"),
    ]
    assert patch[0]["message"] == "Kubelet stopped posting node status."
    assert patch[0]["lastHeartbeatTime"] == "2026-11-24T11:00:00Z"
    assert patch[0]["lastTransitionTime"] == "2026-11-24T12:00:00Z"


def test_nothing_to_write_when_ready_is_already_unknown() -> None:
    node = {"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert unknown_conditions(node, now="x") == []


def test_a_node_that_never_reported() -> None:
    patch = unknown_conditions({"status": {}}, now="t")
    assert patch == [
        {
            "type": "Ready",
            "status": "Unknown",
            "reason": "NodeStatusNeverUpdated",
            "message": "Kubelet never posted node status.",
            "lastTransitionTime": "t",
        }
    ]


def _pod(*tolerations: dict) -> dict:
    return {"spec": {"tolerations": list(tolerations)}}


def test_eviction_times_count_from_the_taint() -> None:
    taint = {
        "key": UNREACHABLE,
        "effect": "NoExecute",
        "timeAdded": format_time(NOW - timedelta(seconds=100)),
    }
    tolerate = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert eviction_due(_pod(), taint, now=NOW) == 200  # default 300 s
    assert eviction_due(_pod({**tolerate, "tolerationSeconds": 30}), taint, now=NOW) == -70
    assert eviction_due(_pod(tolerate), taint, now=NOW) is None
    other = {
        "key": "something-else",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 1,
    }
    assert eviction_due(_pod(other), taint, now=NOW) == 200


def test_a_taint_without_time_counts_from_now() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute"}
    assert eviction_due(_pod(), taint, now=NOW) == 300
