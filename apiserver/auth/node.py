"""The Node authorizer: a kubelet may read only what the pods bound to it need.

Why: a node's credentials live on a machine that runs other people's workloads. If one
node is compromised, it must not be able to read every Secret in the cluster. Kubernetes
solves this with ``plugin/pkg/auth/authorizer/node``: a graph of "which pod on which node
references which Secret / ConfigMap / PVC / ServiceAccount", and an authorizer that lets a
``system:node:<name>`` user ``get`` such an object only when there is a path from the
object to its node. This module is that authorizer, written from kube's behaviour:

- :class:`NodeGraph` is fed with pods (``upsert_pod`` / ``delete_pod``). Only pods with
  ``spec.nodeName`` create edges; mirror pods only get the pod -> node edge (defence in
  depth: a node must never grant itself access by creating a pod).
- :class:`NodeAuthorizer` answers ``(Decision, reason)`` like kube: ``ALLOW`` or
  ``NO_OPINION`` (never ``DENY``; a later authorizer such as RBAC may still allow), with
  kube's reason strings (``no relationship found between node 'a' and this object``).
- Resources the graph does not subdivide are checked against :func:`node_rules`, the
  rules of kube's ``system:node`` ClusterRole (bootstrappolicy ``NodeRules()``), exactly
  as kube's node authorizer does with its static rules.

Invariants:
- A node is identified only by user name ``system:node:<name>`` *and* group
  ``system:nodes`` (kube's default node identifier); anyone else gets ``NO_OPINION``.
- Edges are reference counted per node, so two pods on one node sharing a Secret keep
  access until the last of them is gone; a pod that moves or is deleted takes its edges
  with it.
- The graph is not thread-safe: feed and query it from the apiserver's event loop.

Not modelled (our world has no such objects): PV -> PVC binding (so ``get
persistentvolumes`` never finds a relationship), VolumeAttachments, DRA ResourceClaims and
ResourceSlices owned by nodes. Their requests are routed exactly like kube's and end in
``no relationship found``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from apiserver.auth.authn import UserInfo
from apiserver.auth.authorizer import Attributes, Decision
from apiserver.auth.rbac import rules_allow

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
NODE_LEASE_NAMESPACE = "kube-node-lease"

# Vertex kinds, named like kube's graph vertex types (they appear in debug text only).
SECRET = "secret"
CONFIGMAP = "configmap"
PVC = "pvc"
PV = "pv"
SERVICE_ACCOUNT = "serviceAccount"
POD = "pod"
VOLUME_ATTACHMENT = "volumeattachment"
RESOURCE_CLAIM = "resourceclaim"
RESOURCE_SLICE = "resourceslice"

Obj = Mapping[str, Any]


# --- who is a node ---------------------------------------------------------------------

def node_identity(user: UserInfo | None) -> tuple[str, bool]:
    """``(node_name, is_node)`` like kube's default ``NodeIdentifier``.

    A user is a node only with the ``system:node:`` name prefix *and* the
    ``system:nodes`` group; ``("", True)`` means "a node, but which one is unknown".
    """
    if user is None or not user.name.startswith(NODE_USER_PREFIX):
        return "", False
    if NODES_GROUP not in user.groups:
        return "", False
    return user.name[len(NODE_USER_PREFIX):], True


# --- what a pod references --------------------------------------------------------------

def _containers(spec: Obj) -> Iterator[Obj]:
    """Init, regular and ephemeral containers, in kube's visiting order."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or ():
            if isinstance(container, Mapping):
                yield container


def _volumes(spec: Obj) -> Iterator[Obj]:
    for volume in spec.get("volumes") or ():
        if isinstance(volume, Mapping):
            yield volume


def _ref_name(ref: Any, key: str = "name") -> str:
    return str(ref.get(key) or "") if isinstance(ref, Mapping) else ""


# Volume sources that carry a ``secretRef`` (kube's VisitPodSecretNames), plus the odd ones.
_SECRET_REF_VOLUMES = ("cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi", "storageos")


