"""The scheduler cache and scoring: assumed pods, releases, bursts and spreading."""

from __future__ import annotations

from scheduler.cache import PodInfo, SchedulerCache
from scheduler.scheduler import decide

OWNER = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "rs",
    "uid": "rs-uid",
    "controller": True,
}


def node(name: str, *, cpu: str = "1", memory: str = "4Gi") -> dict:
    return {
        "metadata": {"name": name, "labels": {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(
    name: str,
    *,
    cpu: str = "400m",
    node_name: str | None = None,
    phase: str = "Pending",
    owned: bool = False,
) -> dict:
    metadata: dict = {"name": name, "namespace": "ns"}
    if owned:
        metadata["ownerReferences"] = [OWNER]
    spec: dict = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": metadata, "spec": spec, "status": {"phase": phase}}


def cpu_used(cache: SchedulerCache, name: str) -> int:
    info = cache.node(name)
    return info.requested["cpu"] if info else 0


def test_an_assumed_pod_survives_unbound_updates_until_its_binding_shows() -> None:
    cache = SchedulerCache()
    cache.set_node(node("n1"))
    cache.assume(PodInfo.from_pod(pod("p")), "n1")
    assert cpu_used(cache, "n1") == 400
    assert cache.observe_pod(pod("p")) is False  # a status patch racing the binding
    assert cache.is_assumed("ns/p") and cpu_used(cache, "n1") == 400
    cache.observe_pod(pod("p", node_name="n1"))  # the binding is observed
    assert not cache.is_assumed("ns/p") and cache.is_placed("ns/p")
    assert cpu_used(cache, "n1") == 400
    cache.forget_assumed("ns/p")  # too late to forget: it is really there
    assert cpu_used(cache, "n1") == 400


def test_a_failed_binding_releases_what_was_assumed() -> None:
    cache = SchedulerCache()
    cache.set_node(node("n1"))
    cache.assume(PodInfo.from_pod(pod("p")), "n1")
    cache.forget_assumed("ns/p")
    assert not cache.is_placed("ns/p") and cpu_used(cache, "n1") == 0


def test_finished_and_deleted_pods_release_their_node() -> None:
    cache = SchedulerCache()
    cache.set_node(node("n1"))
    cache.observe_pod(pod("done", node_name="n1"))
    cache.observe_pod(pod("gone", node_name="n1"))
    assert cpu_used(cache, "n1") == 800
    assert cache.observe_pod(pod("done", node_name="n1", phase="Succeeded")) is True
    assert cache.delete_pod(pod("gone", node_name="n1")) is True
    assert cpu_used(cache, "n1") == 0
    assert cache.delete_pod(pod("never-seen")) is False


def test_pods_seen_before_their_node_still_count() -> None:
    cache = SchedulerCache()
    cache.observe_pod(pod("early", node_name="n1", cpu="1"))
    assert cache.nodes() == []  # no Node object yet: not a candidate
    cache.set_node(node("n1", cpu="1"))
    assert (
        decide(PodInfo.from_pod(pod("next")), cache.nodes()).message
        == "0/1 nodes are available: 1 Insufficient cpu."
    )
    cache.remove_node("n1")
    cache.set_node(node("n1", cpu="1"))  # back again: its pods were not forgotten
    assert cpu_used(cache, "n1") == 1000


def test_node_changes_report_whether_they_matter_for_scheduling() -> None:
    cache = SchedulerCache()
    assert cache.set_node(node("n1")) is True
    same = node("n1")
    same["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:00Z"
    assert cache.set_node(same) is False
    assert cache.set_node(node("n1", cpu="2")) is True


def test_a_burst_never_overcommits() -> None:
    cache = SchedulerCache()
    cache.set_node(node("a"))
    cache.set_node(node("b"))
    placed = []
    for index in range(5):
        info = PodInfo.from_pod(pod(f"p{index}"))
        decision = decide(info, cache.nodes())
        if decision.node:
            cache.assume(info, decision.node)
        placed.append(decision.node)
    assert sorted(n for n in placed if n) == ["a", "a", "b", "b"]
    assert placed[-1] is None


def test_replicas_spread_then_fill_the_least_allocated_node() -> None:
    cache = SchedulerCache()
    for name in ("a", "b", "c"):
        cache.set_node(node(name, cpu="4"))
    cache.observe_pod(pod("other", node_name="a", cpu="2"))  # a is the busiest
    chosen = []
    for index in range(4):
        info = PodInfo.from_pod(pod(f"r{index}", cpu="100m", owned=True))
        target = decide(info, cache.nodes()).node
        assert target is not None
        cache.assume(info, target)
        chosen.append(target)
    assert sorted(chosen[:3]) == ["a", "b", "c"]
    assert chosen[0] != "a"  # least allocated first
    assert chosen[3] != "a"
