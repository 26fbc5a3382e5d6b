"""Per-kind strategies seen through the generic REST store over a real SQLite file.

What a user would see: a new pod is Pending with its QoS class, a pod on a node is
deleted gracefully, a Service holds its ClusterIP and node ports exactly as long as it
needs them, and deleting a namespace takes its content with it.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apiserver import status
from apiserver.admission.allocators import ClusterIPAllocator, NodePortAllocator
from apiserver.patch import apply_merge_patch
from apiserver.registry import Registry, ResourceType
from apiserver.rest import DeleteOptions, RestStore
from apiserver.storage.sqlite import SQLiteStorage
from apiserver.strategies import Strategy

REGISTRY = Registry()
NAMESPACES = REGISTRY.lookup("", "v1", "namespaces")
NODES = REGISTRY.lookup("", "v1", "nodes")
PODS = REGISTRY.lookup("", "v1", "pods")
SERVICES = REGISTRY.lookup("", "v1", "services")
CONFIGMAPS = REGISTRY.lookup("", "v1", "configmaps")
ENDPOINTS = REGISTRY.lookup("", "v1", "endpoints")
REPLICASETS = REGISTRY.lookup("apps", "v1", "replicasets")
NOW = DeleteOptions()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RestStore]:
    storage = SQLiteStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    rest = RestStore(storage, REGISTRY,
                     service_ips=ClusterIPAllocator(storage, "10.96.0.0/24"),
                     node_ports=NodePortAllocator(storage, "30000-30009"),
                     patcher=lambda _rt, old, _kind, patch: apply_merge_patch(old, patch))
    await rest.create(NAMESPACES, None, {"metadata": {"name": "ns"}})
    yield rest
    await storage.close()


def pod(name: str, *, node: str = "", resources: dict[str, Any] | None = None,
        finalizers: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "busybox:1.36"}
    if resources is not None:
        container["resources"] = resources
    obj: dict[str, Any] = {"metadata": {"name": name}, "spec": {"containers": [container]},
                           "status": {"phase": "Running"}}
    if node:
        obj["spec"]["nodeName"] = node
    if finalizers:
        obj["metadata"]["finalizers"] = finalizers
    return obj


def service(name: str, *, kind: str = "ClusterIP", cluster_ip: str | None = None
            ) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "ports": [{"port": 80}], "selector": {"app": name}}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"metadata": {"name": name}, "spec": spec}


async def gone(store: RestStore, rt: ResourceType, namespace: str | None, name: str) -> bool:
    try:
        await store.get(rt, namespace, name)
    except status.StatusError as error:
        assert error.code == 404
        return True
    return False


# --- create: initial status ------------------------------------------------------------

async def test_a_new_pod_is_pending_with_its_qos_class_whatever_status_was_sent(store):
    best_effort = await store.create(PODS, "ns", pod("a"))
    assert best_effort["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    limits = {"cpu": "500m", "memory": "64Mi"}
    guaranteed = await store.create(PODS, "ns", pod("b", resources={"limits": limits}))
    assert guaranteed["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}
    burstable = await store.create(PODS, "ns", pod("c", resources={"requests": {"cpu": "1"}}))
    assert (await store.get(PODS, "ns", "c"))["status"]["qosClass"] == "Burstable"
    assert burstable["metadata"]["generation"] == 1


async def test_each_kind_starts_from_its_own_status(store):
    namespace = await store.get(NAMESPACES, None, "ns")
    assert namespace["status"] == {"phase": "Active"}
    svc = await store.create(SERVICES, "ns", service("web"))
    assert svc["status"] == {"loadBalancer": {}}
    rs = await store.create(REPLICASETS, "ns", {
        "metadata": {"name": "rs"}, "status": {"replicas": 7},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    assert rs["status"] == {"replicas": 0}


async def test_a_node_registers_with_its_status(store):
    reported = {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}
    node = await store.create(NODES, None, {"metadata": {"name": "n1"},
                                            "status": copy.deepcopy(reported)})
    assert node["status"] == reported


async def test_a_kind_without_a_status_subresource_keeps_what_it_was_given(store):
    cm = await store.create(CONFIGMAPS, "ns", {"metadata": {"name": "cm"}, "data": {"k": "v"}})
    assert "status" not in cm
    assert cm["data"] == {"k": "v"}


# --- update: spec and status apart -----------------------------------------------------

async def test_an_update_keeps_the_status_and_a_status_update_keeps_the_rest(store):
    await store.create(PODS, "ns", pod("a"))
    await store.patch(PODS, "ns", "a", "merge", {"status": {"phase": "Running"}},
                      subresource="status")
    updated = await store.patch(PODS, "ns", "a", "merge", {
        "metadata": {"labels": {"tier": "web"}}, "status": {"phase": "Failed"}})
    assert updated["status"]["phase"] == "Running"
    assert updated["metadata"]["labels"] == {"tier": "web"}
    stale = await store.patch(PODS, "ns", "a", "merge", {
        "metadata": {"labels": {"tier": "db"}}, "status": {"phase": "Succeeded"}},
        subresource="status")
    assert stale["status"]["phase"] == "Succeeded"
    assert stale["metadata"]["labels"] == {"tier": "web"}


async def test_put_creates_endpoints_but_not_configmaps(store):
    created = await store.update(ENDPOINTS, "ns", "web", {"metadata": {"name": "web"}})
    assert created.created
    with pytest.raises(status.StatusError) as missing:
        await store.update(CONFIGMAPS, "ns", "cm", {"metadata": {"name": "cm"}})
    assert missing.value.code == 404


# --- delete: grace periods -------------------------------------------------------------

async def test_a_pod_on_no_node_goes_at_once(store):
    await store.create(PODS, "ns", pod("a"))
    await store.delete(PODS, "ns", "a", NOW)
    assert await gone(store, PODS, "ns", "a")


async def test_a_bound_pod_is_deleted_gracefully_for_its_node_to_stop_it(store):
    await store.create(PODS, "ns", pod("a", node="n1"))
    marked = await store.delete(PODS, "ns", "a", NOW)
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert marked["metadata"]["deletionTimestamp"]
    stored = await store.get(PODS, "ns", "a")
    assert stored["metadata"]["deletionGracePeriodSeconds"] == 30
    shorter = await store.delete(PODS, "ns", "a", DeleteOptions(grace_period_seconds=5))
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    await store.delete(PODS, "ns", "a", DeleteOptions(grace_period_seconds=0))
    assert await gone(store, PODS, "ns", "a")


async def test_a_finished_pod_on_a_node_goes_at_once(store):
    await store.create(PODS, "ns", pod("a", node="n1"))
    await store.patch(PODS, "ns", "a", "merge", {"status": {"phase": "Succeeded"}},
                      subresource="status")
    await store.delete(PODS, "ns", "a", NOW)
    assert await gone(store, PODS, "ns", "a")


async def test_other_kinds_are_never_graceful(store):
    await store.create(CONFIGMAPS, "ns", {"metadata": {"name": "cm"}})
    await store.delete(CONFIGMAPS, "ns", "cm", DeleteOptions(grace_period_seconds=60))
    assert await gone(store, CONFIGMAPS, "ns", "cm")


# --- services: allocations ---------------------------------------------------------------

async def test_a_service_holds_its_cluster_ip_until_deleted(store):
    svc = await store.create(SERVICES, "ns", service("web"))
    ip = svc["spec"]["clusterIP"]
    assert svc["spec"]["clusterIPs"] == [ip]
    assert await store.service_ips.is_allocated(ip)
    # An update that leaves clusterIP out keeps it (kubectl apply of a file without it).
    spec = {**service("web")["spec"], "ports": [{"port": 8080}]}
    updated = await store.update(SERVICES, "ns", "web", {"metadata": {"name": "web"},
                                                         "spec": spec})
    assert updated.obj["spec"]["clusterIP"] == ip
    await store.delete(SERVICES, "ns", "web", NOW)
    assert not await store.service_ips.is_allocated(ip)
    again = await store.create(SERVICES, "ns", service("again", cluster_ip=ip))
    assert again["spec"]["clusterIP"] == ip


async def test_a_node_port_is_freed_when_the_service_stops_needing_it(store):
    svc = await store.create(SERVICES, "ns", service("web", kind="NodePort"))
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 30009
    await store.patch(SERVICES, "ns", "web", "merge", {"spec": {"type": "ClusterIP"}})
    stored = await store.get(SERVICES, "ns", "web")
    assert "nodePort" not in stored["spec"]["ports"][0]
    other = await store.create(SERVICES, "ns", {
        "metadata": {"name": "other"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}})
    assert other["spec"]["ports"][0]["nodePort"] == node_port


async def test_a_failed_create_gives_back_what_it_took(store):
    first = await store.create(SERVICES, "ns", service("web"))
    with pytest.raises(status.StatusError) as exists:
        await store.create(SERVICES, "ns", service("web", cluster_ip="10.96.0.200"))
    assert exists.value.code == 409
    assert not await store.service_ips.is_allocated("10.96.0.200")
    assert await store.service_ips.is_allocated(first["spec"]["clusterIP"])


# --- namespaces: deletion takes the content --------------------------------------------

async def test_the_system_namespaces_cannot_be_deleted(store):
    for name in ("default", "kube-system", "kube-public"):
        with pytest.raises(status.StatusError) as forbidden:
            await store.delete(NAMESPACES, None, name, NOW)
        assert forbidden.value.code == 403


async def test_deleting_a_namespace_deletes_its_content_first(store):
    await store.create(PODS, "ns", pod("a", node="n1"))
    svc = await store.create(SERVICES, "ns", service("web"))
    await store.create(CONFIGMAPS, "ns", {"metadata": {"name": "held",
                                                       "finalizers": ["example.com/x"]}})
    await store.delete(NAMESPACES, None, "ns", NOW)
    assert await gone(store, NAMESPACES, None, "ns")
    assert await gone(store, PODS, "ns", "a")  # deleted at once, bound or not
    assert await gone(store, SERVICES, "ns", "web")
    assert not await store.service_ips.is_allocated(svc["spec"]["clusterIP"])
    held = await store.get(CONFIGMAPS, "ns", "held")
    assert held["metadata"]["deletionTimestamp"]


async def test_a_namespace_held_by_a_finalizer_is_terminating_and_takes_nothing_new(store):
    await store.create(NAMESPACES, None, {"metadata": {"name": "held",
                                                       "finalizers": ["example.com/x"]}})
    marked = await store.delete(NAMESPACES, None, "held", NOW)
    assert marked["status"]["phase"] == "Terminating"
    with pytest.raises(status.StatusError) as refused:
        await store.create(CONFIGMAPS, "held", {"metadata": {"name": "cm"}})
    assert refused.value.code == 403
    await store.patch(NAMESPACES, None, "held", "merge", {"metadata": {"finalizers": None}})
    assert await gone(store, NAMESPACES, None, "held")


# --- the table's invariants --------------------------------------------------------------

def test_a_status_subresource_needs_a_status_strategy():
    with pytest.raises(TypeError):
        ResourceType("", "v1", "Thing", "things", True, subresources=frozenset({"status"}),
                     strategy=Strategy())


def test_every_kind_has_a_strategy():
    for rt in REGISTRY.resources:
        assert isinstance(rt.strategy, Strategy), rt.plural


def test_the_subresource_handlers_do_not_import_the_resource_handler():
    source = Path(__file__).resolve().parents[2] / "apiserver/handlers/subresources.py"
    imported = {node.module for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.ImportFrom)}
    assert "apiserver.handlers.resources" not in imported
