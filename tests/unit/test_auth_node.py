"""The Node authorizer: graph references of every kind, and kube's allow/no-opinion table."""

from __future__ import annotations

import pytest

from apiserver.auth.authn import UserInfo
from apiserver.auth.authorizer import Attributes as RequestAttributes
from apiserver.auth.authorizer import Decision
from apiserver.auth.node import (
    CONFIGMAP,
    PVC,
    SECRET,
    SERVICE_ACCOUNT,
    NodeAuthorizer,
    NodeGraph,
    node_identity,
    node_rules,
    pod_configmap_names,
    pod_pvc_names,
    pod_secret_names,
)
from apiserver.auth.rbac import rules_allow

NODE_A = UserInfo(name="system:node:a", groups=("system:nodes", "system:authenticated"))
NODE_B = UserInfo(name="system:node:b", groups=("system:nodes", "system:authenticated"))
NO_REL_A = "no relationship found between node 'a' and this object"


def pod(name: str = "web", *, node: str = "a", ns: str = "default", **spec) -> dict:
    full = {"containers": [{"name": "c", "image": "nginx"}], **spec}
    if node:
        full["nodeName"] = node
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"}, "spec": full}


RICH_SPEC = {
    "serviceAccountName": "builder",
    "imagePullSecrets": [{"name": "pull"}],
    "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-env"}},
                                                    {"configMapRef": {"name": "init-cm"}}]}],
    "containers": [{
        "name": "c",
        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                {"name": "C", "value": "plain"}],
    }],
    "ephemeralContainers": [{"name": "debug", "envFrom": [{"secretRef": {"name": "eph"}}]}],
    "volumes": [
        {"name": "s", "secret": {"secretName": "vol-secret"}},
        {"name": "c", "configMap": {"name": "vol-cm"}},
        {"name": "p", "projected": {"sources": [{"secret": {"name": "proj-secret"}},
                                                {"configMap": {"name": "proj-cm"}},
                                                {"serviceAccountToken": {"path": "t"}}]}},
        {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}},
        {"name": "tmp", "emptyDir": {}},
    ],
}


def attrs(user=NODE_A, verb="get", resource="secrets", name="", namespace="default",
          subresource="", group="", **extra) -> RequestAttributes:
    return RequestAttributes(user=user, verb=verb, resource=resource, name=name,
                             namespace=namespace, subresource=subresource, api_group=group,
                             **extra)


# --- references -------------------------------------------------------------------------

def test_pod_references_of_every_kind():
    p = pod("rich", **RICH_SPEC)
    assert sorted(pod_secret_names(p)) == sorted([
        "pull", "init-env", "env-secret", "eph", "vol-secret", "proj-secret", "csi-secret"])
    assert sorted(pod_configmap_names(p)) == ["env-cm", "init-cm", "proj-cm", "vol-cm"]
    assert pod_pvc_names(p) == ["data", "rich-scratch"]


def test_graph_records_each_reference_for_the_bound_node_only():
    graph = NodeGraph()
    graph.upsert_pod(pod("rich", **RICH_SPEC))
    for kind, name in [(SECRET, "pull"), (SECRET, "eph"), (SECRET, "csi-secret"),
                       (CONFIGMAP, "proj-cm"), (CONFIGMAP, "init-cm"), (PVC, "data"),
                       (PVC, "rich-scratch"), (SERVICE_ACCOUNT, "builder")]:
        assert graph.has_path("a", kind, "default", name), (kind, name)
        assert not graph.has_path("b", kind, "default", name), (kind, name)
        assert not graph.has_path("a", kind, "other", name), (kind, name)
    assert not graph.has_path("a", SECRET, "default", "unrelated")


def test_unbound_pods_and_mirror_pods_grant_nothing():
    graph = NodeGraph()
    graph.upsert_pod(pod("pending", node="", volumes=[{"name": "s",
                                                        "secret": {"secretName": "s1"}}]))
    mirror = pod("static", volumes=[{"name": "s", "secret": {"secretName": "s2"}}])
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    graph.upsert_pod(mirror)
    assert not graph.has_path("a", SECRET, "default", "s1")
    assert not graph.has_path("a", SECRET, "default", "s2")
    assert graph.has_path("a", "pod", "default", "static")


