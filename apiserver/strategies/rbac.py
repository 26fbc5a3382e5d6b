"""Roles, ClusterRoles and their bindings: validation, defaulting and escalation prevention.

Kubernetes' ``pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}``: the
strategies validate with ``pkg/apis/rbac/validation`` (422 with field paths; unknown
verbs are fine, a bad ``apiGroups`` type, a missing or changed ``roleRef`` are not),
bindings get their ``apiGroup`` defaults, and the ``policybased`` storage wrappers refuse
a write that grants more than its author holds (403) unless they are in
``system:masters`` or hold ``escalate`` (roles) / ``bind`` (bindings) on the role. The
checks themselves are :mod:`apiserver.auth.rbac`'s; this module only applies them.

A PUT to a missing object creates it (kube's RBAC strategies allow create on update, which
``kubectl auth reconcile`` relies on).

Invariants:
- An update changing only what the garbage collector writes (ownerReferences,
  finalizers) is never refused (kube ``IsOnlyMutatingGCFields``), so dependents can be
  cleaned up by a collector that could not have created them.
- The server's own writes (no request context: the bootstrap policy) are not checked.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from apiserver import status
from apiserver.auth.rbac import (
    RBAC_GROUP,
    RoleRefError,
    check_binding_write,
    check_role_write,
    default_binding,
    has_aggregation_rule,
    validate_cluster_role,
    validate_cluster_role_binding,
    validate_role,
    validate_role_binding,
)
from apiserver.strategies.base import Cause, Obj, Strategy

if TYPE_CHECKING:
    from apiserver.auth.context import RequestContext

_GC_FIELDS = ("ownerReferences", "finalizers", "selfLink", "managedFields")


def only_gc_fields_changed(new: Obj, old: Obj | None) -> bool:
    """kube ``IsOnlyMutatingGCFields``: ``new`` equals ``old`` but for GC metadata."""
    if old is None:
        return False
    copied = copy.deepcopy(new)
    meta, old_meta = copied.setdefault("metadata", {}), old.get("metadata") or {}
    for key in _GC_FIELDS:
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    return copied == old


def _forbidden(resource: str, name: str, message: str) -> status.StatusError:
    details = {"name": name, "group": RBAC_GROUP, "kind": resource}
    return status.StatusError(403, "Forbidden", message,
                              details={k: v for k, v in details.items() if v})


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _default_binding(obj: Obj) -> None:
    """v1 defaulting, when the subjects are a list (validation reports them otherwise)."""
    if isinstance(obj.get("subjects"), list | None):
        default_binding(obj)


class RoleStrategy(Strategy):
    """Role (``cluster=False``) or ClusterRole."""

    validates_types = True

    def __init__(self, *, cluster: bool) -> None:
        super().__init__(validate=validate_cluster_role if cluster else validate_role,
                         create_on_update=True)
        self.cluster = cluster
        self.resource = "clusterroles" if cluster else "roles"

    def check_write(self, ctx: RequestContext | None, new: Obj, old: Obj | None) -> None:
        if ctx is None or only_gc_fields_changed(new, old):
            return
        aggregated = self.cluster and (has_aggregation_rule(new) or has_aggregation_rule(old))
        rules = [rule for rule in new.get("rules") or () if isinstance(rule, dict)]
        message = check_role_write(ctx.authorizer, ctx.rules, ctx.user,
                                   resource=self.resource,
                                   namespace=_meta(new).get("namespace") or "",
                                   name=_meta(new).get("name") or "", rules=rules,
                                   aggregated=aggregated)
        if message is not None:
            raise _forbidden(self.resource, _meta(new).get("name") or "", message)


class BindingStrategy(Strategy):
    """RoleBinding (``cluster=False``) or ClusterRoleBinding."""

    validates_types = True

    def __init__(self, *, cluster: bool) -> None:
        super().__init__(default=_default_binding, create_on_update=True)
        self.cluster = cluster
        self.resource = "clusterrolebindings" if cluster else "rolebindings"

    def validate(self, new: Obj, old: Obj | None) -> list[Cause]:
        validate = validate_cluster_role_binding if self.cluster else validate_role_binding
        return validate(new, old)

    def check_write(self, ctx: RequestContext | None, new: Obj, old: Obj | None) -> None:
        if ctx is None or only_gc_fields_changed(new, old):
            return
        name = _meta(new).get("name") or ""
        try:
            message = check_binding_write(ctx.authorizer, ctx.rules, ctx.user,
                                          resource=self.resource,
                                          namespace=_meta(new).get("namespace") or "",
                                          name=name, role_ref=new.get("roleRef") or {})
        except RoleRefError as error:
            raise status.not_found(RBAC_GROUP, error.plural, error.name) from None
        if message is not None:
            raise _forbidden(self.resource, name, message)


ROLE = RoleStrategy(cluster=False)
CLUSTER_ROLE = RoleStrategy(cluster=True)
ROLE_BINDING = BindingStrategy(cluster=False)
CLUSTER_ROLE_BINDING = BindingStrategy(cluster=True)
