"""The ReplicaSet controller's pure parts: pod construction, deletion ranking, status
arithmetic. Its loop runs against a real apiserver in
tests/e2e/workloads/test_replicaset_alone.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apiclient.meta import format_time
from controllers.replicaset import (
    deletion_order,
    pod_from_template,
    replicaset_status,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def rs(replicas: int = 2, *, min_ready_seconds: int = 0) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 3},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready_seconds,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "v": "1"},
                                               "annotations": {"note": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def pod(name: str, *, node: str | None = "n1", phase: str = "Running",
        ready_for: float | None = 60.0, created_ago: float = 100.0, restarts: int = 0,
        labels: dict | None = None, deleting: bool = False) -> dict:
    conditions = []
    if ready_for is not None:
        conditions.append({"type": "Ready", "status": "True",
                           "lastTransitionTime": format_time(NOW - timedelta(seconds=ready_for))})
    meta: dict = {"name": name, "labels": labels if labels is not None else {"app": "web",
                                                                             "v": "1"},
                  "creationTimestamp": format_time(NOW - timedelta(seconds=created_ago))}
    if deleting:
        meta["deletionTimestamp"] = format_time(NOW)
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"restartCount": restarts}]}}


def test_pod_from_template_is_owned_and_named_after_the_replicaset() -> None:
    made = pod_from_template(rs())
    meta = made["metadata"]
    assert meta["generateName"] == "web-"
    assert meta["namespace"] == "ns"
    assert meta["labels"] == {"app": "web", "v": "1"}
    assert meta["annotations"] == {"note": "x"}
    assert meta["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                        "name": "web", "uid": "rs-uid", "controller": True,
                                        "blockOwnerDeletion": True}]
    assert made["spec"] == {"containers": [{"name": "c", "image": "i"}]}


def test_deletion_order_prefers_the_least_valuable_pods() -> None:
    pods = [
        pod("old-ready", ready_for=600, created_ago=900),
        pod("new-ready", ready_for=60, created_ago=100),
        pod("not-ready", ready_for=None),
        pod("pending", phase="Pending", ready_for=None),
        pod("unscheduled", node=None, phase="Pending", ready_for=None),
        pod("crashy", ready_for=600, created_ago=900, restarts=5),
    ]
    order = [p["metadata"]["name"] for p in sorted(pods, key=deletion_order)]
    assert order == ["unscheduled", "pending", "not-ready", "new-ready", "crashy", "old-ready"]


def test_newest_pod_goes_first_among_equals() -> None:
    pods = [pod("older", ready_for=None, created_ago=50),
            pod("newer", ready_for=None, created_ago=10)]
    assert [p["metadata"]["name"] for p in sorted(pods, key=deletion_order)] == ["newer",
                                                                                  "older"]


def test_status_counts_only_active_pods_and_honours_min_ready_seconds() -> None:
    pods = [pod("a", ready_for=60), pod("b", ready_for=5), pod("c", ready_for=None),
            pod("d", labels={"app": "web"}), pod("gone", deleting=True),
            pod("done", phase="Succeeded")]
    status = replicaset_status(rs(min_ready_seconds=30), pods, now=NOW)
    assert status == {"replicas": 4, "fullyLabeledReplicas": 3, "readyReplicas": 3,
                      "availableReplicas": 2, "observedGeneration": 3}
