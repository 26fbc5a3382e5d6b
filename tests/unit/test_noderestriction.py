"""NodeRestriction admission: kube's tables of what a node may and may not write."""

from __future__ import annotations

import copy

import pytest

from apiserver.admission.noderestriction import admit, forbidden_labels, is_kubelet_label
from apiserver.auth.authn import UserInfo
from apiserver.status import StatusError

NODE_A = UserInfo(name="system:node:a", groups=("system:nodes", "system:authenticated"))
ADMIN = UserInfo(name="admin", groups=("system:masters",))


def pod(name="web", node="a", **meta) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", **meta},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running"}}


def node_obj(name="a", labels=None, taints=None) -> dict:
    obj = {"metadata": {"name": name, "labels": dict(labels or {})}, "spec": {}}
    if taints is not None:
        obj["spec"]["taints"] = taints
    return obj


PODS = {("default", "web"): pod("web", "a"), ("default", "other"): pod("other", "b")}


def get_pod(namespace, name):
    return PODS.get((namespace, name))


def get_node(name):
    return {"metadata": {"name": name, "uid": f"node-uid-{name}"}} if name == "a" else None


def expect_forbidden(message: str, *args, **kwargs) -> StatusError:
    kwargs.setdefault("get_pod", get_pod)
    kwargs.setdefault("get_node", get_node)
    with pytest.raises(StatusError) as caught:
        admit(*args, **kwargs)
    assert caught.value.code == 403, caught.value.message
    assert caught.value.reason == "Forbidden"
    assert caught.value.message == message
    return caught.value


def test_non_nodes_are_never_restricted():
    assert admit(ADMIN, "UPDATE", "pods", "status", pod("other", "b"), pod("other", "b"),
                 namespace="default") is None
    assert admit(ADMIN, "UPDATE", "nodes", "", node_obj("b"), node_obj("b"), name="b") is None


def test_node_without_name_is_refused():
    nameless = UserInfo(name="system:node:", groups=("system:nodes",))
    expect_forbidden('pods "web" is forbidden: could not determine node from user '
                     '"system:node:"', nameless, "UPDATE", "pods", "status", pod(), pod(),
                     namespace="default")


# --- pods -------------------------------------------------------------------------------

def test_pod_status_only_for_own_pods_and_not_labels():
    own = pod("web", "a")
    assert admit(NODE_A, "UPDATE", "pods", "status", own, own, namespace="default") is None
    theirs = pod("other", "b")
    expect_forbidden('pods "other" is forbidden: node "a" can only update pod status for pods '
                     "with spec.nodeName set to itself",
                     NODE_A, "UPDATE", "pods", "status", theirs, theirs, namespace="default")
    relabelled = copy.deepcopy(own)
    relabelled["metadata"]["labels"] = {"app": "evil"}
    expect_forbidden('pods "web" is forbidden: node "a" cannot update labels through pod status',
                     NODE_A, "UPDATE", "pods", "status", relabelled, own, namespace="default")


def test_node_cannot_create_or_update_regular_pods():
    expect_forbidden('pods "new" is forbidden: pod does not have "kubernetes.io/config.mirror" '
                     'annotation, node "a" can only create mirror pods',
                     NODE_A, "CREATE", "pods", "", pod("new", "a"), None, namespace="default")
    expect_forbidden('pods "web" is forbidden: unexpected operation "UPDATE", node "a" can '
                     "only create and delete mirror pods",
                     NODE_A, "UPDATE", "pods", "", pod(), pod(), namespace="default")
    expect_forbidden("pods \"web\" is forbidden: unexpected pod subresource \"exec\", only "
                     "'status' and 'eviction' are allowed",
                     NODE_A, "CONNECT", "pods", "exec", pod(), None, namespace="default")


def mirror_pod(**spec_extra) -> dict:
    obj = pod("static-a", "a", annotations={"kubernetes.io/config.mirror": "hash"},
              ownerReferences=[{"apiVersion": "v1", "kind": "Node", "name": "a",
                                "uid": "node-uid-a", "controller": True}])
    obj["spec"].update(spec_extra)
    return obj


