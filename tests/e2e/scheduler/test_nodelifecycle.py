"""Node lifecycle against a real apiserver, with a 2 s grace period instead of 40 s."""

from __future__ import annotations

import asyncio
import functools

from apiclient.client import ApiClient
from apiclient.errors import NotFoundError
from apiclient.resources import NODES, PODS
from controllers.nodelifecycle import NodeLifecycleController
from scheduler import Scheduler
from tests.support.apiserver import ApiServer

from .conftest import (
    NAMESPACE,
    controllers_running,
    create_node,
    create_pod,
    eventually,
    get_pod,
    renew_lease,
)

GRACE = 2.0
lifecycle = functools.partial(NodeLifecycleController, grace_period_seconds=GRACE)
UNREACHABLE = "node.kubernetes.io/unreachable"


def _condition(obj: dict, kind: str) -> dict:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition["type"] == kind:
            return condition
    return {}


async def _run_pod(api: ApiClient, name: str, node: str, **spec: object) -> None:
    """A pod bound to ``node`` and reported Running and Ready, as its kubelet would."""
    await create_pod(api, name, nodeName=node, **spec)
    ready = {"type": "Ready", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
    await api.patch(PODS, name, {"status": {"phase": "Running", "podIP": "10.244.0.5",
                                            "conditions": [ready]}},
                    namespace=NAMESPACE, subresource="status", patch_type="strategic")


async def _heartbeat(api: ApiClient, node: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await renew_lease(api, node)
        await asyncio.sleep(0.3)


async def test_silent_node_is_marked_unreachable_drained_and_recovers(
        apiserver: ApiServer, client: ApiClient) -> None:
    await create_node(client, "kt-alive")
    await create_node(client, "kt-silent")
    await renew_lease(client, "kt-silent")
    await _run_pod(client, "kt-default", "kt-silent")  # no toleration: 300 s
    await _run_pod(client, "kt-short", "kt-silent", tolerations=[
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 1}])
    await _run_pod(client, "kt-forever", "kt-silent", tolerations=[
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}])
    stop = asyncio.Event()
    alive = asyncio.create_task(_heartbeat(client, "kt-alive", stop))
    try:
        async with controllers_running(apiserver, [lifecycle]):
            async def unknown() -> dict | None:
                node = await client.get(NODES, "kt-silent")
                return node if _condition(node, "Ready").get("status") == "Unknown" else None

            node = await eventually(unknown, timeout=GRACE + 5, what="Ready=Unknown")
            ready = _condition(node, "Ready")
            assert ready["reason"] == "NodeStatusUnknown"
            assert ready["message"] == "Kubelet stopped posting node status."
            taints = await eventually(lambda: _unreachable_taints(client, "kt-silent"))
            assert sorted(t["effect"] for t in taints) == ["NoExecute", "NoSchedule"]
            assert all(t.get("timeAdded") for t in taints)
            assert "NotReady" in apiserver.kubectl("get", "node", "kt-silent").stdout

            async def pod_not_ready() -> bool:
                pod = await get_pod(client, "kt-default")
                return _condition(pod, "Ready").get("status") == "False"

            await eventually(pod_not_ready, what="pod Ready=False")

            async def short_evicted() -> bool:
                try:
                    pod = await get_pod(client, "kt-short")
                except NotFoundError:
                    return True
                return bool(pod["metadata"].get("deletionTimestamp"))

            await eventually(short_evicted, timeout=5, what="kt-short evicted")
            for name in ("kt-default", "kt-forever"):  # still tolerated
                assert not (await get_pod(client, name))["metadata"].get("deletionTimestamp")

            # The heartbeating node was never touched.
            healthy = await client.get(NODES, "kt-alive")
            assert _condition(healthy, "Ready")["status"] == "True"
            assert not healthy["spec"].get("taints")

            # The lease is renewed again: the taints go.
            await renew_lease(client, "kt-silent")
            await eventually(lambda: _no_unreachable_taints(client, "kt-silent"),
                             what="taints removed")
    finally:
        stop.set()
        await alive


async def _unreachable_taints(api: ApiClient, node: str) -> list[dict]:
    taints = (await api.get(NODES, node))["spec"].get("taints") or []
    found = [t for t in taints if t["key"] == UNREACHABLE]
    return found if len(found) == 2 else []


async def _no_unreachable_taints(api: ApiClient, node: str) -> bool:
    taints = (await api.get(NODES, node))["spec"].get("taints") or []
    return not any(t["key"] == UNREACHABLE for t in taints)


async def test_scheduler_avoids_an_unreachable_node(apiserver: ApiServer,
                                                    client: ApiClient) -> None:
    await create_node(client, "kt-gone")
    async with controllers_running(apiserver, [lifecycle, Scheduler]):
        await eventually(lambda: _unreachable_taints(client, "kt-gone"), timeout=GRACE + 5)
        await create_pod(client, "kt-waiting")

        async def message() -> str | None:
            condition = _condition(await get_pod(client, "kt-waiting"), "PodScheduled")
            return condition.get("message") if condition.get("status") == "False" else None

        assert await eventually(message) == \
            "0/1 nodes are available: 1 node(s) were not ready."


async def test_a_restarted_controller_keeps_a_silent_nodes_taints(apiserver: ApiServer,
                                                                 client: ApiClient) -> None:
    await create_node(client, "kt-down")
    async with controllers_running(apiserver, [lifecycle]):
        first = await eventually(lambda: _unreachable_taints(client, "kt-down"),
                                 timeout=GRACE + 5)
    async with controllers_running(apiserver, [lifecycle]):
        await asyncio.sleep(GRACE / 2)  # the new controller has seen the node, no beat yet
        assert await _unreachable_taints(client, "kt-down") == first  # timeAdded unchanged
        await renew_lease(client, "kt-down")
        await eventually(lambda: _no_unreachable_taints(client, "kt-down"),
                         what="taints removed after a heartbeat")
