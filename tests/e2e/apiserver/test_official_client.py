"""The official ``kubernetes`` Python client against a real ``keelson apiserver``.

Every served resource goes through create/get/list/watch/patch/delete with the client's
typed API, then the semantics users rely on: subresources, service allocation,
selectors, pagination, conflicts, generation, finalizers, graceful pod deletion.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.support.apiserver import ApiServer, unique

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, **extra}


def pod_body(name: str, *, labels: dict[str, str] | None = None,
             node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "localhost/keelson/busybox:1",
                                            "command": ["sleep", "3600"]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, labels=labels or {}),
            "spec": spec}


def template(app: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "localhost/keelson/busybox:1"}]}}


def events_since(list_call: Callable[..., Any], resource_version: str, count: int,
                 *args: Any) -> list[tuple[str, str]]:
    """The first ``count`` watch events after ``resource_version`` (type, name)."""
    seen: list[tuple[str, str]] = []
    for event in watch.Watch().stream(list_call, *args, resource_version=resource_version,
                                      timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == count:
            break
    return seen


def status_of(error: ApiException) -> tuple[int, str]:
    body = json.loads(error.body)
    return error.status, body["reason"]


def expect_error(code: int, reason: str, call: Callable[[], Any]) -> None:
    with pytest.raises(ApiException) as info:
        call()
    assert status_of(info.value) == (code, reason), info.value.body


# One CRUD round for each namespaced resource: (api class, create kwarg style, body, patch).
def _crud_cases() -> list[tuple[str, str, str, Callable[[str], dict[str, Any]],
                                dict[str, Any]]]:
    return [
        ("CoreV1Api", "pod", "Pod", lambda n: pod_body(n),
         {"metadata": {"labels": {"patched": "yes"}}}),
        ("CoreV1Api", "service", "Service",
         lambda n: {"metadata": meta(n), "spec": {"ports": [{"port": 80}]}},
         {"metadata": {"labels": {"patched": "yes"}}}),
        ("CoreV1Api", "endpoints", "Endpoints",
         lambda n: {"metadata": meta(n), "subsets": [{"addresses": [{"ip": "10.244.0.5"}],
                                                      "ports": [{"port": 80}]}]},
         {"metadata": {"labels": {"patched": "yes"}}}),
        ("CoreV1Api", "event", "Event",
         lambda n: {"metadata": meta(n), "involvedObject": {"kind": "Pod", "name": "p"},
                    "reason": "Tested", "message": "hello", "type": "Normal"},
         {"metadata": {"labels": {"patched": "yes"}}}),
        ("CoreV1Api", "config_map", "ConfigMap",
         lambda n: {"metadata": meta(n), "data": {"a": "1"}},
         {"data": {"b": "2"}, "metadata": {"labels": {"patched": "yes"}}}),
        ("DiscoveryV1Api", "endpoint_slice", "EndpointSlice",
         lambda n: {"metadata": meta(n), "addressType": "IPv4",
                    "endpoints": [{"addresses": ["10.244.0.5"]}], "ports": [{"port": 80}]},
         {"metadata": {"labels": {"patched": "yes"}}}),
        ("AppsV1Api", "deployment", "Deployment",
         lambda n: {"metadata": meta(n), "spec": {"selector": {"matchLabels": {"app": n}},
                                                  "template": template(n)}},
         {"metadata": {"labels": {"patched": "yes"}}}),
        ("AppsV1Api", "replica_set", "ReplicaSet",
         lambda n: {"metadata": meta(n), "spec": {"selector": {"matchLabels": {"app": n}},
                                                  "template": template(n)}},
         {"metadata": {"labels": {"patched": "yes"}}}),
        ("CoordinationV1Api", "lease", "Lease",
         lambda n: {"metadata": meta(n), "spec": {"holderIdentity": "kt"}},
         {"spec": {"holderIdentity": "kt-2"}, "metadata": {"labels": {"patched": "yes"}}}),
    ]


@pytest.mark.parametrize(("api_name", "noun", "kind", "make", "patch"), _crud_cases(),
                         ids=[c[2] for c in _crud_cases()])
def test_namespaced_crud_and_watch(k8s: Any, namespace: str, api_name: str, noun: str,
                                   kind: str, make: Callable[[str], dict[str, Any]],
                                   patch: dict[str, Any]) -> None:
    api = getattr(client, api_name)(k8s)
    name = unique()
    create = getattr(api, f"create_namespaced_{noun}")
    created = create(namespace, make(name))
    assert created.metadata.name == name and created.metadata.uid
    assert created.metadata.creation_timestamp is not None

    got = getattr(api, f"read_namespaced_{noun}")(name, namespace)
    assert got.metadata.uid == created.metadata.uid

    listed = getattr(api, f"list_namespaced_{noun}")(namespace)
    assert [i.metadata.name for i in listed.items] == [name]

    patched = getattr(api, f"patch_namespaced_{noun}")(name, namespace, patch)
    assert patched.metadata.labels == {"patched": "yes"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    events = []
    stream = watch.Watch().stream(getattr(api, f"list_namespaced_{noun}"), namespace,
                                  resource_version=created.metadata.resource_version,
                                  timeout_seconds=5)
    for event in stream:
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 1:
            getattr(api, f"delete_namespaced_{noun}")(name, namespace)
        if len(events) == 2:
            break
    assert events == [("MODIFIED", name), ("DELETED", name)]
    expect_error(404, "NotFound", lambda: getattr(api, f"read_namespaced_{noun}")(name,
                                                                                  namespace))


def test_namespaces_and_nodes_crud_with_status(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    names = [n.metadata.name for n in core.list_namespace().items]
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names)

    node = unique("kt-node")
    created = core.create_node({"metadata": {"name": node, "labels": {"kt": "node"}}})
    assert created.metadata.name == node
    core.patch_node_status(node, {"status": {"addresses": [
        {"type": "InternalIP", "address": "127.0.0.1"}],
        "conditions": [{"type": "Ready", "status": "True"}]}})
    read = core.read_node_status(node)
    assert read.status.addresses[0].address == "127.0.0.1"
    # The main resource ignores status; status ignores everything else.
    core.patch_node(node, {"metadata": {"labels": {"kt": "changed"}},
                           "status": {"addresses": []}})
    read = core.read_node(node)
    assert read.metadata.labels == {"kt": "changed"}
    assert read.status.addresses[0].address == "127.0.0.1"
    assert [n.metadata.name for n in core.list_node(label_selector="kt").items] == [node]
    core.delete_node(node)
    expect_error(404, "NotFound", lambda: core.read_node(node))
    assert events_since(core.list_node, created.metadata.resource_version, 3) == [
        ("MODIFIED", node), ("MODIFIED", node), ("DELETED", node)]

    ns = unique()
    created_ns = core.create_namespace({"metadata": {"name": ns}})
    assert core.read_namespace(ns).status.phase == "Active"
    core.patch_namespace(ns, {"metadata": {"labels": {"kt": "yes"}}})
    core.delete_namespace(ns)
    assert events_since(core.list_namespace, created_ns.metadata.resource_version, 3) == [
        ("MODIFIED", ns), ("MODIFIED", ns), ("DELETED", ns)]


def test_pod_status_and_binding(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    name = unique()
    pod = core.create_namespaced_pod(namespace, pod_body(name))
    assert pod.status.phase == "Pending"
    core.create_namespaced_pod_binding(name, namespace, {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "kt-node-a"}},
        _preload_content=False)
    bound = core.read_namespaced_pod(name, namespace)
    assert bound.spec.node_name == "kt-node-a"
    assert any(c.type == "PodScheduled" and c.status == "True"
               for c in bound.status.conditions)
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod_binding(name, namespace, {
            "metadata": {"name": name}, "target": {"kind": "Node", "name": "kt-node-b"}},
            _preload_content=False)
    assert info.value.status == 409

    core.patch_namespaced_pod_status(name, namespace, {"status": {
        "phase": "Running", "podIP": "10.244.0.9"}})
    running = core.read_namespaced_pod_status(name, namespace)
    assert (running.status.phase, running.status.pod_ip) == ("Running", "10.244.0.9")
    core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)


def test_service_allocation(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)

    def svc(name: str, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], **spec}}

    first = core.create_namespaced_service(namespace, svc("kt-a"))
    ip = ipaddress.ip_address(first.spec.cluster_ip)
    assert ip in SERVICE_CIDR and first.spec.cluster_ips == [str(ip)]

    wanted = str(SERVICE_CIDR[4000])
    second = core.create_namespaced_service(namespace, svc("kt-b", clusterIP=wanted))
    assert second.spec.cluster_ip == wanted
    expect_error(422, "Invalid",
                 lambda: core.create_namespaced_service(namespace, svc("kt-c",
                                                                       clusterIP=wanted)))
    expect_error(422, "Invalid",
                 lambda: core.create_namespaced_service(namespace, svc("kt-d",
                                                                       clusterIP="10.1.2.3")))

    headless = core.create_namespaced_service(namespace, svc("kt-h", clusterIP="None"))
    assert headless.spec.cluster_ip == "None"

    node_port = core.create_namespaced_service(namespace, svc("kt-np", type="NodePort"))
    assert 30000 <= node_port.spec.ports[0].node_port <= 32767
    expect_error(422, "Invalid", lambda: core.create_namespaced_service(
        namespace, {"metadata": {"name": "kt-np2"},
                    "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}))

    core.patch_namespaced_service_status("kt-a", namespace, {"status": {"loadBalancer": {
        "ingress": [{"ip": "192.0.2.1"}]}}})
    assert core.read_namespaced_service_status("kt-a", namespace) \
        .status.load_balancer.ingress[0].ip == "192.0.2.1"

    core.delete_namespaced_service("kt-b", namespace)
    again = core.create_namespaced_service(namespace, svc("kt-b2", clusterIP=wanted))
    assert again.spec.cluster_ip == wanted

    port = node_port.spec.ports[0].node_port
    expect_error(422, "Invalid", lambda: core.create_namespaced_service(namespace, {
        "metadata": {"name": "kt-np3"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}}))
    core.patch_namespaced_service("kt-np", namespace, {"spec": {"type": "ClusterIP"}})
    reused = core.create_namespaced_service(namespace, {
        "metadata": {"name": "kt-np3"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}})
    assert reused.spec.ports[0].node_port == port


def test_scale_subresources(k8s: Any, namespace: str) -> None:
    apps = client.AppsV1Api(k8s)
    spec = {"replicas": 1, "selector": {"matchLabels": {"app": "kt"}},
            "template": template("kt")}
    apps.create_namespaced_deployment(namespace, {"metadata": {"name": "kt-d"}, "spec": spec})
    apps.create_namespaced_replica_set(namespace, {"metadata": {"name": "kt-rs"},
                                                   "spec": spec})
    for name, read_scale, patch_scale, read in (
            ("kt-d", apps.read_namespaced_deployment_scale,
             apps.patch_namespaced_deployment_scale, apps.read_namespaced_deployment),
            ("kt-rs", apps.read_namespaced_replica_set_scale,
             apps.patch_namespaced_replica_set_scale, apps.read_namespaced_replica_set)):
        assert read_scale(name, namespace).spec.replicas == 1
        scaled = patch_scale(name, namespace, {"spec": {"replicas": 3}})
        assert scaled.spec.replicas == 3
        assert read(name, namespace).spec.replicas == 3
        assert read_scale(name, namespace).status.selector == "app=kt"

    apps.patch_namespaced_replica_set_status("kt-rs", namespace,
                                             {"status": {"replicas": 3, "readyReplicas": 2}})
    rs_status = apps.read_namespaced_replica_set_status("kt-rs", namespace).status
    assert (rs_status.replicas, rs_status.ready_replicas) == (3, 2)


def test_generate_name(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    one = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "kt-"}})
    two = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "kt-"}})
    assert one.metadata.name.startswith("kt-") and len(one.metadata.name) > 3
    assert one.metadata.name != two.metadata.name


def test_label_and_field_selectors(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, pod_body("kt-web", labels={"app": "web",
                                                                     "tier": "front"}))
    core.create_namespaced_pod(namespace, pod_body("kt-db", labels={"app": "db"},
                                                   node="kt-node-a"))
    core.create_namespaced_pod(namespace, pod_body("kt-none"))
    core.patch_namespaced_pod_status("kt-db", namespace, {"status": {"phase": "Running"}})

    def names(**kwargs: str) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod(namespace,
                                                                        **kwargs).items)

    assert names(label_selector="app=web") == ["kt-web"]
    assert names(label_selector="app!=web") == ["kt-db", "kt-none"]
    assert names(label_selector="app in (web,db)") == ["kt-db", "kt-web"]
    assert names(label_selector="app notin (web)") == ["kt-db", "kt-none"]
    assert names(label_selector="tier") == ["kt-web"]
    assert names(label_selector="!tier") == ["kt-db", "kt-none"]
    assert names(field_selector="metadata.name=kt-db") == ["kt-db"]
    assert names(field_selector="spec.nodeName=kt-node-a") == ["kt-db"]
    assert names(field_selector="spec.nodeName=") == ["kt-none", "kt-web"]
    assert names(field_selector="status.phase=Running") == ["kt-db"]
    assert names(field_selector="status.phase!=Running") == ["kt-none", "kt-web"]
    every = core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")
    assert sorted(p.metadata.name for p in every.items) == ["kt-db", "kt-none", "kt-web"]


def test_limit_and_continue(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    for i in range(7):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"kt-{i}"}})
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        seen += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)
    assert pages == 3
    assert seen == [f"kt-{i}" for i in range(7)]


def test_stale_update_conflicts_and_generation(k8s: Any, namespace: str) -> None:
    apps = client.AppsV1Api(k8s)
    body = {"metadata": {"name": "kt-d"},
            "spec": {"selector": {"matchLabels": {"app": "kt"}}, "template": template("kt")}}
    created = apps.create_namespaced_deployment(namespace, body)
    assert created.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment("kt-d", namespace,
                                                {"metadata": {"labels": {"a": "b"}}})
    assert labelled.metadata.generation == 1
    apps.patch_namespaced_deployment_status("kt-d", namespace, {"status": {"replicas": 1}})
    assert apps.read_namespaced_deployment("kt-d", namespace).metadata.generation == 1
    changed = apps.patch_namespaced_deployment("kt-d", namespace, {"spec": {"replicas": 4}})
    assert changed.metadata.generation == 2

    stale = created
    stale.spec.replicas = 9
    expect_error(409, "Conflict",
                 lambda: apps.replace_namespaced_deployment("kt-d", namespace, stale))
    assert apps.read_namespaced_deployment("kt-d", namespace).spec.replicas == 4


def test_finalizers_delay_deletion(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "kt-f", "finalizers": ["keelson.test/hold"]}})
    core.delete_namespaced_config_map("kt-f", namespace)
    held = core.read_namespaced_config_map("kt-f", namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("kt-f", namespace, {"metadata": {"finalizers": None}})
    expect_error(404, "NotFound", lambda: core.read_namespaced_config_map("kt-f", namespace))


def test_graceful_pod_deletion(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, pod_body("kt-bound", node="kt-node-a"))
    core.create_namespaced_pod(namespace, pod_body("kt-unbound"))

    core.delete_namespaced_pod("kt-bound", namespace)
    pending = core.read_namespaced_pod("kt-bound", namespace)
    assert pending.metadata.deletion_timestamp is not None
    assert pending.metadata.deletion_grace_period_seconds == 30

    core.delete_namespaced_pod("kt-unbound", namespace)
    expect_error(404, "NotFound", lambda: core.read_namespaced_pod("kt-unbound", namespace))

    core.delete_namespaced_pod("kt-bound", namespace, grace_period_seconds=0)
    expect_error(404, "NotFound", lambda: core.read_namespaced_pod("kt-bound", namespace))


def test_delete_collection(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    for name, team in (("kt-1", "a"), ("kt-2", "a"), ("kt-3", "b")):
        core.create_namespaced_config_map(namespace, {"metadata": {
            "name": name, "labels": {"team": team}}})
    core.delete_collection_namespaced_config_map(namespace, label_selector="team=a")
    left = core.list_namespaced_config_map(namespace).items
    assert [c.metadata.name for c in left] == ["kt-3"]


def test_missing_namespace_is_rejected(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    expect_error(404, "NotFound", lambda: core.create_namespaced_config_map(
        unique("kt-missing"), {"metadata": {"name": "kt"}}))


def test_unknown_fields_preserved_with_warning(apiserver: ApiServer, namespace: str) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kt-u"}, "data": {"a": "1"}, "ktExtra": {"keep": "me"}}
    code, headers, created = apiserver.http("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                            body)
    assert code == 201, created
    assert "ktExtra" in headers.get("Warning", "")
    code, _, stored = apiserver.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/kt-u")
    assert stored["ktExtra"] == {"keep": "me"}

    code, _, error = apiserver.http(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps?fieldValidation=Strict",
        {**body, "metadata": {"name": "kt-strict"}})
    assert (code, error["reason"]) == (400, "BadRequest")
    assert "ktExtra" in error["message"]
    code, _, _ = apiserver.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/kt-strict")
    assert code == 404


def test_namespace_deletion_takes_its_content(k8s: Any) -> None:
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    ns = unique()
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "kt-cm"}})
    core.create_namespaced_pod(ns, pod_body("kt-pod", node="kt-node-a"))
    apps.create_namespaced_deployment(ns, {"metadata": {"name": "kt-d"}, "spec": {
        "selector": {"matchLabels": {"app": "kt"}}, "template": template("kt")}})
    core.delete_namespace(ns)
    expect_error(404, "NotFound", lambda: core.read_namespace(ns))
    # Re-creating the namespace must not bring old objects back.
    core.create_namespace({"metadata": {"name": ns}})
    assert core.list_namespaced_config_map(ns).items == []
    assert core.list_namespaced_pod(ns).items == []
    assert apps.list_namespaced_deployment(ns).items == []
    core.delete_namespace(ns)


def test_system_namespaces_cannot_be_deleted(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    for name in ("default", "kube-system", "kube-public"):
        expect_error(403, "Forbidden", lambda name=name: core.delete_namespace(name))
        assert core.read_namespace(name).status.phase == "Active"


def test_terminating_namespace_refuses_new_content(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = unique()
    core.create_namespace({"metadata": {"name": ns, "finalizers": ["keelson.test/hold"]}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "kt-early"}})
    core.delete_namespace(ns)
    assert core.read_namespace(ns).status.phase == "Terminating"
    expect_error(403, "Forbidden", lambda: core.create_namespaced_config_map(
        ns, {"metadata": {"name": "kt-late"}}))
    core.patch_namespace(ns, {"metadata": {"finalizers": None}})
    expect_error(404, "NotFound", lambda: core.read_namespace(ns))
    core.create_namespace({"metadata": {"name": ns}})
    assert core.list_namespaced_config_map(ns).items == []
    core.delete_namespace(ns)


def test_concurrent_service_creates_get_distinct_ips(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)

    def create(i: int) -> tuple[str, int]:
        svc = core.create_namespaced_service(namespace, {
            "metadata": {"name": f"kt-c{i}"},
            "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
        return svc.spec.cluster_ip, svc.spec.ports[0].node_port

    with ThreadPoolExecutor(max_workers=16) as pool:
        allocated = list(pool.map(create, range(40)))
    assert len({ip for ip, _ in allocated}) == 40
    assert len({port for _, port in allocated}) == 40


def test_orphan_and_foreground_deletion_leave_a_finalizer_for_the_gc(
        k8s: Any, namespace: str) -> None:
    """propagationPolicy Orphan/Foreground marks the object and adds the GC's finalizer;
    the object goes once the finalizer is removed."""
    core = client.CoreV1Api(k8s)
    for policy, finalizer in (("Orphan", "orphan"), ("Foreground", "foregroundDeletion")):
        name = unique("cm")
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
        core.delete_namespaced_config_map(name, namespace,
                                          body=client.V1DeleteOptions(propagation_policy=policy))
        held = core.read_namespaced_config_map(name, namespace)
        assert held.metadata.deletion_timestamp is not None
        assert held.metadata.finalizers == [finalizer]
        core.patch_namespaced_config_map(name, namespace, {"metadata": {"finalizers": None}})
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_config_map(name, namespace)
        assert gone.value.status == 404
