"""Informer(transform=...): every object is transformed before the store and the handlers
see it: on the first list, on watch events (deletes too) and on a relist after 410 Gone."""

import asyncio

import pytest

from apiclient.client import ApiClient
from apiclient.informer import Informer
from apiclient.resources import PODS
from apiclient.testing import FakeApiServer


def pod(name, *, node="n1"):
    return {
        "metadata": {"name": name, "namespace": "default", "annotations": {"big": "x" * 100}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "localhost/x:1"}]},
    }


def keep_node(obj):
    """A transform that keeps metadata the store needs plus spec.nodeName."""
    meta = obj["metadata"]
    return {
        "metadata": {key: meta[key] for key in ("name", "namespace", "resourceVersion")},
        "spec": {"nodeName": obj["spec"]["nodeName"]},
        "transformed": True,
    }


def lists(server):
    """The list requests the server answered (GETs that are not watches)."""
    return [r for r in server.requests if r.method == "GET" and r.query.get("watch") != "true"]


async def until(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def server():
    async with FakeApiServer() as fake:
        yield fake


async def test_store_and_handlers_only_ever_see_transformed_objects(server):
    server.seed(PODS, pod("a"))
    seen = []
    async with ApiClient(server.config()) as client:
        informer = Informer(client, PODS, transform=keep_node, backoff_initial=0.01)
        informer.add_handler(
            on_add=lambda obj: seen.append(("add", obj)),
            on_update=lambda old, new: seen.append(("update", old, new)),
            on_delete=lambda obj: seen.append(("delete", obj)),
        )
        informer.start()
        try:
            await informer.wait_synced(timeout=5)
            await client.create(PODS, pod("b"))
            await client.patch(PODS, "a", {"spec": {"nodeName": "n2"}})
            await client.delete(PODS, "b", namespace="default", grace_period_seconds=0)
            await until(lambda: len(seen) == 4)

            before_relist = informer.store.get("default/a")
            server.compact()  # the next watch gets 410 Gone: a relist
            server.drop_watches()
            await until(lambda: len(lists(server)) == 2)
            await until(lambda: informer.store.get("default/a") is not before_relist)
            server.seed(PODS, pod("c"))
            await until(lambda: "default/c" in informer.store)
        finally:
            await informer.stop()

    assert [event[0] for event in seen] == ["add", "add", "update", "delete", "add"]
    objects = [obj for event in seen for obj in event[1:]]
    assert all(obj.get("transformed") for obj in objects)
    assert all("annotations" not in obj["metadata"] for obj in objects)
    assert seen[2][2]["spec"] == {"nodeName": "n2"}
    assert sorted(informer.store.keys()) == ["default/a", "default/c"]
    assert all(obj.get("transformed") for obj in informer.store.list())
