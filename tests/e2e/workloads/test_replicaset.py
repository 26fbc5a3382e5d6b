"""ReplicaSets end to end: replicas, ownership, adoption, release, deletion order, status."""

from __future__ import annotations

from apiclient.resources import PODS, REPLICASETS
from tests.e2e.workloads.conftest import Cluster, eventually


def replicaset(name: str, replicas: int, *, min_ready_seconds: int = 0) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready_seconds,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "tier": "web"}},
                                  "spec": {"containers": [{
                                      "name": "web", "image": "localhost/keelson/busybox:1",
                                      "command": ["sleep", "3600"]}]}}}}


def bare_pod(name: str, labels: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "localhost/keelson/busybox:1"}]}}


async def rs_status(cluster: Cluster, name: str) -> dict:
    return (await cluster.client.get(REPLICASETS, name, namespace=cluster.namespace))["status"]


async def test_creates_owned_pods_and_reports_status(cluster: Cluster) -> None:
    rs = await cluster.client.create(REPLICASETS, replicaset("web", 3),
                                     namespace=cluster.namespace)

    async def all_ready() -> bool:
        status = await rs_status(cluster, "web")
        return status.get("readyReplicas") == 3 and status.get("availableReplicas") == 3
    await eventually(all_ready)
    status = await rs_status(cluster, "web")
    assert status["replicas"] == 3 and status["fullyLabeledReplicas"] == 3
    assert status["observedGeneration"] == 1
    pods = await cluster.pods(label_selector="app=web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith("web-")
        [ref] = pod["metadata"]["ownerReferences"]
        assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                       "uid": rs["metadata"]["uid"], "controller": True,
                       "blockOwnerDeletion": True}
        assert pod["metadata"]["labels"] == {"app": "web", "tier": "web"}


async def test_replaces_deleted_pods(cluster: Cluster) -> None:
    await cluster.client.create(REPLICASETS, replicaset("web", 2), namespace=cluster.namespace)

    async def two() -> list[dict]:
        pods = await cluster.pods(label_selector="app=web")
        return pods if len(pods) == 2 else []
    first = await eventually(two)
    await cluster.client.delete(PODS, first[0]["metadata"]["name"], namespace=cluster.namespace)

    async def replaced() -> bool:
        pods = await cluster.pods(label_selector="app=web")
        names = {p["metadata"]["name"] for p in pods}
        return len(pods) == 2 and first[0]["metadata"]["name"] not in names
    await eventually(replaced)


async def test_adopts_matching_orphans_and_releases_relabelled_pods(cluster: Cluster) -> None:
    await cluster.client.create(PODS, bare_pod("orphan", {"app": "web"}),
                                namespace=cluster.namespace)
    rs = await cluster.client.create(REPLICASETS, replicaset("web", 2),
                                     namespace=cluster.namespace)

    async def adopted() -> bool:
        pod = await cluster.client.get(PODS, "orphan", namespace=cluster.namespace)
        refs = pod["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs] == [rs["metadata"]["uid"]]
    await eventually(adopted)
    # The orphan counts: only one more pod was needed.
    await eventually(lambda: _count(cluster, "app=web", 2))
    await cluster.client.patch(PODS, "orphan", {"metadata": {"labels": {"app": "other"}}},
                               namespace=cluster.namespace)

    async def released() -> bool:
        pod = await cluster.client.get(PODS, "orphan", namespace=cluster.namespace)
        return not pod["metadata"].get("ownerReferences")
    await eventually(released)
    await eventually(lambda: _count(cluster, "app=web", 2))


async def _count(cluster: Cluster, selector: str, wanted: int) -> bool:
    return len(await cluster.pods(label_selector=selector)) == wanted


async def test_scale_down_deletes_not_ready_pods_first(cluster: Cluster) -> None:
    await cluster.client.create(REPLICASETS, replicaset("web", 2), namespace=cluster.namespace)
    await eventually(lambda: _ready_count(cluster, 2))
    cluster.ready = False
    await cluster.kubectl("scale", "replicaset/web", "--replicas=4")
    await eventually(lambda: _count(cluster, "app=web", 4))
    ready_names = {p["metadata"]["name"] for p in await cluster.pods(label_selector="app=web")
                   if _is_ready(p)}
    assert len(ready_names) == 2
    await cluster.kubectl("scale", "replicaset/web", "--replicas=2")
    await eventually(lambda: _count(cluster, "app=web", 2))
    remaining = {p["metadata"]["name"] for p in await cluster.pods(label_selector="app=web")}
    assert remaining == ready_names


async def test_min_ready_seconds_delays_availability(cluster: Cluster) -> None:
    await cluster.client.create(REPLICASETS, replicaset("web", 1, min_ready_seconds=2),
                                namespace=cluster.namespace)
    await eventually(lambda: _ready_count(cluster, 1))
    status = await rs_status(cluster, "web")
    assert status["readyReplicas"] == 1 and status["availableReplicas"] == 0

    async def available() -> bool:
        return (await rs_status(cluster, "web")).get("availableReplicas") == 1
    await eventually(available, timeout=6)


def _is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def _ready_count(cluster: Cluster, wanted: int) -> bool:
    return (await rs_status(cluster, "web")).get("readyReplicas") == wanted