def _volume_secret_names(volume: Obj) -> Iterator[str]:
    for source in _SECRET_REF_VOLUMES:
        if isinstance(volume.get(source), Mapping):
            yield _ref_name(volume[source].get("secretRef"))
    yield _ref_name(volume.get("secret"), "secretName")
    yield _ref_name(volume.get("azureFile"), "secretName")
    if isinstance(volume.get("csi"), Mapping):
        yield _ref_name(volume["csi"].get("nodePublishSecretRef"))
    for projection in (volume.get("projected") or {}).get("sources") or ():
        if isinstance(projection, Mapping):
            yield _ref_name(projection.get("secret"))


def pod_secret_names(pod: Obj) -> list[str]:
    """Every Secret the pod spec names (kube ``VisitPodSecretNames``), no empty names."""
    spec = pod.get("spec") or {}
    names = [_ref_name(ref) for ref in spec.get("imagePullSecrets") or ()]
    for container in _containers(spec):
        names += [_ref_name(env.get("secretRef")) for env in container.get("envFrom") or ()
                  if isinstance(env, Mapping)]
        names += [_ref_name((env.get("valueFrom") or {}).get("secretKeyRef"))
                  for env in container.get("env") or () if isinstance(env, Mapping)]
    for volume in _volumes(spec):
        names += list(_volume_secret_names(volume))
    return [name for name in names if name]


def pod_configmap_names(pod: Obj) -> list[str]:
    """Every ConfigMap the pod spec names (kube ``VisitPodConfigmapNames``)."""
    spec = pod.get("spec") or {}
    names: list[str] = []
    for container in _containers(spec):
        names += [_ref_name(env.get("configMapRef")) for env in container.get("envFrom") or ()
                  if isinstance(env, Mapping)]
        names += [_ref_name((env.get("valueFrom") or {}).get("configMapKeyRef"))
                  for env in container.get("env") or () if isinstance(env, Mapping)]
    for volume in _volumes(spec):
        names.append(_ref_name(volume.get("configMap")))
        for projection in (volume.get("projected") or {}).get("sources") or ():
            if isinstance(projection, Mapping):
                names.append(_ref_name(projection.get("configMap")))
    return [name for name in names if name]


def pod_pvc_names(pod: Obj) -> list[str]:
    """PVCs the pod mounts: ``persistentVolumeClaim`` volumes and generic ephemeral
    volumes (whose claim is named ``<pod>-<volume>``, as kube's ``VolumeClaimName``)."""
    pod_name = (pod.get("metadata") or {}).get("name") or ""
    names: list[str] = []
    for volume in _volumes(pod.get("spec") or {}):
        if isinstance(volume.get("persistentVolumeClaim"), Mapping):
            names.append(_ref_name(volume["persistentVolumeClaim"], "claimName"))
        elif isinstance(volume.get("ephemeral"), Mapping):
            names.append(f"{pod_name}-{volume.get('name', '')}")
    return [name for name in names if name]


def is_mirror_pod(pod: Obj) -> bool:
    return MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


Vertex = tuple[str, str, str]  # (kind, namespace, name)


def pod_vertices(pod: Obj) -> set[Vertex]:
    """The vertices a bound pod links to its node: itself and what it references."""
    meta = pod.get("metadata") or {}
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    vertices: set[Vertex] = {(POD, namespace, name)}
    if is_mirror_pod(pod):
        return vertices
    service_account = (pod.get("spec") or {}).get("serviceAccountName") or ""
    if service_account:
        vertices.add((SERVICE_ACCOUNT, namespace, service_account))
    vertices.update((SECRET, namespace, secret) for secret in pod_secret_names(pod))
    vertices.update((CONFIGMAP, namespace, cm) for cm in pod_configmap_names(pod))
    vertices.update((PVC, namespace, claim) for claim in pod_pvc_names(pod))
    return vertices


# --- the graph --------------------------------------------------------------------------

