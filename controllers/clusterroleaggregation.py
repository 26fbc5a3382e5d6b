"""The ClusterRole aggregation controller: aggregated ClusterRoles hold their parts' rules.

kube's ``pkg/controller/clusterroleaggregation``: a ClusterRole with an
``aggregationRule`` (``admin``, ``edit``, ``view``, or a user's own) holds the union of
the rules of every ClusterRole its label selectors match, so that a CRD installer can
extend ``view`` by labelling its own role ``rbac.authorization.k8s.io/aggregate-to-view``.
The rule union itself is :func:`apiclient.rbac.aggregation_update`, shared with the
apiserver, which settles the bootstrap roles the same way at start.

Invariants:
- Any ClusterRole change enqueues every aggregated ClusterRole (a change to one part can
  change any of them); a key's reconcile re-derives the rules from the informer's store,
  so chains (``admin`` ⊇ ``edit`` ⊇ ``view``) settle over successive reconciles.
- The write is a PUT of the role as last seen with new rules: a concurrent change makes
  it conflict and be retried, never overwritten. The controller's identity needs
  ``escalate`` on clusterroles (kube's role for it has it), since it writes rules it
  does not hold.
- A role with an invalid selector (only a hand-edited store can hold one) is logged and
  left alone instead of retried forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from apiclient.client import ApiClient
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import NotFoundError
from apiclient.rbac import aggregation_update
from apiclient.resources import CLUSTERROLES
from apiclient.selectors import SelectorError

__all__ = ["ClusterRoleAggregationController", "aggregated_role_names"]

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]


def aggregated_role_names(roles: Iterable[Obj]) -> list[str]:
    """The names of the ClusterRoles whose rules are aggregated."""
    return sorted(str((role.get("metadata") or {}).get("name") or "") for role in roles
                  if isinstance(role.get("aggregationRule"), Mapping))


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"
    workers = 1  # one role at a time: each sees the rules the previous one wrote

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self.roles = informers.informer(CLUSTERROLES)
        self.roles.add_handler(on_add=self._changed,
                               on_update=lambda _old, new: self._changed(new),
                               on_delete=self._changed)

    def _changed(self, _role: Obj) -> None:
        for name in aggregated_role_names(self.roles.store.list()):
            self.enqueue(name)

    async def reconcile(self, key: str) -> None:
        role = self.roles.store.get(key)
        if role is None:
            return
        try:
            rules = aggregation_update(role, self.roles.store.list())
        except SelectorError as error:
            log.warning("ClusterRole %s: cannot aggregate, invalid selector: %s", key, error)
            return
        if rules is None:
            return
        try:
            await self.client.replace(CLUSTERROLES, {**role, "rules": rules})
        except NotFoundError:
            return
        log.info("ClusterRole %s: aggregated %d rules", key, len(rules))