@pytest.mark.parametrize(("change", "reason"), [
    (lambda p: p["metadata"].pop("ownerReferences"),
     'node "a" can only create pods with an owner reference set to itself'),
    (lambda p: p["metadata"]["ownerReferences"][0].update(controller=False),
     'node "a" can only create pods with a controller owner reference set to itself'),
    (lambda p: p["metadata"]["ownerReferences"][0].update(uid="forged"),
     "node a UID mismatch: expected forged got node-uid-a"),
    (lambda p: p["spec"].update(nodeName="b"),
     'node "a" can only create pods with spec.nodeName set to itself'),
    (lambda p: p["spec"].update(serviceAccountName="default"),
     'node "a" can not create pods that reference a service account'),
    (lambda p: p["spec"].update(volumes=[{"name": "s", "secret": {"secretName": "x"}}]),
     'node "a" can not create pods that reference secrets'),
    (lambda p: p["spec"].update(volumes=[{"name": "c", "configMap": {"name": "x"}}]),
     'node "a" can not create pods that reference configmaps'),
    (lambda p: p["spec"].update(volumes=[{"name": "d", "persistentVolumeClaim":
                                          {"claimName": "x"}}]),
     'node "a" can not create pods that reference persistentvolumeclaims'),
])
def test_mirror_pod_creation_rules(change, reason):
    assert admit(NODE_A, "CREATE", "pods", "", mirror_pod(), None, namespace="default",
                 get_node=get_node) is None
    obj = mirror_pod()
    change(obj)
    expect_forbidden(f'pods "static-a" is forbidden: {reason}',
                     NODE_A, "CREATE", "pods", "", obj, None, namespace="default")


def test_delete_and_evict_only_own_pods():
    assert admit(NODE_A, "DELETE", "pods", "", None, pod("web", "a"), name="web",
                 namespace="default") is None
    expect_forbidden('pods "Unknown" is forbidden: node "a" can only delete pods with '
                     "spec.nodeName set to itself",
                     NODE_A, "DELETE", "pods", "", None, pod("other", "b"), name="other",
                     namespace="default")
    eviction = {"metadata": {"name": "web", "namespace": "default"}}
    assert admit(NODE_A, "CREATE", "pods", "eviction", eviction, None, name="web",
                 namespace="default", get_pod=get_pod) is None
    expect_forbidden('pods "other" is forbidden: node a can only evict pods with spec.nodeName '
                     "set to itself",
                     NODE_A, "CREATE", "pods", "eviction", {"metadata": {"name": "other"}},
                     None, name="other", namespace="default")
    with pytest.raises(StatusError) as missing:
        admit(NODE_A, "CREATE", "pods", "eviction", {"metadata": {"name": "gone"}}, None,
              name="gone", namespace="default", get_pod=get_pod)
    assert missing.value.code == 404


# --- nodes ------------------------------------------------------------------------------

def test_node_may_only_touch_its_own_node_object():
    assert admit(NODE_A, "CREATE", "nodes", "", node_obj("a"), None) is None
    assert admit(NODE_A, "UPDATE", "nodes", "status", node_obj("a"), node_obj("a"),
                 name="a") is None
    expect_forbidden('nodes "b" is forbidden: node "a" is not allowed to modify node "b"',
                     NODE_A, "CREATE", "nodes", "", node_obj("b"), None)
    expect_forbidden('nodes "b" is forbidden: node "a" is not allowed to modify node "b"',
                     NODE_A, "UPDATE", "nodes", "status", node_obj("b"), node_obj("b"),
                     name="b")


def test_node_labels_and_taints():
    allowed = {"kubernetes.io/hostname": "a", "node.kubernetes.io/instance-type": "vm",
               "topology.kubernetes.io/zone": "z1", "example.com/team": "x",
               "foo.kubelet.kubernetes.io/bar": "y"}
    assert admit(NODE_A, "CREATE", "nodes", "", node_obj("a", allowed), None) is None
    expect_forbidden('nodes "a" is forbidden: node "a" is not allowed to set the following '
                     "labels: kubernetes.io/role, node-restriction.kubernetes.io/pci",
                     NODE_A, "CREATE", "nodes", "",
                     node_obj("a", {"node-restriction.kubernetes.io/pci": "true",
                                    "kubernetes.io/role": "master"}), None)
    old = node_obj("a", {"node-restriction.kubernetes.io/pci": "true"})
    removed = node_obj("a", {})
    expect_forbidden('nodes "a" is forbidden: is not allowed to modify labels: '
                     "node-restriction.kubernetes.io/pci",
                     NODE_A, "UPDATE", "nodes", "", removed, old, name="a")
    # Unchanged restricted labels are fine on update (an admin set them).
    assert admit(NODE_A, "UPDATE", "nodes", "", old, old, name="a") is None
    tainted = node_obj("a", taints=[{"key": "k", "effect": "NoSchedule"}])
    expect_forbidden('nodes "a" is forbidden: node "a" is not allowed to modify taints',
                     NODE_A, "UPDATE", "nodes", "", node_obj("a", taints=[]), tainted, name="a")
    # Registering with taints is allowed; missing vs empty taints are equal.
    assert admit(NODE_A, "CREATE", "nodes", "", tainted, None) is None
    assert admit(NODE_A, "UPDATE", "nodes", "", node_obj("a", taints=[]), node_obj("a"),
                 name="a") is None
    with_source = node_obj("a")
    with_source["spec"]["configSource"] = {"configMap": {"name": "x"}}
    expect_forbidden('nodes "a" is forbidden: node "a" is not allowed to update configSource '
                     "to a new non-nil configSource",
                     NODE_A, "UPDATE", "nodes", "", with_source, node_obj("a"), name="a")


