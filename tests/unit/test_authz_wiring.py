"""The authorization wiring: request attributes, impersonation, the chain fed from the
watch cache, reviews, RBAC strategies' escalation guard, NodeRestriction on the write
path, byte-compatible Status bodies and the aggregation controller's reconcile."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from apiclient.controller import SharedInformers
from apiserver import status
from apiserver.admission.node_restriction_plugin import NodeRestriction
from apiserver.auth.authn import UserInfo
from apiserver.auth.authorization import POD_PREFIX, Authorization, rbac_prefix
from apiserver.auth.authorizer import Attributes, Decision
from apiserver.auth.filters import (
    ImpersonationError,
    impersonated_user,
    impersonation_requests,
    request_attributes,
)
from apiserver.handlers.reviews import review_attributes, spec_causes
from apiserver.registry import Registry
from apiserver.storage.sqlite import SQLiteStorage
from apiserver.storage.watchcache import CachedObject, WatchCache
from apiserver.strategies.rbac import CLUSTER_ROLE, ROLE, ROLE_BINDING, only_gc_fields_changed
from controllers.clusterroleaggregation import (
    ClusterRoleAggregationController,
    aggregated_role_names,
)

ALICE = UserInfo(name="alice", groups=("dev", "system:authenticated"))
ADMIN = UserInfo(name="admin", groups=("system:masters", "system:authenticated"))
NODE_A = UserInfo(name="system:node:a", groups=("system:nodes", "system:authenticated"))
RBAC = "rbac.authorization.k8s.io"


# --- request attributes ------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", "/api/v1/namespaces/shop/pods", {}, ("list", "", "pods", "", "shop", "")),
    ("GET", "/api/v1/namespaces/shop/pods", {"watch": "true"},
     ("watch", "", "pods", "", "shop", "")),
    ("GET", "/api/v1/namespaces/shop/pods", {"watch": "false"},
     ("list", "", "pods", "", "shop", "")),
    ("GET", "/api/v1/namespaces/shop/pods", {"fieldSelector": "metadata.name=web"},
     ("list", "", "pods", "", "shop", "web")),
    ("GET", "/api/v1/namespaces/shop/pods/web", {}, ("get", "", "pods", "", "shop", "web")),
    ("HEAD", "/api/v1/namespaces/shop/pods/web", {}, ("get", "", "pods", "", "shop", "web")),
    ("GET", "/api/v1/namespaces/shop/pods/web/log", {},
     ("get", "", "pods", "log", "shop", "web")),
    ("PATCH", "/api/v1/namespaces/shop/pods/web/status", {},
     ("patch", "", "pods", "status", "shop", "web")),
    ("POST", "/api/v1/namespaces/shop/pods/web/binding", {},
     ("create", "", "pods", "binding", "shop", "web")),
    ("POST", "/api/v1/namespaces/shop/serviceaccounts/default/token", {},
     ("create", "", "serviceaccounts", "token", "shop", "default")),
    ("PUT", "/apis/apps/v1/namespaces/shop/deployments/web/scale", {},
     ("update", "apps", "deployments", "scale", "shop", "web")),
    ("DELETE", "/api/v1/namespaces/shop/configmaps", {},
     ("deletecollection", "", "configmaps", "", "shop", "")),
    ("DELETE", "/api/v1/namespaces/shop/configmaps/c", {},
     ("delete", "", "configmaps", "", "shop", "c")),
    # A namespace is its own namespace; its status and finalize are subresources.
    ("GET", "/api/v1/namespaces/shop", {}, ("get", "", "namespaces", "", "shop", "shop")),
    ("PUT", "/api/v1/namespaces/shop/finalize", {},
     ("update", "", "namespaces", "finalize", "shop", "shop")),
    ("GET", "/api/v1/nodes", {}, ("list", "", "nodes", "", "", "")),
    ("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {},
     ("create", RBAC, "clusterroles", "", "", "")),
    ("GET", "/api/v1/watch/namespaces/shop/pods", {}, ("watch", "", "pods", "", "shop", "")),
])
def test_resource_requests_read_as_kubes_request_info(method: str, path: str,
                                                      query: dict[str, str],
                                                      expected: tuple[str, ...]) -> None:
    attrs = request_attributes(ALICE, method, path, query)
    assert attrs.resource_request
    assert (attrs.verb, attrs.api_group, attrs.resource, attrs.subresource, attrs.namespace,
            attrs.name) == expected


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api"), ("GET", "/api/v1"), ("GET", "/apis"), ("GET", "/apis/apps"),
    ("GET", "/apis/apps/v1"), ("GET", "/healthz"), ("GET", "/openapi/v2"),
    ("POST", "/version"), ("GET", "/"),
])
def test_other_paths_are_non_resource_requests_with_the_http_verb(method: str, path: str
                                                                  ) -> None:
    attrs = request_attributes(ALICE, method, path, {})
    assert not attrs.resource_request
    assert (attrs.verb, attrs.path) == (method.lower(), path)


# --- impersonation ------------------------------------------------------------------------

def test_impersonation_headers_become_one_request_per_identity() -> None:
    headers = {"Impersonate-User": "system:serviceaccount:shop:builder",
               "Impersonate-Extra-Scopes%2Fone": "a", "Impersonate-Uid": "u-1"}
    requests = impersonation_requests(headers)
    attrs = [r.attributes(ALICE) for r in requests]
    assert [(a.resource, a.subresource, a.api_group, a.namespace, a.name) for a in attrs] == [
        ("serviceaccounts", "", "", "shop", "builder"),
        ("userextras", "scopes/one", "authentication.k8s.io", "", "a"),
        ("uids", "", "authentication.k8s.io", "", "u-1"),
    ]
    assert {a.verb for a in attrs} == {"impersonate"}
    user, extra = impersonated_user(requests, groups_specified=False)
    assert user == UserInfo(name="system:serviceaccount:shop:builder", uid="u-1",
                            groups=("system:serviceaccounts", "system:serviceaccounts:shop",
                                    "system:authenticated"))
    assert extra == {"scopes/one": ["a"]}


def test_impersonated_groups_are_the_authority_but_authenticated_is_added() -> None:
    requests = impersonation_requests({"Impersonate-User": "bob",
                                       "Impersonate-Group": "devs"})
    user, _ = impersonated_user(requests, groups_specified=True)
    assert user.groups == ("devs", "system:authenticated")
    anonymous, _ = impersonated_user(impersonation_requests(
        {"Impersonate-User": "system:anonymous"}), groups_specified=False)
    assert anonymous.groups == ("system:unauthenticated",)


def test_groups_without_a_user_are_refused_with_kubes_text() -> None:
    with pytest.raises(ImpersonationError) as error:
        impersonation_requests({"Impersonate-Group": "devs"})
    assert str(error.value) == "requested [{Group  devs    }] without impersonating a user"


# --- the chain, fed like the watch cache feeds it -------------------------------------------

class ListeningCache:
    """Records listeners the way WatchCache.listen does, for driving them by hand."""

    def __init__(self) -> None:
        self.listeners: dict[str, Any] = {}

    def listen(self, prefix: str, listener: Any) -> None:
        self.listeners[prefix] = listener


def cached(key: str, obj: dict[str, Any], revision: int = 1) -> CachedObject:
    meta = obj["metadata"]
    return CachedObject(key=key, resource_version=revision, raw=orjson.dumps(obj),
                        namespace=meta.get("namespace", ""), name=meta["name"], labels={},
                        fields={})


def role_binding(name: str, namespace: str, role: str, user: str) -> dict[str, Any]:
    return {"kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "apiGroup": RBAC, "name": user}]}


VIEW = {"kind": "ClusterRole", "metadata": {"name": "view"},
        "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}


def fed() -> tuple[Authorization, ListeningCache]:
    authorization = Authorization()
    cache = ListeningCache()
    authorization.feed(cache)  # type: ignore[arg-type]
    cache.listeners[rbac_prefix("clusterroles")].reset(
        [cached(rbac_prefix("clusterroles") + "view", VIEW)])
    return authorization, cache


def list_pods(user: UserInfo, namespace: str) -> Attributes:
    return Attributes(user=user, verb="list", resource="pods", namespace=namespace)


def test_bindings_count_from_the_step_the_cache_applies_them() -> None:
    authorization, cache = fed()
    binding = role_binding("alice-view", "shop", "view", "alice")
    key = rbac_prefix("rolebindings") + "shop/alice-view"
    feed = cache.listeners[rbac_prefix("rolebindings")]
    assert authorization.authorize(list_pods(ALICE, "shop"))[0] is Decision.NO_OPINION
    feed.changed("ADDED", cached(key, binding), None)
    decision, reason = authorization.authorize(list_pods(ALICE, "shop"))
    assert decision is Decision.ALLOW
    assert reason == ('RBAC: allowed by RoleBinding "alice-view/shop" of ClusterRole "view" '
                      'to User "alice"')
    assert authorization.authorize(list_pods(ALICE, "other"))[0] is Decision.NO_OPINION
    feed.changed("DELETED", cached(key, binding, 2), None)
    assert authorization.authorize(list_pods(ALICE, "shop"))[0] is Decision.NO_OPINION


def test_a_relist_of_one_rbac_resource_leaves_the_others() -> None:
    authorization, cache = fed()
    key = rbac_prefix("rolebindings") + "shop/alice-view"
    cache.listeners[rbac_prefix("rolebindings")].reset(
        [cached(key, role_binding("alice-view", "shop", "view", "alice"))])
    cache.listeners[rbac_prefix("roles")].reset([])
    assert authorization.authorize(list_pods(ALICE, "shop"))[0] is Decision.ALLOW
    cache.listeners[rbac_prefix("rolebindings")].reset([])
    assert authorization.authorize(list_pods(ALICE, "shop"))[0] is Decision.NO_OPINION


def test_the_node_graph_follows_pods_and_system_masters_needs_no_rules() -> None:
    authorization, cache = fed()
    pod = {"metadata": {"name": "web", "namespace": "shop"},
           "spec": {"nodeName": "a", "volumes": [{"name": "s", "secret": {"secretName": "tls"}}]}}
    get_secret = Attributes(user=NODE_A, verb="get", resource="secrets", namespace="shop",
                            name="tls")
    assert authorization.authorize(get_secret)[0] is Decision.NO_OPINION
    cache.listeners[POD_PREFIX].changed("ADDED", cached(POD_PREFIX + "shop/web", pod), None)
    assert authorization.authorize(get_secret)[0] is Decision.ALLOW
    cache.listeners[POD_PREFIX].changed("DELETED", cached(POD_PREFIX + "shop/web", pod), None)
    assert authorization.authorize(get_secret)[0] is Decision.NO_OPINION
    assert authorization.authorize(list_pods(ADMIN, "any"))[0] is Decision.ALLOW


def test_a_nodes_rules_cannot_be_listed() -> None:
    authorization, _ = fed()
    rules = authorization.rules_for(NODE_A, "shop")
    assert rules.incomplete
    assert rules.evaluation_error == "node authorizer does not support user rule resolution"


async def test_the_watch_cache_calls_listeners_in_the_step_it_applies(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    seen: list[tuple[str, str]] = []

    class Recorder:
        def reset(self, objects: list[CachedObject]) -> None:
            seen.append(("RESET", ",".join(o.name for o in objects)))

        def changed(self, type: str, obj: CachedObject, prev: CachedObject | None) -> None:
            seen.append((type, obj.name))

    await storage.create(POD_PREFIX + "ns/before", orjson.dumps(
        {"metadata": {"name": "before", "namespace": "ns"}}))
    cache = WatchCache(storage, prefixes=[POD_PREFIX],
                       index_fields=lambda prefix, obj: {})
    try:
        await cache.start()
        await cache.wait_until_ready()
        cache.listen(POD_PREFIX, Recorder())
        kv = await storage.create(POD_PREFIX + "ns/after", orjson.dumps(
            {"metadata": {"name": "after", "namespace": "ns"}}))
        await cache.wait_for_revision(kv.mod_revision)
        assert seen == [("RESET", "before"), ("ADDED", "after")]
        with pytest.raises(ValueError):
            cache.listen("/registry/core/nothing/", Recorder())
    finally:
        await cache.stop()
        await storage.close()


# --- reviews ------------------------------------------------------------------------------

def test_review_specs_need_exactly_one_kind_of_attributes() -> None:
    assert [c["field"] for c in spec_causes({}, self_review=True)] == ["spec.resourceAttributes"]
    both = {"resourceAttributes": {}, "nonResourceAttributes": {"path": "/x", "verb": "get"}}
    [cause] = spec_causes(both, self_review=True)
    assert cause["message"] == ('Invalid value: authorization.NonResourceAttributes{Path:"/x", '
                                'Verb:"get"}: cannot be specified in combination with '
                                "resourceAttributes")
    no_subject = spec_causes({"resourceAttributes": {}}, self_review=False)
    assert [c["field"] for c in no_subject] == ["spec.user"]


def test_review_attributes_are_kubes_resource_and_non_resource_attributes() -> None:
    attrs = review_attributes(ALICE, {"resourceAttributes": {
        "namespace": "shop", "verb": "get", "resource": "pods", "subresource": "log",
        "name": "web"}})
    assert (attrs.verb, attrs.resource, attrs.subresource, attrs.name, attrs.namespace) == \
        ("get", "pods", "log", "web", "shop")
    attrs = review_attributes(ALICE, {"nonResourceAttributes": {"path": "/healthz",
                                                                 "verb": "get"}})
    assert not attrs.resource_request and attrs.path == "/healthz"


# --- RBAC strategies ------------------------------------------------------------------------

def test_writing_a_role_needs_the_rules_it_grants() -> None:
    authorization, cache = fed()
    cache.listeners[rbac_prefix("rolebindings")].changed("ADDED", cached(
        rbac_prefix("rolebindings") + "shop/a", role_binding("a", "shop", "view", "alice")), None)
    ctx = authorization.context(ALICE)
    held = {"metadata": {"name": "r", "namespace": "shop"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}
    ROLE.check_write(ctx, held, None)
    more = {**held, "rules": [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]}
    with pytest.raises(status.StatusError) as error:
        ROLE.check_write(ctx, more, None)
    assert error.value.code == 403
    assert error.value.message == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "alice" '
        '(groups=["dev" "system:authenticated"]) is attempting to grant RBAC permissions '
        'not currently held:\n{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}')
    assert error.value.details == {"name": "r", "group": RBAC, "kind": "roles"}
    ROLE.check_write(None, more, None)  # the server's own writes are not checked
    ROLE.check_write(authorization.context(ADMIN), more, None)


def test_only_gc_changes_pass_and_aggregation_needs_cluster_admin() -> None:
    authorization, _ = fed()
    old = {"metadata": {"name": "big", "resourceVersion": "5"},
           "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}
    new = {**old, "metadata": {**old["metadata"], "finalizers": ["x"]}}
    assert only_gc_fields_changed(new, old)
    CLUSTER_ROLE.check_write(authorization.context(ALICE), new, old)
    aggregated = {"metadata": {"name": "agg"}, "rules": [],
                  "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}
    with pytest.raises(status.StatusError) as error:
        CLUSTER_ROLE.check_write(authorization.context(ALICE), aggregated, None)
    assert error.value.message.endswith(
        "must have cluster-admin privileges to use the aggregationRule")


def test_binding_a_missing_role_is_a_404_for_the_role() -> None:
    authorization, _ = fed()
    binding = role_binding("b", "shop", "nope", "bob")
    with pytest.raises(status.StatusError) as error:
        ROLE_BINDING.check_write(authorization.context(ALICE), binding, None)
    assert (error.value.code, error.value.message) == (
        404, 'clusterroles.rbac.authorization.k8s.io "nope" not found')


# --- NodeRestriction on the write path -----------------------------------------------------

class CacheStub:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    def get(self, key: str) -> CachedObject | None:
        obj = self.objects.get(key)
        return None if obj is None else cached(key, obj)


async def test_node_restriction_sees_the_write_and_the_stored_objects() -> None:
    registry = Registry()
    pods = registry.lookup("", "v1", "pods")
    assert pods is not None
    pod = {"metadata": {"name": "web", "namespace": "shop", "uid": "u"},
           "spec": {"nodeName": "b"}}
    store = SimpleNamespace(registry=registry, cache=CacheStub({pods.key("shop", "web"): pod}))
    ctx = Authorization().context(NODE_A)
    plugin = NodeRestriction()
    with pytest.raises(status.StatusError) as error:
        await plugin.validate(ctx, "UPDATE", pods, "status", pod, pod, name="web",
                              namespace="shop", store=store)  # type: ignore[arg-type]
    assert error.value.message == ('pods "web" is forbidden: node "a" can only update pod '
                                   "status for pods with spec.nodeName set to itself")
    await plugin.validate(Authorization().context(ALICE), "UPDATE", pods, "status", pod, pod,
                          name="web", namespace="shop", store=store)  # type: ignore[arg-type]
    await plugin.validate(None, "DELETE", pods, None, None, pod, name="web", namespace="shop",
                          store=store)  # type: ignore[arg-type]


# --- Status bodies ----------------------------------------------------------------------------

def test_status_bodies_are_byte_compatible_with_kube() -> None:
    body = status.encode_status(status.StatusError(
        404, "NotFound", 'pods "a<b>" not found', details={"name": "a", "kind": "pods"}
    ).to_status())
    assert body == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                    b'"message":"pods \\"a\\u003cb\\u003e\\" not found","reason":"NotFound",'
                    b'"details":{"name":"a","kind":"pods"},"code":404}\n')
    shuffled = {"code": 201, "status": "Success", "metadata": {}, "apiVersion": "v1",
                "kind": "Status"}
    assert status.encode_status(shuffled) == (b'{"kind":"Status","apiVersion":"v1",'
                                              b'"metadata":{},"status":"Success","code":201}\n')


# --- the aggregation controller --------------------------------------------------------------

class ReplaceRecorder:
    def __init__(self) -> None:
        self.replaced: list[dict[str, Any]] = []

    async def replace(self, resource: Any, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.replaced.append(body)
        return body


def test_the_aggregation_controller_writes_the_union_of_matching_roles() -> None:
    client = ReplaceRecorder()
    controller = ClusterRoleAggregationController(client, SharedInformers(client=None))  # type: ignore[arg-type]
    part = {"metadata": {"name": "part", "labels": {"agg": "yes"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}
    whole = {"metadata": {"name": "whole", "resourceVersion": "3"}, "rules": [],
             "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}}
    controller.roles.store.replace([part, whole])
    assert aggregated_role_names(controller.roles.store.list()) == ["whole"]
    asyncio.run(controller.reconcile("whole"))
    assert client.replaced == [{**whole, "rules": part["rules"]}]
    controller.roles.store.upsert(client.replaced[0])
    asyncio.run(controller.reconcile("whole"))  # settled: nothing more to write
    assert len(client.replaced) == 1
