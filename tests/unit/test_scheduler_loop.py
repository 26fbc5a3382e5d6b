"""The Scheduler's loop with a recording stub client: binding, failures, retries.

The informers are never started: the test fills their stores and calls the handlers the
way an informer would, then runs ``reconcile`` directly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from apiclient.controller import SharedInformers
from apiclient.errors import error_from_status
from apiclient.meta import object_key
from apiclient.resources import NODES, PODS, Resource
from scheduler import Scheduler


class StubClient:
    """Records writes; ``fail_bindings`` makes that many binding POSTs answer 500."""

    def __init__(self) -> None:
        self.bindings: list[tuple[str, str]] = []
        self.status_patches: list[dict] = []
        self.events: list[dict] = []
        self.fail_bindings = 0

    async def create(
        self,
        res: Resource,
        body: dict,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict:
        if subresource == "binding":
            if self.fail_bindings:
                self.fail_bindings -= 1
                raise error_from_status(500, {"message": "storage hiccup"})
            self.bindings.append((body["metadata"]["name"], body["target"]["name"]))
        else:
            self.events.append(body)
        return body

    async def patch(self, res: Resource, name: str, patch: Any, **options: Any) -> dict:
        self.status_patches.append(patch)
        return {}


def _node(name: str, cpu: str = "1") -> dict:
    return {
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "10"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _pod(name: str, cpu: str = "600m") -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": {
            "schedulerName": "default-scheduler",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
        },
        "status": {"phase": "Pending"},
    }


def _setup() -> tuple[Scheduler, StubClient, SharedInformers]:
    client = StubClient()
    informers = SharedInformers(client)  # type: ignore[arg-type]
    scheduler = Scheduler(client, informers)  # type: ignore[arg-type]
    return scheduler, client, informers


def _add(informers: SharedInformers, res: Resource, obj: dict) -> None:
    informer = informers.informer(res)
    informer.store.upsert(obj)
    for handler in informer._handlers:
        if handler.on_add:
            handler.on_add(obj)


async def _settle(scheduler: Scheduler) -> None:
    await asyncio.gather(*scheduler._bindings)


async def test_a_failed_binding_releases_the_node_and_is_retried() -> None:
    scheduler, client, informers = _setup()
    _add(informers, NODES, _node("n1"))
    _add(informers, PODS, _pod("p"))
    client.fail_bindings = 1
    await scheduler.reconcile("ns/p")
    await _settle(scheduler)
    assert client.bindings == []
    assert not scheduler.cache.is_placed("ns/p")  # the assumed cpu was given back
    await asyncio.sleep(0.2)  # the rate-limited retry puts the key back
    assert await asyncio.wait_for(scheduler.queue.get(), 1) == "ns/p"
    await scheduler.reconcile("ns/p")
    await _settle(scheduler)
    assert client.bindings == [("p", "n1")]
    scheduler.queue.shutdown()


async def test_unschedulable_is_reported_once_and_retried_when_a_node_comes() -> None:
    scheduler, client, informers = _setup()
    _add(informers, NODES, _node("small", cpu="500m"))
    pod = _pod("big")
    _add(informers, PODS, pod)
    await scheduler.reconcile("ns/big")
    [patch] = client.status_patches
    [condition] = patch["status"]["conditions"]
    assert condition["reason"] == "Unschedulable"
    assert condition["message"] == "0/1 nodes are available: 1 Insufficient cpu."
    assert [e["reason"] for e in client.events] == ["FailedScheduling"]
    assert "ns/big" in scheduler.unschedulable

    # Our own status patch comes back through the informer: no new attempt is queued.
    queued_before = len(scheduler.queue)
    reported = {**pod, "status": {**pod["status"], "conditions": [condition]}}
    informer = informers.informer(PODS)
    informer.store.upsert(reported)
    informer._handlers[0].on_update(pod, reported)
    assert len(scheduler.queue) == queued_before
    await scheduler.reconcile("ns/big")  # same outcome, same message: nothing written
    assert len(client.status_patches) == 1 and len(client.events) == 1

    _add(informers, NODES, _node("large", cpu="4"))  # a node that fits arrives
    assert object_key(pod) in [await scheduler.queue.get() for _ in range(len(scheduler.queue))]
    await scheduler.reconcile("ns/big")
    await _settle(scheduler)
    assert client.bindings == [("big", "large")]
    assert [e["reason"] for e in client.events] == ["FailedScheduling", "Scheduled"]
    assert "ns/big" not in scheduler.unschedulable