def test_shared_secret_kept_until_last_pod_goes():
    graph = NodeGraph()
    vol = [{"name": "s", "secret": {"secretName": "shared"}}]
    graph.upsert_pod(pod("one", volumes=vol))
    graph.upsert_pod(pod("two", volumes=vol))
    graph.delete_pod(pod("one"))
    assert graph.has_path("a", SECRET, "default", "shared")
    graph.delete_pod(pod("two"))
    assert not graph.has_path("a", SECRET, "default", "shared")
    assert not graph.has_node("a")


# --- authorize --------------------------------------------------------------------------

@pytest.fixture
def authz() -> NodeAuthorizer:
    graph = NodeGraph()
    graph.upsert_pod(pod("rich", **RICH_SPEC))
    return NodeAuthorizer(graph)


@pytest.mark.parametrize(("request_attrs", "expected"), [
    # secrets / configmaps: get, list, watch of a referenced object
    (attrs(name="vol-secret"), (Decision.ALLOW, "")),
    (attrs(verb="watch", name="pull"), (Decision.ALLOW, "")),
    (attrs(resource="configmaps", name="env-cm"), (Decision.ALLOW, "")),
    (attrs(name="someone-elses"), (Decision.NO_OPINION, NO_REL_A)),
    (attrs(name="vol-secret", namespace="other"), (Decision.NO_OPINION, NO_REL_A)),
    (attrs(user=NODE_B, name="vol-secret"),
     (Decision.NO_OPINION, "no relationship found between node 'b' and this object")),
    (attrs(verb="list"), (Decision.NO_OPINION, "No Object name found")),
    (attrs(verb="update", name="vol-secret"),
     (Decision.NO_OPINION, "can only read resources of this type")),
    (attrs(name="vol-secret", subresource="x"), (Decision.NO_OPINION, "cannot read subresource")),
    (attrs(name="vol-secret", namespace=""),
     (Decision.NO_OPINION, "can only read namespaced object of this type")),
    # pvcs and pvs
    (attrs(resource="persistentvolumeclaims", name="data"), (Decision.ALLOW, "")),
    (attrs(resource="persistentvolumeclaims", verb="list"),
     (Decision.NO_OPINION, "can only get individual resources of this type")),
    (attrs(resource="persistentvolumeclaims", name="data", verb="patch", subresource="status"),
     (Decision.ALLOW, "")),
    (attrs(resource="persistentvolumeclaims", name="data", subresource="status"),
     (Decision.NO_OPINION, "can only get/update/patch this type")),
    (attrs(resource="persistentvolumes", name="pv1", namespace=""),
     (Decision.NO_OPINION, NO_REL_A)),
    # service account tokens
    (attrs(resource="serviceaccounts", verb="create", subresource="token", name="builder"),
     (Decision.ALLOW, "")),
    (attrs(resource="serviceaccounts", verb="create", subresource="token", name="default"),
     (Decision.NO_OPINION, NO_REL_A)),
    (attrs(resource="serviceaccounts", verb="get", name="builder"),
     (Decision.NO_OPINION, "can only create tokens for individual service accounts")),
    (attrs(resource="serviceaccounts", verb="create", name="builder"),
     (Decision.NO_OPINION, "can only create token subresource of serviceaccount")),
    # leases
    (attrs(resource="leases", group="coordination.k8s.io", namespace="kube-node-lease",
           name="a", verb="update"), (Decision.ALLOW, "")),
    (attrs(resource="leases", group="coordination.k8s.io", namespace="kube-node-lease",
           verb="create"), (Decision.ALLOW, "")),
    (attrs(resource="leases", group="coordination.k8s.io", namespace="kube-node-lease",
           name="b", verb="update"),
     (Decision.NO_OPINION,
      "can only access node lease with the same name as the requesting node")),
    (attrs(resource="leases", group="coordination.k8s.io", namespace="default", name="a"),
     (Decision.NO_OPINION, 'can only access leases in the "kube-node-lease" system namespace')),
    (attrs(resource="leases", group="coordination.k8s.io", namespace="kube-node-lease",
           verb="list"),
     (Decision.NO_OPINION, "can only get, create, update, patch, or delete a node lease")),
    # everything else: the static system:node rules
    (attrs(resource="nodes", verb="list", namespace=""), (Decision.ALLOW, "")),
    (attrs(resource="nodes", verb="patch", subresource="status", name="a", namespace=""),
     (Decision.ALLOW, "")),
    (attrs(resource="pods", verb="watch"), (Decision.ALLOW, "")),
    (attrs(resource="pods", verb="update", subresource="status", name="x"),
     (Decision.ALLOW, "")),
    (attrs(resource="events", verb="create"), (Decision.ALLOW, "")),
    (attrs(resource="services", verb="list"), (Decision.ALLOW, "")),
    (attrs(resource="endpointslices", group="discovery.k8s.io", verb="list"),
     (Decision.NO_OPINION, "")),
    (attrs(resource="pods", verb="update", name="x"), (Decision.NO_OPINION, "")),
    (attrs(resource="deployments", group="apps", verb="list"), (Decision.NO_OPINION, "")),
])
def test_authorize_table(authz, request_attrs, expected):
    assert authz.authorize(request_attrs) == expected