def test_label_helpers():
    assert is_kubelet_label("beta.kubernetes.io/arch")
    assert not is_kubelet_label("node-role.kubernetes.io/control-plane")
    assert forbidden_labels({"a.k8s.io/x": "1", "plain": "1"}, {}) == ["a.k8s.io/x"]


# --- leases, tokens, pvcs ---------------------------------------------------------------

def test_leases_only_own_in_node_lease_namespace():
    lease = {"metadata": {"name": "a", "namespace": "kube-node-lease"}}
    assert admit(NODE_A, "CREATE", "leases", "", lease, None,
                 namespace="kube-node-lease") is None
    assert admit(NODE_A, "UPDATE", "leases", "", lease, lease, name="a",
                 namespace="kube-node-lease") is None
    expect_forbidden('leases.coordination.k8s.io "b" is forbidden: can only access node lease '
                     "with the same name as the requesting node",
                     NODE_A, "CREATE", "leases", "", {"metadata": {"name": "b"}}, None,
                     namespace="kube-node-lease")
    expect_forbidden('leases.coordination.k8s.io "a" is forbidden: can only access leases in '
                     'the "kube-node-lease" system namespace',
                     NODE_A, "UPDATE", "leases", "", lease, lease, name="a",
                     namespace="default")


def token_request(pod_name="web", uid="uid-web", kind="Pod") -> dict:
    return {"metadata": {}, "spec": {"audiences": ["api"], "boundObjectRef": {
        "apiVersion": "v1", "kind": kind, "name": pod_name, "uid": uid}}}


def test_tokens_only_bound_to_own_pods():
    assert admit(NODE_A, "CREATE", "serviceaccounts", "token", token_request(), None,
                 name="default", namespace="default", get_pod=get_pod) is None
    cases = [
        (token_request(kind="Secret"), "node requested token not bound to a pod"),
        (token_request(uid=""), "node requested token with a pod binding without a uid"),
        (token_request(uid="stale"), "the UID in the bound object reference (stale) does not "
         "match the UID in record. The object might have been deleted and then recreated"),
        (token_request("other", "uid-other"),
         "node requested token bound to a pod scheduled on a different node"),
    ]
    for body, reason in cases:
        expect_forbidden(f'serviceaccounts "Unknown" is forbidden: {reason}',
                         NODE_A, "CREATE", "serviceaccounts", "token", body, None,
                         name="default", namespace="default")


def test_pvc_status_only():
    old = {"metadata": {"name": "data", "resourceVersion": "1"}, "spec": {"resources": {}},
           "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "2"
    new["status"]["capacity"] = {"storage": "2Gi"}
    new["status"]["conditions"] = [{"type": "Resizing", "status": "True"}]
    assert admit(NODE_A, "UPDATE", "persistentvolumeclaims", "status", new, old, name="data",
                 namespace="default") is None
    new["metadata"]["labels"] = {"x": "y"}
    error = expect_forbidden(
        'persistentvolumeclaims "data" is forbidden: node "a" is not allowed to update fields '
        "other than status.capacity and status.conditions: metadata.labels",
        NODE_A, "UPDATE", "persistentvolumeclaims", "status", new, old, name="data",
        namespace="default")
    assert error.details == {"name": "data", "kind": "persistentvolumeclaims"}
    expect_forbidden('persistentvolumeclaims "data" is forbidden: may only update PVC status',
                     NODE_A, "UPDATE", "persistentvolumeclaims", "", old, old, name="data",
                     namespace="default")


def test_other_resources_pass_through():
    event = {"metadata": {"name": "e1", "namespace": "default"}}
    assert admit(NODE_A, "CREATE", "events", "", event, None, namespace="default") is None
