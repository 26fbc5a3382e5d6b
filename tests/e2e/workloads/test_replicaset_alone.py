"""The ReplicaSet controller alone, in the test's event loop, against a real apiserver:
no simulated kubelet and no other controller, so every pod it sees is one it made.

Its loop makes exactly ``replicas`` pods and never more (expectations hold back a second
reconcile until its own writes are seen), and ``claim`` adopts matching orphans and
releases owned pods that no longer match, with the real server's merge-patch semantics.
The pure parts (pod construction, deletion ranking, status arithmetic, expectations) are
unit tests (tests/unit/test_controller_replicaset.py, test_controller_ownership.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from apiclient.client import ApiClient
from apiclient.controller import SharedInformers
from apiclient.resources import NAMESPACES, PODS, REPLICASETS
from apiclient.selectors import selector_from_set
from controllers.ownership import claim
from controllers.replicaset import ReplicaSetController
from tests.support.apiserver import ApiServer, unique

CONTAINERS = [{"name": "c", "image": "localhost/keelson/busybox:1"}]


@pytest.fixture
async def api(apiserver: ApiServer) -> AsyncIterator[tuple[ApiClient, str]]:
    """A client and a namespace of the test's own, deleted afterwards."""
    namespace = unique()
    async with ApiClient.from_kubeconfig(apiserver.kubeconfig) as client:
        await client.create(NAMESPACES, {"metadata": {"name": namespace}})
        try:
            yield client, namespace
        finally:
            await client.delete(NAMESPACES, namespace)


def replicaset(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "v": "1"}},
                                  "spec": {"containers": CONTAINERS}}}}


async def count_pods(client: ApiClient, namespace: str) -> int:
    return len((await client.list(PODS, namespace=namespace))["items"])


async def wait_for_pods(client: ApiClient, namespace: str, wanted: int) -> None:
    for _ in range(200):
        if await count_pods(client, namespace) == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await count_pods(client, namespace)} pods, wanted {wanted}")


async def test_loop_creates_exactly_the_wanted_pods_and_removes_extras(
        api: tuple[ApiClient, str]) -> None:
    client, namespace = api
    await client.create(REPLICASETS, replicaset(5), namespace=namespace)
    informers = SharedInformers(client)
    controller = ReplicaSetController(client, informers)
    informers.start()
    task = asyncio.create_task(controller.run())
    try:
        await wait_for_pods(client, namespace, 5)
        await asyncio.sleep(0.3)  # settled: no more are made
        assert await count_pods(client, namespace) == 5
        await client.patch(REPLICASETS, "web", {"spec": {"replicas": 2}}, namespace=namespace)
        await wait_for_pods(client, namespace, 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await informers.stop()


async def test_claim_adopts_orphans_releases_mismatches_and_skips_others(
        api: tuple[ApiClient, str]) -> None:
    client, namespace = api
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
             "metadata": {"name": "web", "namespace": namespace, "uid": "owner-uid"}}
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "owner-uid",
           "controller": True, "blockOwnerDeletion": True}
    foreign = {**ref, "name": "other", "uid": "other-uid"}
    pods = {
        "orphan": {"labels": {"app": "web"}},
        "stray": {"labels": {"app": "web"}, "ownerReferences": [foreign]},
        "owned": {"labels": {"app": "web"}, "ownerReferences": [ref]},
        "relabelled": {"labels": {"app": "api"}, "ownerReferences": [ref]},
        "unrelated": {"labels": {"app": "api"}},
    }
    candidates = [await client.create(PODS, {"metadata": {"name": name, **meta},
                                             "spec": {"containers": CONTAINERS}},
                                      namespace=namespace)
                  for name, meta in pods.items()]
    claimed = await claim(client, PODS, owner, selector_from_set({"app": "web"}), candidates)
    assert sorted(p["metadata"]["name"] for p in claimed) == ["orphan", "owned"]
    stored = {o["metadata"]["name"]: o
              for o in (await client.list(PODS, namespace=namespace))["items"]}
    assert stored["orphan"]["metadata"]["ownerReferences"] == [ref]
    assert "ownerReferences" not in stored["relabelled"]["metadata"]
    assert stored["stray"]["metadata"]["ownerReferences"] == [foreign]
    assert "ownerReferences" not in stored["unrelated"]["metadata"]
