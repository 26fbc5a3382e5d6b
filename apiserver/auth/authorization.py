"""The apiserver's authorizer chain, and the in-memory state it decides from.

Why: kube-apiserver runs ``--authorization-mode=Node,RBAC`` behind a ``system:masters``
short cut; this module composes the same chain from the pure parts
(:mod:`.authorizer`, :mod:`.node`, :mod:`.rbac`) and keeps their state current:

- :class:`Authorization` owns one :class:`~.rbac.RbacIndex` (Roles, ClusterRoles and
  bindings) and one :class:`~.node.NodeGraph` (pods and what they reference), and the
  union ``[system:masters, Node, RBAC]`` over them; ``rules_for`` is the union rule
  resolver behind SelfSubjectRulesReview.
- :meth:`Authorization.feed` registers them as synchronous listeners of the watch cache
  (the four RBAC prefixes and the pod prefix), so the index changes in the very step
  the cache does: whatever a LIST would show is what authorization sees.
- Decisions for users that are not nodes are remembered until the next RBAC change
  (any Role, ClusterRole or binding event clears them): the same user asking the same
  thing again costs one dictionary read instead of a rule walk. A node's decisions
  depend on the pod graph, which changes with every pod, so they are never remembered.

Invariants:
- Everything runs on the event loop (the index and the graph are not thread-safe).
- A listener never raises into the cache: an undecodable object is skipped and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from apiserver.auth.authn import UserInfo
from apiserver.auth.authorizer import (
    PRIVILEGED_GROUP,
    Attributes,
    PrivilegedGroupAuthorizer,
    Result,
    UnionAuthorizer,
    aggregate_error_text,
)
from apiserver.auth.context import RequestContext
from apiserver.auth.node import NODE_USER_PREFIX, NodeAuthorizer, NodeGraph, node_identity
from apiserver.auth.rbac import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    RBAC_GROUP,
    ROLE,
    ROLE_BINDING,
    RBACAuthorizer,
    RbacIndex,
    RulesFor,
)
from apiserver.storage.watchcache import CachedObject, WatchCache

log = logging.getLogger(__name__)

Obj = dict[str, Any]

RBAC_KINDS_BY_PLURAL = {"roles": ROLE, "clusterroles": CLUSTER_ROLE,
                        "rolebindings": ROLE_BINDING,
                        "clusterrolebindings": CLUSTER_ROLE_BINDING}
NODE_RULES_UNSUPPORTED = "node authorizer does not support user rule resolution"
DECISION_CACHE_SIZE = 50_000  # remembered decisions; all are dropped when it is full


def rbac_prefix(plural: str) -> str:
    """The storage prefix of an RBAC resource (the registry's key layout)."""
    return f"/registry/{RBAC_GROUP}/{plural}/"


POD_PREFIX = "/registry/core/pods/"


class _Feed:
    """A watch-cache listener applying one resource's changes to an index.

    ``upsert(obj)`` / ``remove(obj)`` act on decoded objects; on reset, what this feed
    put in before is removed first, so a relist of one resource leaves the others alone.
    ``changed()`` is called after every change applied.
    """

    def __init__(self, upsert: Callable[[Obj], None], remove: Callable[[Obj], None], *,
                 changed: Callable[[], None] = lambda: None) -> None:
        self._upsert = upsert
        self._remove = remove
        self._on_change = changed
        self._known: dict[str, Obj] = {}  # cache key -> minimal object to remove it by

    def reset(self, objects: list[CachedObject]) -> None:
        for stub in self._known.values():
            self._remove(stub)
        self._known.clear()
        for cached in objects:
            self.changed("ADDED", cached, None)
        self._on_change()

    def changed(self, type: str, obj: CachedObject, prev: CachedObject | None) -> None:
        self._on_change()
        if type == "DELETED":
            stub = self._known.pop(obj.key, None)
            if stub is not None:
                self._remove(stub)
            return
        try:
            decoded = orjson.loads(obj.raw)
        except orjson.JSONDecodeError:
            log.warning("authorization: skipping the undecodable object %s", obj.key)
            return
        self._upsert(decoded)
        self._known[obj.key] = {"metadata": {"namespace": obj.namespace, "name": obj.name}}


class Authorization:
    """``[system:masters, Node, RBAC]`` over state fed from the watch cache."""

    def __init__(self, *, node_authorize_with_selectors: bool = False) -> None:
        self.index = RbacIndex()
        self.rbac = RBACAuthorizer(self.index)
        self.graph = NodeGraph()
        self.node = NodeAuthorizer(self.graph,
                                   authorize_with_selectors=node_authorize_with_selectors)
        self.chain = UnionAuthorizer(PrivilegedGroupAuthorizer(PRIVILEGED_GROUP), self.node,
                                     self.rbac)
        self._decisions: dict[Attributes, Result] = {}

    def authorize(self, attrs: Attributes) -> Result:
        if attrs.user.name.startswith(NODE_USER_PREFIX):
            return self.chain.authorize(attrs)  # depends on the pod graph: never remembered
        decision = self._decisions.get(attrs)
        if decision is None:
            decision = self.chain.authorize(attrs)
            if len(self._decisions) >= DECISION_CACHE_SIZE:
                self._decisions.clear()
            self._decisions[attrs] = decision
        return decision

    def forget_decisions(self) -> None:
        """Called on every RBAC change: remembered decisions may no longer hold."""
        self._decisions.clear()

    def context(self, user: UserInfo) -> RequestContext:
        return RequestContext(user=user, authorizer=self.chain, rules=self.rbac)

    def rules_for(self, user: UserInfo, namespace: str) -> RulesFor:
        """kube's union rule resolver over ``[Node, RBAC]``: the Node authorizer cannot
        enumerate a node's rules (so the answer is incomplete, with kube's error)."""
        rbac = self.rbac.rules_for(user, namespace)
        errors = [rbac.evaluation_error] if rbac.evaluation_error else []
        incomplete = rbac.incomplete
        if node_identity(user)[1]:
            errors.insert(0, NODE_RULES_UNSUPPORTED)
            incomplete = True
        return RulesFor(rbac.resource_rules, rbac.non_resource_rules, incomplete,
                        aggregate_error_text(errors) if errors else "")

    def feed(self, cache: WatchCache) -> None:
        """Keep the index and the graph in step with the watch cache."""
        for plural, kind in RBAC_KINDS_BY_PLURAL.items():
            cache.listen(rbac_prefix(plural), _Feed(
                lambda obj, kind=kind: self.index.upsert(obj, kind=kind),
                lambda obj, kind=kind: self.index.delete(obj, kind=kind),
                changed=self.forget_decisions))
        cache.listen(POD_PREFIX, _Feed(self.graph.upsert_pod, self.graph.delete_pod))
