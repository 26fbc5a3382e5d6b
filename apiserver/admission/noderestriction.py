"""NodeRestriction admission: a kubelet may change only its own Node and its own pods.

Why: the Node authorizer (``apiserver/auth/node.py``) decides *which kinds* of writes a
node may make (update pod status, create its Node, renew a lease...), but it cannot see
request bodies. This plugin, written from kube's
``plugin/pkg/admission/noderestriction/admission.go``, looks at the object and closes the
gaps: pod status only for pods bound to the node, pod deletion and eviction likewise, only
its own Node object (no taint changes, no ``node-restriction.kubernetes.io/`` or unknown
``kubernetes.io`` labels), only its own Lease in ``kube-node-lease``, PVC status only, and
ServiceAccount tokens only when bound to a pod running on the node.

:func:`admit` is pure: it gets the request's pieces plus two look-up callables for the
stored pod and node, and either returns ``None`` or raises :class:`StatusError`:
``403 Forbidden`` with kube's message (``pods "web" is forbidden: node "a" can only update
pod status for pods with spec.nodeName set to itself``) or ``404`` where kube returns the
look-up's NotFound. Requests from users that are not nodes are never touched.

Invariants:
- Operations are admission's ``CREATE``/``UPDATE``/``DELETE``/``CONNECT``; ``old`` is the
  stored object on UPDATE and DELETE (kube's ``GetOldObject``).
- The name in a Forbidden message follows kube's ``admission.NewForbidden``: the object's
  name, else its ``generateName``, else ``Unknown`` (so deletes read ``"Unknown"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from apiserver.auth.authn import UserInfo
from apiserver.auth.node import (
    MIRROR_POD_ANNOTATION,
    NODE_LEASE_NAMESPACE,
    node_identity,
    pod_configmap_names,
    pod_secret_names,
)
from apiserver.status import StatusError, not_found

Obj = Mapping[str, Any]
PodGetter = Callable[[str, str], Obj | None]  # (namespace, name) -> pod or None
NodeGetter = Callable[[str], Obj | None]  # name -> node or None

NODE_RESTRICTION_LABEL_NAMESPACE = "node-restriction.kubernetes.io"
# Labels a kubelet may set on its own Node (k8s.io/api core/v1 ``KubeletLabels``).
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
})
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")

# The group each resource lives in, for callers that pass only the plural.
_DEFAULT_GROUPS = {
    "pods": "", "nodes": "", "persistentvolumeclaims": "", "serviceaccounts": "",
    "leases": "coordination.k8s.io", "csinodes": "storage.k8s.io",
}


class _Request:
    """The admission attributes one call works on (kube's ``admission.Attributes``)."""

    def __init__(self, *, operation: str, group: str, resource: str, subresource: str,
                 name: str, namespace: str, obj: Obj | None, old: Obj | None,
                 get_pod: PodGetter | None, get_node: NodeGetter | None) -> None:
        self.operation = operation.upper()
        self.group, self.resource, self.subresource = group, resource, subresource
        self.namespace, self.obj, self.old = namespace, obj, old
        self.get_pod, self.get_node = get_pod, get_node
        self.name = name or _meta(obj).get("name") or ""

    def forbidden(self, reason: str) -> StatusError:
        """kube ``admission.NewForbidden``: ``<resource> "<name>" is forbidden: <reason>``."""
        meta = _meta(self.obj)
        name = meta.get("name") or meta.get("generateName") or "Unknown"
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        details: dict[str, Any] = {"name": name, "kind": self.resource}
        if self.group:
            details["group"] = self.group
        return StatusError(403, "Forbidden", f'{qualified} "{name}" is forbidden: {reason}',
                           details=details)

    def existing_pod(self, name: str) -> Obj:
        pod = self.get_pod(self.namespace, name) if self.get_pod is not None else None
        if pod is None:
            raise not_found("", "pods", name)
        return pod


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _spec(obj: Obj | None) -> Obj:
    return (obj or {}).get("spec") or {}


def admit(user: UserInfo | None, operation: str, resource: str, subresource: str,
          obj: Obj | None, old: Obj | None, *, name: str = "", namespace: str = "",
          api_group: str | None = None, get_pod: PodGetter | None = None,
          get_node: NodeGetter | None = None) -> None:
    """Admit or refuse one write by a node; ``None`` means admitted.

    ``name``/``namespace`` are the request's (the object's name is used when ``name`` is
    empty, as on create). ``api_group`` defaults to the resource's usual group.
    ``get_pod`` / ``get_node`` read the stored pod / node (``None`` when absent).
    """
    node, is_node = node_identity(user)
    if not is_node:
        return
    group = _DEFAULT_GROUPS.get(resource, "") if api_group is None else api_group
    request = _Request(operation=operation, group=group, resource=resource,
                       subresource=subresource, name=name, namespace=namespace,
                       obj=obj, old=old, get_pod=get_pod, get_node=get_node)
    if not node:
        raise request.forbidden(f'could not determine node from user "{user.name}"')
    handler = _HANDLERS.get((group, resource))
    if handler is not None:
        handler(node, request)


# --- pods -------------------------------------------------------------------------------

def _admit_pods(node: str, a: _Request) -> None:
    if a.subresource == "":
        _admit_pod(node, a)
    elif a.subresource == "status":
        _admit_pod_status(node, a)
    elif a.subresource == "eviction":
        _admit_pod_eviction(node, a)
    else:
        raise a.forbidden(f'unexpected pod subresource "{a.subresource}", '
                          "only 'status' and 'eviction' are allowed")


def _admit_pod(node: str, a: _Request) -> None:
    if a.operation == "CREATE":
        _admit_pod_create(node, a)
        return
    if a.operation == "DELETE":
        existing = a.old if a.old is not None else a.existing_pod(a.name)
        if _spec(existing).get("nodeName") != node:
            raise a.forbidden(f'node "{node}" can only delete pods with spec.nodeName set '
                              "to itself")
        return
    raise a.forbidden(f'unexpected operation "{a.operation}", node "{node}" can only create '
                      "and delete mirror pods")


def _admit_pod_create(node: str, a: _Request) -> None:
    pod = a.obj or {}
    if MIRROR_POD_ANNOTATION not in (_meta(pod).get("annotations") or {}):
        raise a.forbidden(f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, '
                          f'node "{node}" can only create mirror pods')
    if _spec(pod).get("nodeName") != node:
        raise a.forbidden(f'node "{node}" can only create pods with spec.nodeName set to itself')
    _check_mirror_owner(node, a, list(_meta(pod).get("ownerReferences") or []))
    if _spec(pod).get("serviceAccountName"):
        raise a.forbidden(f'node "{node}" can not create pods that reference a service account')
    if pod_secret_names(pod):
        raise a.forbidden(f'node "{node}" can not create pods that reference secrets')
    if pod_configmap_names(pod):
        raise a.forbidden(f'node "{node}" can not create pods that reference configmaps')
    volumes = [v for v in _spec(pod).get("volumes") or () if isinstance(v, Mapping)]
    for volume in volumes:
        for source in (volume.get("projected") or {}).get("sources") or ():
            if isinstance(source, Mapping) and source.get("clusterTrustBundle") is not None:
                raise a.forbidden(f'node "{node}" can not create pods that reference '
                                  "clustertrustbundles")
    if any(volume.get("persistentVolumeClaim") is not None for volume in volumes):
        raise a.forbidden(f'node "{node}" can not create pods that reference '
                          "persistentvolumeclaims")


def _check_mirror_owner(node: str, a: _Request, owners: list[Obj]) -> None:
    if len(owners) > 1:
        raise a.forbidden(f'node "{node}" can only create pods with a single owner reference '
                          "set to itself")
    if not owners:
        raise a.forbidden(f'node "{node}" can only create pods with an owner reference set '
                          "to itself")
    owner = owners[0]
    if owner.get("apiVersion") != "v1" or owner.get("kind") != "Node" \
            or owner.get("name") != node:
        raise a.forbidden(f'node "{node}" can only create pods with an owner reference set '
                          "to itself")
    if not owner.get("controller"):
        raise a.forbidden(f'node "{node}" can only create pods with a controller owner '
                          "reference set to itself")
    if owner.get("blockOwnerDeletion"):
        raise a.forbidden(f'node "{node}" must not set blockOwnerDeletion on an owner '
                          "reference")
    stored = a.get_node(node) if a.get_node is not None else None
    if stored is None:
        raise not_found("", "nodes", node)
    stored_uid = _meta(stored).get("uid") or ""
    if owner.get("uid") != stored_uid:
        raise a.forbidden(f"node {node} UID mismatch: expected {owner.get('uid') or ''} "
                          f"got {stored_uid}")


def _admit_pod_status(node: str, a: _Request) -> None:
    if a.operation != "UPDATE":
        raise a.forbidden(f'unexpected operation "{a.operation}"')
    if _spec(a.old).get("nodeName") != node:
        raise a.forbidden(f'node "{node}" can only update pod status for pods with '
                          "spec.nodeName set to itself")
    if (_meta(a.old).get("labels") or {}) != (_meta(a.obj).get("labels") or {}):
        raise a.forbidden(f'node "{node}" cannot update labels through pod status')
    old_claims = ((a.old or {}).get("status") or {}).get("resourceClaimStatuses") or []
    new_claims = ((a.obj or {}).get("status") or {}).get("resourceClaimStatuses") or []
    if [(c.get("name"), c.get("resourceClaimName")) for c in old_claims] != \
            [(c.get("name"), c.get("resourceClaimName")) for c in new_claims]:
        raise a.forbidden(f'node "{node}" cannot update resource claim statues')


def _admit_pod_eviction(node: str, a: _Request) -> None:
    if a.operation != "CREATE":
        raise a.forbidden(f"unexpected operation {a.operation}")
    # The request path's pod name wins over the one in the Eviction body.
    pod_name = a.name or _meta(a.obj).get("name") or ""
    if not pod_name:
        raise a.forbidden("could not determine pod from request data")
    if _spec(a.existing_pod(pod_name)).get("nodeName") != node:
        raise a.forbidden(f"node {node} can only evict pods with spec.nodeName set to itself")


# --- nodes ------------------------------------------------------------------------------

def _label_namespace(key: str) -> str:
    prefix, slash, _ = key.partition("/")
    return prefix if slash else ""


def _in_namespace(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def is_kubelet_label(key: str) -> bool:
    """A label a kubelet may set on its own Node (kube ``IsKubeletLabel``)."""
    namespace = _label_namespace(key)
    return key in KUBELET_LABELS or any(_in_namespace(namespace, allowed)
                                        for allowed in KUBELET_LABEL_NAMESPACES)


def forbidden_labels(new: Mapping[str, str] | None, old: Mapping[str, str] | None) -> list[str]:
    """Sorted label keys a node may not add, change or remove (kube ``getForbiddenLabels``
    over ``getModifiedLabels``)."""
    new, old = new or {}, old or {}
    modified = {key for key in {*new, *old} if new.get(key) != old.get(key)
                or (key in new) != (key in old)}
    forbidden = set()
    for key in modified:
        namespace = _label_namespace(key)
        if _in_namespace(namespace, NODE_RESTRICTION_LABEL_NAMESPACE):
            forbidden.add(key)
        is_kubernetes = _in_namespace(namespace, "kubernetes.io") or \
            _in_namespace(namespace, "k8s.io")
        if is_kubernetes and not is_kubelet_label(key):
            forbidden.add(key)
    return sorted(forbidden)


def _admit_node(node: str, a: _Request) -> None:
    if a.name != node:
        raise a.forbidden(f'node "{node}" is not allowed to modify node "{a.name}"')
    if a.operation == "CREATE":
        if _spec(a.obj).get("configSource") is not None:
            raise a.forbidden(f'node "{node}" is not allowed to create pods with a non-nil '
                              "configSource")
        labels = forbidden_labels(_meta(a.obj).get("labels"), None)
        if labels:
            raise a.forbidden(f'node "{node}" is not allowed to set the following labels: '
                              f'{", ".join(labels)}')
    elif a.operation == "UPDATE":
        config_source = _spec(a.obj).get("configSource")
        if config_source is not None and config_source != _spec(a.old).get("configSource"):
            raise a.forbidden(f'node "{node}" is not allowed to update configSource to a new '
                              "non-nil configSource")
        # Missing and empty taint lists are equal, as in kube's semantic DeepEqual.
        if (_spec(a.obj).get("taints") or []) != (_spec(a.old).get("taints") or []):
            raise a.forbidden(f'node "{node}" is not allowed to modify taints')
        labels = forbidden_labels(_meta(a.obj).get("labels"), _meta(a.old).get("labels"))
        if labels:
            raise a.forbidden(f'is not allowed to modify labels: {", ".join(labels)}')


# --- persistent volume claims -----------------------------------------------------------

_PVC_STATUS_FIELDS_A_NODE_MAY_SET = ("capacity", "conditions", "allocatedResourceStatuses",
                                     "allocatedResources")


def _pvc_without_node_fields(pvc: Obj | None) -> dict[str, Any]:
    copy = {key: value for key, value in (pvc or {}).items()}
    copy["metadata"] = {key: value for key, value in _meta(pvc).items()
                        if key not in ("resourceVersion", "managedFields")}
    copy["status"] = {key: value for key, value in ((pvc or {}).get("status") or {}).items()
                      if key not in _PVC_STATUS_FIELDS_A_NODE_MAY_SET}
    return copy


def _admit_pvc(node: str, a: _Request) -> None:
    if a.subresource != "status":
        raise a.forbidden("may only update PVC status")
    if a.operation != "UPDATE":
        raise a.forbidden(f'unexpected operation "{a.operation}"')
    old, new = _pvc_without_node_fields(a.old), _pvc_without_node_fields(a.obj)
    if old != new:
        changed = sorted(f"{top}.{key}" for top in ("metadata", "spec", "status")
                         for key in {*(old.get(top) or {}), *(new.get(top) or {})}
                         if (old.get(top) or {}).get(key) != (new.get(top) or {}).get(key))
        raise a.forbidden(f'node "{node}" is not allowed to update fields other than '
                          f'status.capacity and status.conditions: {", ".join(changed)}')


# --- service account tokens, leases, CSINodes -------------------------------------------

def _admit_service_account(node: str, a: _Request) -> None:
    if a.operation != "CREATE" or a.subresource != "token":
        return
    ref = _spec(a.obj).get("boundObjectRef") or {}
    if ref.get("apiVersion") != "v1" or ref.get("kind") != "Pod" or not ref.get("name"):
        raise a.forbidden("node requested token not bound to a pod")
    if not ref.get("uid"):
        raise a.forbidden("node requested token with a pod binding without a uid")
    pod = a.existing_pod(ref["name"])
    if ref["uid"] != _meta(pod).get("uid"):
        raise a.forbidden(f"the UID in the bound object reference ({ref['uid']}) does not "
                          "match the UID in record. The object might have been deleted and "
                          "then recreated")
    if _spec(pod).get("nodeName") != node:
        raise a.forbidden("node requested token bound to a pod scheduled on a different node")


def _admit_lease(node: str, a: _Request) -> None:
    if a.namespace != NODE_LEASE_NAMESPACE:
        raise a.forbidden(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system '
                          "namespace")
    name = _meta(a.obj).get("name") if a.operation == "CREATE" else a.name
    if name != node:
        raise a.forbidden("can only access node lease with the same name as the requesting "
                          "node")


def _admit_csinode(node: str, a: _Request) -> None:
    name = _meta(a.obj).get("name") if a.operation == "CREATE" else a.name
    if name != node:
        raise a.forbidden("can only access CSINode with the same name as the requesting node")


_HANDLERS: dict[tuple[str, str], Callable[[str, _Request], None]] = {
    ("", "pods"): _admit_pods,
    ("", "nodes"): _admit_node,
    ("", "persistentvolumeclaims"): _admit_pvc,
    ("", "serviceaccounts"): _admit_service_account,
    ("coordination.k8s.io", "leases"): _admit_lease,
    ("storage.k8s.io", "csinodes"): _admit_csinode,
}
