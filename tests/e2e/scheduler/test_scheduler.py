"""The scheduler against a real apiserver: binding, spreading, fit, unschedulable reasons."""

from __future__ import annotations

from apiclient.client import ApiClient
from apiclient.resources import EVENTS, PODS
from scheduler import Scheduler
from tests.support.apiserver import ApiServer

from .conftest import (
    NAMESPACE,
    controllers_running,
    create_node,
    create_pod,
    eventually,
    get_pod,
)


def _condition(pod: dict, kind: str) -> dict:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition["type"] == kind:
            return condition
    return {}


async def _node_of(api: ApiClient, name: str) -> str | None:
    return (await get_pod(api, name))["spec"].get("nodeName")


async def _unschedulable_message(api: ApiClient, name: str) -> str | None:
    condition = _condition(await get_pod(api, name), "PodScheduled")
    if condition.get("status") == "False" and condition.get("reason") == "Unschedulable":
        return condition["message"]
    return None


async def test_replicas_are_bound_to_different_nodes(apiserver: ApiServer,
                                                     client: ApiClient) -> None:
    for name in ("kt-a", "kt-b", "kt-c"):
        await create_node(client, name)
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "kt-rs",
             "uid": "2f6d2b1e-0000-4000-8000-000000000001", "controller": True}
    async with controllers_running(apiserver, [Scheduler]):
        for index in range(3):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"kt-web-{index}", "namespace": NAMESPACE,
                                "labels": {"app": "web"}, "ownerReferences": [owner]},
                   "spec": {"containers": [{"name": "main",
                                            "image": "localhost/keelson/busybox:1"}]}}
            await client.create(PODS, pod, namespace=NAMESPACE)

        async def placements() -> list[str] | None:
            nodes = [await _node_of(client, f"kt-web-{index}") for index in range(3)]
            return nodes if all(nodes) else None

        nodes = await eventually(placements, what="all three pods bound")
    assert sorted(nodes) == ["kt-a", "kt-b", "kt-c"]
    pod = await get_pod(client, "kt-web-0")
    assert _condition(pod, "PodScheduled")["status"] == "True"
    shown = apiserver.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").stdout
    for node in ("kt-a", "kt-b", "kt-c"):
        assert node in shown


async def test_unschedulable_reason_names_filters_and_pod_is_retried(
        apiserver: ApiServer, client: ApiClient) -> None:
    await create_node(client, "kt-plain", cpu="4")
    await create_node(client, "kt-ssd-1", cpu="1", labels={"disk": "ssd"})
    await create_node(client, "kt-ssd-2", cpu="1", labels={"disk": "ssd"})
    async with controllers_running(apiserver, [Scheduler]):
        await create_pod(client, "kt-big", cpu="2", nodeSelector={"disk": "ssd"})
        message = await eventually(lambda: _unschedulable_message(client, "kt-big"),
                                   what="PodScheduled=False")
        assert message == ("0/3 nodes are available: 1 node(s) didn't match Pod's node "
                           "affinity/selector, 2 Insufficient cpu.")

        async def failed_scheduling_event() -> list[dict]:
            events = await client.list(EVENTS, namespace=NAMESPACE,
                                       field_selector="involvedObject.name=kt-big")
            return [e for e in events["items"] if e["reason"] == "FailedScheduling"]

        events = await eventually(failed_scheduling_event, what="FailedScheduling event")
        assert events[0]["type"] == "Warning"
        assert events[0]["message"] == message
        described = apiserver.kubectl("describe", "pod", "kt-big", "-n", NAMESPACE).stdout
        assert "FailedScheduling" in described

        # A node that fits arrives: the waiting pod is retried without being touched.
        await create_node(client, "kt-ssd-big", cpu="4", labels={"disk": "ssd"})
        node = await eventually(lambda: _node_of(client, "kt-big"), what="kt-big bound")
    assert node == "kt-ssd-big"
    assert _condition(await get_pod(client, "kt-big"), "PodScheduled")["status"] == "True"


async def test_a_burst_does_not_overcommit_and_freed_room_is_used(
        apiserver: ApiServer, client: ApiClient) -> None:
    await create_node(client, "kt-one", cpu="1")
    await create_node(client, "kt-two", cpu="1")
    names = [f"kt-burst-{index}" for index in range(5)]
    for name in names:  # all pending before the scheduler starts: one burst
        await create_pod(client, name, cpu="400m")
    async with controllers_running(apiserver, [Scheduler]):

        async def settled() -> dict[str, str | None] | None:
            nodes = {name: await _node_of(client, name) for name in names}
            waiting = [name for name, node in nodes.items() if node is None]
            if len(waiting) == 1 and await _unschedulable_message(client, waiting[0]):
                return nodes
            return None

        nodes = await eventually(settled, what="four bound, one unschedulable")
        bound = [node for node in nodes.values() if node]
        assert sorted(bound) == ["kt-one", "kt-one", "kt-two", "kt-two"]
        waiting = next(name for name, node in nodes.items() if node is None)
        assert await _unschedulable_message(client, waiting) == \
            "0/2 nodes are available: 2 Insufficient cpu."

        victim = next(name for name, node in nodes.items() if node)
        await client.delete(PODS, victim, namespace=NAMESPACE, grace_period_seconds=0)
        assert await eventually(lambda: _node_of(client, waiting), what="freed room used") \
            == nodes[victim]


async def test_taints_cordon_readiness_ports_and_pod_count(apiserver: ApiServer,
                                                          client: ApiClient) -> None:
    taint = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    await create_node(client, "kt-tainted", taints=[taint])
    await create_node(client, "kt-notready", ready=False)
    await create_node(client, "kt-full", pods="1")
    await create_node(client, "kt-cordoned")
    apiserver.kubectl("cordon", "kt-cordoned")
    port = [{"containerPort": 80, "hostPort": 8080}]
    async with controllers_running(apiserver, [Scheduler]):
        await create_pod(client, "kt-first")
        assert await eventually(lambda: _node_of(client, "kt-first")) == "kt-full"
        await create_pod(client, "kt-second")
        message = await eventually(lambda: _unschedulable_message(client, "kt-second"))
        assert message == (
            "0/4 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint "
            "{dedicated: db}, 1 node(s) were not ready, 1 node(s) were unschedulable.")

        # Tolerating the taint opens kt-tainted; the same host port there is then taken.
        toleration = [{"key": "dedicated", "operator": "Equal", "value": "db",
                       "effect": "NoSchedule"}]
        await create_pod(client, "kt-db-1", tolerations=toleration,
                         containers=[{"name": "main", "image": "localhost/keelson/busybox:1",
                                      "ports": port}])
        assert await eventually(lambda: _node_of(client, "kt-db-1")) == "kt-tainted"
        await create_pod(client, "kt-db-2", tolerations=toleration,
                         containers=[{"name": "main", "image": "localhost/keelson/busybox:1",
                                      "ports": port}])
        message = await eventually(lambda: _unschedulable_message(client, "kt-db-2"))
        assert "1 node(s) didn't have free ports for the requested pod ports" in message