def test_non_nodes_get_no_opinion_and_nameless_nodes_a_reason(authz):
    admin = UserInfo(name="admin", groups=("system:masters",))
    assert authz.authorize(attrs(user=admin, name="vol-secret")) == (Decision.NO_OPINION, "")
    # The prefix alone is not enough: the system:nodes group is required too.
    impostor = UserInfo(name="system:node:a", groups=("system:authenticated",))
    assert authz.authorize(attrs(user=impostor, name="vol-secret")) == (Decision.NO_OPINION, "")
    nameless = UserInfo(name="system:node:", groups=("system:nodes",))
    assert authz.authorize(attrs(user=nameless, name="vol-secret")) == (
        Decision.NO_OPINION, 'unknown node for user "system:node:"')
    assert node_identity(NODE_A) == ("a", True)


def test_pod_moved_or_deleted_removes_access():
    graph = NodeGraph()
    authz = NodeAuthorizer(graph)
    vol = [{"name": "s", "secret": {"secretName": "db-password"}}]
    request = attrs(name="db-password")
    graph.upsert_pod(pod("db", node="a", volumes=vol))
    assert authz.authorize(request)[0] is Decision.ALLOW
    graph.upsert_pod(pod("db", node="b", volumes=vol))  # recreated elsewhere
    assert authz.authorize(request) == (Decision.NO_OPINION, NO_REL_A)
    assert authz.authorize(attrs(user=NODE_B, name="db-password"))[0] is Decision.ALLOW
    graph.upsert_pod(pod("db", node="b"))  # spec no longer references it
    assert authz.authorize(attrs(user=NODE_B, name="db-password"))[0] is Decision.NO_OPINION
    graph.upsert_pod(pod("db", node="b", volumes=vol))
    graph.delete_pod(pod("db", node="b"))
    assert authz.authorize(attrs(user=NODE_B, name="db-password"))[0] is Decision.NO_OPINION


def test_selector_mode_narrows_node_and_pod_reads():
    graph = NodeGraph()
    graph.upsert_pod(pod("web"))
    authz = NodeAuthorizer(graph, authorize_with_selectors=True)
    assert authz.authorize(attrs(resource="nodes", name="a", namespace="")) == (Decision.ALLOW, "")
    assert authz.authorize(attrs(resource="nodes", verb="list", namespace="")) == (
        Decision.NO_OPINION, "node 'a' cannot read all nodes, only its own Node object")
    assert authz.authorize(attrs(resource="nodes", name="b", namespace="")) == (
        Decision.NO_OPINION, "node 'a' cannot read 'b', only its own Node object")
    assert authz.authorize(attrs(resource="pods", verb="watch",
                                 field_selector="spec.nodeName=a"))[0] is Decision.ALLOW
    assert authz.authorize(attrs(resource="pods", verb="list")) == (
        Decision.NO_OPINION, "can only list/watch pods with spec.nodeName field selector")
    assert authz.authorize(attrs(resource="pods", name="web"))[0] is Decision.ALLOW
    assert authz.authorize(attrs(resource="pods", name="other")) == (Decision.NO_OPINION, NO_REL_A)


def test_node_rules_match_kube_system_node_role():
    rules = node_rules()
    assert {"verbs": ["create"], "apiGroups": [""], "resources": ["serviceaccounts/token"]} \
        in rules
    assert rules_allow(attrs(resource="certificatesigningrequests",
                             group="certificates.k8s.io", verb="create"), rules)
    assert not rules_allow(attrs(resource="secrets", verb="delete", name="x"), rules)
    assert not rules_allow(RequestAttributes(user=NODE_A, verb="get", resource_request=False,
                                             path="/healthz"), rules)
