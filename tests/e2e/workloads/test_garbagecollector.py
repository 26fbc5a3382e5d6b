"""The garbage collector end to end: background, foreground and orphan propagation,
driven the way users drive it (``kubectl delete --cascade=...`` and DeleteOptions)."""

from __future__ import annotations

import asyncio

from apiclient.errors import NotFoundError
from apiclient.meta import owner_reference
from apiclient.resources import CONFIGMAPS, PODS, REPLICASETS
from tests.e2e.workloads.conftest import Cluster, eventually
from tests.e2e.workloads.test_deployment import deployment_yaml
from tests.e2e.workloads.test_replicaset import replicaset


def configmap(name: str, *, owners: list[dict] = (), finalizers: list[str] = (),
              block: bool = True) -> dict:
    meta: dict = {"name": name}
    if owners:
        meta["ownerReferences"] = [owner_reference(o, controller=False,
                                                   block_owner_deletion=block)
                                   for o in owners]
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


async def make(cluster: Cluster, body: dict) -> dict:
    return await cluster.client.create(CONFIGMAPS, body, namespace=cluster.namespace)


async def exists(cluster: Cluster, name: str) -> dict | None:
    try:
        return await cluster.client.get(CONFIGMAPS, name, namespace=cluster.namespace)
    except NotFoundError:
        return None


async def test_background_deletes_dependents_of_a_deleted_owner(cluster: Cluster) -> None:
    owner = await make(cluster, configmap("owner"))
    other = await make(cluster, configmap("other"))
    await make(cluster, configmap("child", owners=[owner]))
    await make(cluster, configmap("shared", owners=[owner, other]))
    await make(cluster, configmap("grandchild", owners=[
        await exists(cluster, "child")]))
    await cluster.client.delete(CONFIGMAPS, "owner", namespace=cluster.namespace)

    async def collected() -> bool:
        return await exists(cluster, "child") is None and \
            await exists(cluster, "grandchild") is None
    await eventually(collected)
    # A dependent with another live owner stays, without the reference to the dead one.

    async def shared_kept() -> bool:
        shared = await exists(cluster, "shared")
        return shared is not None and [r["name"] for r in shared["metadata"][
            "ownerReferences"]] == ["other"]
    await eventually(shared_kept)


async def test_owner_of_the_same_name_but_another_uid_is_missing(cluster: Cluster) -> None:
    owner = await make(cluster, configmap("owner"))
    await cluster.client.delete(CONFIGMAPS, "owner", namespace=cluster.namespace)
    await make(cluster, configmap("owner"))  # a new object under the old name
    await make(cluster, configmap("child", owners=[owner]))

    async def collected() -> bool:
        return await exists(cluster, "child") is None
    await eventually(collected)
    assert await exists(cluster, "owner") is not None


async def test_dependent_of_a_live_owner_is_kept(cluster: Cluster) -> None:
    owner = await make(cluster, configmap("owner"))
    await make(cluster, configmap("child", owners=[owner]))
    await asyncio.sleep(1.0)
    assert await exists(cluster, "child") is not None


async def test_foreground_deletes_dependents_before_the_owner(cluster: Cluster) -> None:
    owner = await make(cluster, configmap("owner"))
    # The dependent is held by a finalizer of its own, so the owner's wait can be seen.
    await make(cluster, configmap("child", owners=[owner], finalizers=["example.com/hold"]))
    await make(cluster, configmap("loose", owners=[owner], block=False))
    await cluster.kubectl("delete", "configmap/owner", "--cascade=foreground", "--wait=false")

    async def child_deleting() -> bool:
        child = await exists(cluster, "child")
        return bool(child and child["metadata"].get("deletionTimestamp"))
    await eventually(child_deleting)
    await asyncio.sleep(0.5)
    waiting = await exists(cluster, "owner")
    assert waiting is not None and waiting["metadata"]["deletionTimestamp"]
    assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"]

    await cluster.client.patch(CONFIGMAPS, "child", {"metadata": {"finalizers": None}},
                               namespace=cluster.namespace)

    async def owner_gone() -> bool:
        return await exists(cluster, "owner") is None and await exists(cluster, "child") is None
    await eventually(owner_gone)
    await eventually(lambda: _absent(cluster, "loose"))


async def _absent(cluster: Cluster, name: str) -> bool:
    return await exists(cluster, name) is None


async def test_orphan_keeps_dependents_and_drops_the_reference(cluster: Cluster) -> None:
    owner = await make(cluster, configmap("owner"))
    keeper = await make(cluster, configmap("keeper"))
    await make(cluster, configmap("child", owners=[owner, keeper]))
    await make(cluster, configmap("only", owners=[owner]))
    await cluster.kubectl("delete", "configmap/owner", "--cascade=orphan")
    await eventually(lambda: _absent(cluster, "owner"))
    only = await exists(cluster, "only")
    assert only is not None and not only["metadata"].get("ownerReferences")
    child = await exists(cluster, "child")
    assert [r["name"] for r in child["metadata"]["ownerReferences"]] == ["keeper"]
    await asyncio.sleep(0.5)
    assert await exists(cluster, "only") is not None


async def test_foreground_cascade_through_a_replicaset(cluster: Cluster) -> None:
    """An owner deleted in the foreground whose dependents own pods: the pods go first."""
    owner = await make(cluster, configmap("owner"))
    body = replicaset("web", 2)
    body["metadata"]["ownerReferences"] = [owner_reference(owner, controller=False)]
    await cluster.client.create(REPLICASETS, body, namespace=cluster.namespace)

    async def two_pods() -> bool:
        return len(await cluster.pods(label_selector="app=web")) == 2
    await eventually(two_pods)
    await cluster.client.delete(CONFIGMAPS, "owner", namespace=cluster.namespace,
                                propagation_policy="Foreground")

    async def all_gone() -> bool:
        pods = await cluster.client.list(PODS, namespace=cluster.namespace)
        return await exists(cluster, "owner") is None and not pods["items"]
    await eventually(all_gone)


async def test_deployment_deleted_in_the_foreground_waits_for_its_pods(
        cluster: Cluster) -> None:
    cluster.finish_deletions = False  # the pods stay terminating until the test ends them
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web", replicas=2))
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    for pod in await cluster.pods(label_selector="app=web"):  # bind them: deletion is graceful
        await cluster.client.create(PODS, {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod["metadata"]["name"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}},
            namespace=cluster.namespace, subresource="binding")
    await cluster.kubectl("delete", "deployment/web", "--cascade=foreground", "--wait=false")

    async def pods_terminating() -> list[dict]:
        pods = await cluster.pods(label_selector="app=web")
        return pods if pods and all(p["metadata"].get("deletionTimestamp") for p in pods) \
            else []
    pods = await eventually(pods_terminating)
    result = await cluster.kubectl("get", "deployment/web", "-o", "name")
    assert result.stdout.strip() == "deployment.apps/web"  # still there, waiting
    for pod in pods:
        await cluster.client.delete(PODS, pod["metadata"]["name"], namespace=cluster.namespace,
                                    grace_period_seconds=0)

    async def all_gone() -> bool:
        listing = await cluster.client.list(REPLICASETS, namespace=cluster.namespace)
        gone = await cluster.kubectl("get", "deployment/web", check=False)
        return not listing["items"] and gone.returncode != 0
    await eventually(all_gone)
