"""EndpointSlices and Endpoints end to end: what a Service's readers see for its pods."""

from __future__ import annotations

from apiclient.meta import parse_time
from apiclient.resources import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES
from tests.e2e.workloads.conftest import Cluster, eventually

MANAGED = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"


def service(name: str, *, selector: dict | None) -> dict:
    spec: dict = {"ports": [{"name": "http", "port": 80, "targetPort": "web"},
                            {"name": "metrics", "port": 9100, "targetPort": 9100}]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"team": "a"}}, "spec": spec}


def pod(name: str, *, web_port: int, node: str | None = "node-a") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "localhost/keelson/busybox:1",
                                  "ports": [{"name": "web", "containerPort": web_port}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}


async def slices_of(cluster: Cluster, name: str) -> list[dict]:
    listing = await cluster.client.list(
        ENDPOINTSLICES, namespace=cluster.namespace,
        label_selector=f"kubernetes.io/service-name={name},{MANAGED}")
    return listing["items"]


def endpoints_by_pod(slices: list[dict]) -> dict[str, tuple[dict, dict]]:
    return {e["targetRef"]["name"]: (e, s) for s in slices for e in s["endpoints"]}


async def test_slice_lists_ready_pods_with_resolved_ports(cluster: Cluster) -> None:
    svc = await cluster.client.create(SERVICES, service("web", selector={"app": "web"}),
                                      namespace=cluster.namespace)
    await cluster.client.create(PODS, pod("a", web_port=8080), namespace=cluster.namespace)
    await cluster.client.create(PODS, pod("b", web_port=8081), namespace=cluster.namespace)

    async def two_endpoints() -> dict:
        found = endpoints_by_pod(await slices_of(cluster, "web"))
        return found if len(found) == 2 else {}
    found = await eventually(two_endpoints)
    a_pod = await cluster.client.get(PODS, "a", namespace=cluster.namespace)
    endpoint, endpoint_slice = found["a"]
    assert endpoint == {
        "addresses": [a_pod["status"]["podIP"]],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "nodeName": "node-a",
        "targetRef": {"kind": "Pod", "namespace": cluster.namespace, "name": "a",
                      "uid": a_pod["metadata"]["uid"]},
    }
    assert endpoint_slice["addressType"] == "IPv4"
    assert sorted((p["name"], p["port"]) for p in endpoint_slice["ports"]) == [
        ("http", 8080), ("metrics", 9100)]
    # Pod b names a different container port: it gets a slice of its own port set.
    assert sorted((p["name"], p["port"]) for p in found["b"][1]["ports"]) == [
        ("http", 8081), ("metrics", 9100)]
    meta = endpoint_slice["metadata"]
    assert meta["name"].startswith("web-")
    assert meta["labels"]["team"] == "a"
    assert meta["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
    assert meta["ownerReferences"][0]["kind"] == "Service"
    trigger = parse_time(meta["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"])
    assert trigger >= parse_time(svc["metadata"]["creationTimestamp"])

    endpoints = await cluster.client.get(ENDPOINTS, "web", namespace=cluster.namespace)
    ips = sorted(a["ip"] for s in endpoints["subsets"] for a in s["addresses"])
    assert len(ips) == 2
    assert endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"
    assert "endpoints.kubernetes.io/last-change-trigger-time" in endpoints["metadata"][
        "annotations"]


async def test_not_ready_and_terminating_conditions(cluster: Cluster) -> None:
    await cluster.client.create(SERVICES, service("web", selector={"app": "web"}),
                                namespace=cluster.namespace)
    cluster.ready = False
    cluster.finish_deletions = False  # keep terminating pods around, as a slow kubelet does
    await cluster.client.create(PODS, pod("slow", web_port=8080), namespace=cluster.namespace)

    async def not_ready() -> bool:
        found = endpoints_by_pod(await slices_of(cluster, "web"))
        return "slow" in found and found["slow"][0]["conditions"] == {
            "ready": False, "serving": False, "terminating": False}
    await eventually(not_ready)
    endpoints = await cluster.client.get(ENDPOINTS, "web", namespace=cluster.namespace)
    assert [len(s.get("notReadyAddresses", [])) for s in endpoints["subsets"]] == [1]
    assert not any(s.get("addresses") for s in endpoints["subsets"])

    await cluster.make_ready("slow")
    await cluster.client.delete(PODS, "slow", namespace=cluster.namespace)  # graceful: bound

    async def terminating() -> bool:
        found = endpoints_by_pod(await slices_of(cluster, "web"))
        return "slow" in found and found["slow"][0]["conditions"] == {
            "ready": False, "serving": True, "terminating": True}
    await eventually(terminating)

    async def left_endpoints() -> bool:
        current = await cluster.client.get(ENDPOINTS, "web", namespace=cluster.namespace)
        return not current.get("subsets")
    await eventually(left_endpoints)
    await cluster.client.delete(PODS, "slow", namespace=cluster.namespace,
                                grace_period_seconds=0)

    async def empty() -> bool:
        slices = await slices_of(cluster, "web")
        return len(slices) == 1 and slices[0]["endpoints"] == []
    await eventually(empty)


async def test_pods_without_ip_are_skipped(cluster: Cluster) -> None:
    await cluster.client.create(SERVICES, service("web", selector={"app": "web"}),
                                namespace=cluster.namespace)
    cluster.not_started.add("noip")  # the simulated kubelet never gives it an IP
    await cluster.client.create(PODS, pod("noip", web_port=8080), namespace=cluster.namespace)
    await cluster.client.create(PODS, pod("later", web_port=8080), namespace=cluster.namespace)

    # "later" was seen after "noip" on the same watch, so its slice reflects both pods.
    async def later_listed() -> set[str]:
        return set(endpoints_by_pod(await slices_of(cluster, "web")))
    assert await eventually(later_listed) == {"later"}


async def test_services_without_selector_are_left_alone(cluster: Cluster) -> None:
    await cluster.client.create(SERVICES, service("manual", selector=None),
                                namespace=cluster.namespace)
    await cluster.client.create(SERVICES, service("auto", selector={"app": "none"}),
                                namespace=cluster.namespace)
    await eventually(lambda: slices_of(cluster, "auto"))
    assert await slices_of(cluster, "manual") == []
    listing = await cluster.client.list(ENDPOINTS, namespace=cluster.namespace)
    assert [e["metadata"]["name"] for e in listing["items"]] == ["auto"]


async def test_slices_and_endpoints_go_with_the_service(cluster: Cluster) -> None:
    await cluster.client.create(SERVICES, service("web", selector={"app": "web"}),
                                namespace=cluster.namespace)
    await eventually(lambda: slices_of(cluster, "web"))
    await cluster.client.delete(SERVICES, "web", namespace=cluster.namespace)

    async def gone() -> bool:
        endpoints = await cluster.client.list(ENDPOINTS, namespace=cluster.namespace)
        return not await slices_of(cluster, "web") and not endpoints["items"]
    await eventually(gone)