class NodeGraph:
    """Which node may reach which object, through the pods bound to it.

    Kube keeps a general DAG (pv -> pvc -> pod -> node); with only pods feeding it every
    path has length <= 2, so this keeps the flattened form: object -> {node: pod count}.
    """

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], tuple[str, frozenset[Vertex]]] = {}
        self._edges: dict[Vertex, Counter[str]] = {}
        self._nodes: Counter[str] = Counter()

    def upsert_pod(self, pod: Obj) -> None:
        """Record (or re-record) a pod; a pod without ``spec.nodeName`` has no edges."""
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        self._forget(key)
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if not node or not key[1]:
            return
        vertices = frozenset(pod_vertices(pod))
        self._pods[key] = (node, vertices)
        self._nodes[node] += 1
        for vertex in vertices:
            self._edges.setdefault(vertex, Counter())[node] += 1

    def delete_pod(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        self._forget((meta.get("namespace") or "", meta.get("name") or ""))

    def _forget(self, key: tuple[str, str]) -> None:
        previous = self._pods.pop(key, None)
        if previous is None:
            return
        node, vertices = previous
        self._nodes[node] -= 1
        if self._nodes[node] <= 0:
            del self._nodes[node]
        for vertex in vertices:
            counts = self._edges[vertex]
            counts[node] -= 1
            if counts[node] <= 0:
                del counts[node]
            if not counts:
                del self._edges[vertex]

    def has_node(self, node: str) -> bool:
        return node in self._nodes

    def has_path(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """True when some pod bound to ``node`` references the object."""
        return self._edges.get((kind, namespace, name), Counter())[node] > 0

    def referencing_nodes(self, kind: str, namespace: str, name: str) -> set[str]:
        return set(self._edges.get((kind, namespace, name), ()))


# --- static rules (kube's system:node ClusterRole) -------------------------------------

_READ = ("get", "list", "watch")


def _rule(verbs: Sequence[str], group: str, *resources: str) -> dict[str, list[str]]:
    return {"verbs": list(verbs), "apiGroups": [group], "resources": list(resources)}


def node_rules() -> list[dict[str, list[str]]]:
    """The PolicyRules of kube's ``system:node`` ClusterRole (bootstrappolicy
    ``NodeRules()``, feature-gated DRA / ClusterTrustBundle rules left out), in RBAC's
    JSON shape. The node authorizer allows whatever these allow for any node user."""
    return [
        _rule(["create"], "authentication.k8s.io", "tokenreviews"),
        _rule(["create"], "authorization.k8s.io", "subjectaccessreviews",
              "localsubjectaccessreviews"),
        _rule(_READ, "", "services"),
        _rule(["create", "get", "list", "watch"], "", "nodes"),
        _rule(["update", "patch"], "", "nodes/status"),
        _rule(["update", "patch"], "", "nodes"),
        _rule(["create", "update", "patch"], "", "events"),
        _rule(_READ, "", "pods"),
        _rule(["create", "delete"], "", "pods"),
        _rule(["update", "patch"], "", "pods/status"),
        _rule(["create"], "", "pods/eviction"),
        _rule(_READ, "", "secrets", "configmaps"),
        _rule(["get"], "", "persistentvolumeclaims", "persistentvolumes"),
        _rule(["get"], "", "endpoints"),
        _rule(["create", "get", "list", "watch"], "certificates.k8s.io",
              "certificatesigningrequests"),
        _rule(["get", "create", "update", "patch", "delete"], "coordination.k8s.io", "leases"),
        _rule(["get"], "storage.k8s.io", "volumeattachments"),
        _rule(["create"], "", "serviceaccounts/token"),
        _rule(["get", "update", "patch"], "", "persistentvolumeclaims/status"),
        _rule(["get", "watch", "list"], "storage.k8s.io", "csidrivers"),
        _rule(["get", "create", "update", "patch", "delete"], "storage.k8s.io", "csinodes"),
        _rule(_READ, "node.k8s.io", "runtimeclasses"),
    ]


# --- the authorizer ---------------------------------------------------------------------

Result = tuple[Decision, str]
_ALLOW: Result = (Decision.ALLOW, "")


def _no_relationship(node: str) -> Result:
    return Decision.NO_OPINION, f"no relationship found between node '{node}' and this object"


def _field_selector_has(attrs: Attributes, field: str, value: str) -> bool:
    selector = str(getattr(attrs, "field_selector", "") or "")
    for requirement in selector.split(","):
        key, op, wanted = requirement.partition("==") if "==" in requirement \
            else requirement.partition("=")
        if op and not key.endswith("!") and key.strip() == field and wanted.strip() == value:
            return True
    return False


class NodeAuthorizer:
    """Authorizes requests from kubelets, like kube's ``NodeAuthorizer.Authorize``.

    ``authorize_with_selectors`` mirrors kube's ``AuthorizeNodeWithSelectors`` feature
    (on by default from 1.32): node reads of Nodes and Pods are then narrowed to the
    node's own Node object and to ``spec.nodeName=<node>`` pod lists. Off (kube before
    1.32, and our default because the node agent watches every Node for routes), those
    requests fall through to :func:`node_rules`.
    """

    def __init__(self, graph: NodeGraph, *, rules: Sequence[Mapping[str, Any]] | None = None,
                 authorize_with_selectors: bool = False) -> None:
        self.graph = graph
        self.rules = list(node_rules() if rules is None else rules)
        self.authorize_with_selectors = authorize_with_selectors
        self._handlers = self._handler_table()

    def authorize(self, attrs: Attributes) -> Result:
        node, is_node = node_identity(attrs.user)
        if not is_node:
            return Decision.NO_OPINION, ""
        if not node:
            return Decision.NO_OPINION, f'unknown node for user "{attrs.user.name}"'
        if attrs.resource_request:
            handler = self._handlers.get((attrs.api_group, attrs.resource))
            if handler is not None:
                result = handler(node, attrs)
                if result is not None:
                    return result
        if rules_allow(attrs, self.rules):
            return _ALLOW
        return Decision.NO_OPINION, ""

    def _handler_table(self) -> dict[tuple[str, str], Callable[[str, Attributes], Result | None]]:
        return {
            ("", "secrets"): lambda n, a: self._read_namespaced(n, SECRET, a),
            ("", "configmaps"): lambda n, a: self._read_namespaced(n, CONFIGMAP, a),
            ("", "persistentvolumeclaims"): self._pvc,
            ("", "persistentvolumes"): lambda n, a: self._get(n, PV, a),
            ("resource.k8s.io", "resourceclaims"): lambda n, a: self._get(n, RESOURCE_CLAIM, a),
            ("storage.k8s.io", "volumeattachments"):
                lambda n, a: self._get(n, VOLUME_ATTACHMENT, a),
            ("", "serviceaccounts"): self._create_token,
            ("coordination.k8s.io", "leases"): self._lease,
            ("storage.k8s.io", "csinodes"): self._csinode,
            ("resource.k8s.io", "resourceslices"): self._resource_slice,
            ("", "nodes"): self._node,
            ("", "pods"): self._pod,
        }

    # Each helper returns a final answer, or None to fall through to the static rules.

    def _relationship(self, node: str, kind: str, attrs: Attributes) -> Result:
        if not attrs.name:
            return Decision.NO_OPINION, "No Object name found"
        if self.graph.has_path(node, kind, attrs.namespace, attrs.name):
            return _ALLOW
        return _no_relationship(node)

    def _get(self, node: str, kind: str, attrs: Attributes) -> Result:
        if attrs.verb != "get":
            return Decision.NO_OPINION, "can only get individual resources of this type"
        if attrs.subresource:
            return Decision.NO_OPINION, "cannot get subresource"
        return self._relationship(node, kind, attrs)

    def _read_namespaced(self, node: str, kind: str, attrs: Attributes) -> Result:
        if attrs.verb not in _READ:
            return Decision.NO_OPINION, "can only read resources of this type"
        if attrs.subresource:
            return Decision.NO_OPINION, "cannot read subresource"
        if not attrs.namespace:
            return Decision.NO_OPINION, "can only read namespaced object of this type"
        return self._relationship(node, kind, attrs)

    def _pvc(self, node: str, attrs: Attributes) -> Result:
        if attrs.subresource == "status":
            if attrs.verb not in ("update", "patch"):
                return Decision.NO_OPINION, "can only get/update/patch this type"
            return self._relationship(node, PVC, attrs)
        return self._get(node, PVC, attrs)

    def _create_token(self, node: str, attrs: Attributes) -> Result:
        if attrs.verb != "create" or not attrs.name:
            return (Decision.NO_OPINION,
                    "can only create tokens for individual service accounts")
        if attrs.subresource != "token":
            return (Decision.NO_OPINION,
                    "can only create token subresource of serviceaccount")
        if self.graph.has_path(node, SERVICE_ACCOUNT, attrs.namespace, attrs.name):
            return _ALLOW
        return _no_relationship(node)

    def _lease(self, node: str, attrs: Attributes) -> Result:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return (Decision.NO_OPINION,
                    "can only get, create, update, patch, or delete a node lease")
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return (Decision.NO_OPINION,
                    f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        # On create the name is not known yet: NodeRestriction admission checks it.
        if attrs.verb != "create" and attrs.name != node:
            return (Decision.NO_OPINION,
                    "can only access node lease with the same name as the requesting node")
        return _ALLOW

    def _csinode(self, node: str, attrs: Attributes) -> Result:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return (Decision.NO_OPINION,
                    "can only get, create, update, patch, or delete a CSINode")
        if attrs.subresource:
            return Decision.NO_OPINION, "cannot authorize CSINode subresources"
        if attrs.verb != "create" and attrs.name != node:
            return (Decision.NO_OPINION,
                    "can only access CSINode with the same name as the requesting node")
        return _ALLOW

    def _resource_slice(self, node: str, attrs: Attributes) -> Result:
        if attrs.subresource:
            return Decision.NO_OPINION, "cannot authorize ResourceSlice subresources"
        if attrs.verb == "create":
            return _ALLOW
        if attrs.verb in ("get", "update", "patch", "delete"):
            return self._relationship(node, RESOURCE_SLICE, attrs)
        if attrs.verb in ("watch", "list", "deletecollection"):
            if not self.authorize_with_selectors or \
                    _field_selector_has(attrs, "nodeName", node):
                return _ALLOW
            return (Decision.NO_OPINION, "can only list/watch/deletecollection resourceslices "
                                         "with nodeName field selector")
        return (Decision.NO_OPINION, "only the following verbs are allowed for a ResourceSlice: "
                                     "get, watch, list, create, update, patch, delete, "
                                     "deletecollection")

    def _node(self, node: str, attrs: Attributes) -> Result | None:
        if not self.authorize_with_selectors:
            return None
        if attrs.subresource == "" and attrs.verb in ("create", "update", "patch"):
            return _ALLOW  # NodeRestriction limits the node to its own object.
        if attrs.subresource == "" and attrs.verb in _READ:
            if attrs.name == node:
                return _ALLOW
            if not attrs.name:
                return (Decision.NO_OPINION,
                        f"node '{node}' cannot read all nodes, only its own Node object")
            return (Decision.NO_OPINION,
                    f"node '{node}' cannot read '{attrs.name}', only its own Node object")
        if attrs.subresource == "status" and attrs.verb in ("update", "patch"):
            return _ALLOW
        return Decision.NO_OPINION, ""

    def _pod(self, node: str, attrs: Attributes) -> Result | None:
        if not self.authorize_with_selectors:
            return None
        sub, verb = attrs.subresource, attrs.verb
        if sub == "" and verb == "get":
            return self._get(node, POD, attrs)
        if sub == "" and verb in ("list", "watch"):
            if _field_selector_has(attrs, "spec.nodeName", node):
                return _ALLOW
            if attrs.name:
                return self._relationship(node, POD, attrs)
            return Decision.NO_OPINION, "can only list/watch pods with spec.nodeName field selector"
        if (sub == "" and verb in ("create", "delete")) \
                or (sub == "status" and verb in ("update", "patch")) \
                or (sub == "eviction" and verb == "create"):
            return _ALLOW  # NodeRestriction limits these to pods bound to the node.
        return Decision.NO_OPINION, ""
