"""ClusterRole aggregation: what an aggregated ClusterRole's rules should be.

Kubernetes' ``clusterroleaggregation`` controller keeps every ClusterRole with an
``aggregationRule`` (``admin``, ``edit``, ``view``, and users' own) holding the union of
the rules of the ClusterRoles its selectors match. The controller manager runs that loop
and the apiserver settles the bootstrap roles with the same functions at start, so they
live here, once, as plain functions of plain objects.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from apiclient.selectors import label_selector_from_spec

__all__ = ["aggregate_all", "aggregate_rules", "aggregation_update"]

Obj = Mapping[str, Any]
_RULE_FIELDS = ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _strings(rule: Obj, key: str) -> list[str]:
    values = rule.get(key)
    return list(values) if isinstance(values, list | tuple) else []


def _rule_key(rule: Obj) -> tuple[tuple[str, ...], ...]:
    # Semantic equality: a missing list, null and [] are the same.
    return tuple(tuple(_strings(rule, key)) for key in _RULE_FIELDS)


def aggregate_rules(cluster_role: Obj, all_cluster_roles: Iterable[Obj]) -> list[Obj]:
    """The rules the aggregation controller writes into an aggregated ClusterRole: for
    each selector in order, every other ClusterRole it matches (by name), their rules in
    order, each distinct rule once. A role without aggregationRule keeps its rules.
    Raises :class:`SelectorError` for a selector that is not valid (validation refuses
    such roles, so only a hand-written store can hold one)."""
    aggregation = cluster_role.get("aggregationRule")
    if not isinstance(aggregation, Mapping):
        return list(cluster_role.get("rules") or [])
    roles = sorted(all_cluster_roles, key=_name)
    rules: list[Obj] = []
    seen: set[tuple[tuple[str, ...], ...]] = set()
    for spec in aggregation.get("clusterRoleSelectors") or ():
        selector = label_selector_from_spec(spec)
        for role in roles:
            if _name(role) == _name(cluster_role):
                continue
            if not selector.matches((role.get("metadata") or {}).get("labels") or {}):
                continue
            for rule in role.get("rules") or ():
                if _rule_key(rule) not in seen:
                    seen.add(_rule_key(rule))
                    rules.append(copy.deepcopy(rule))
    return rules


def aggregation_update(cluster_role: Obj, all_cluster_roles: Iterable[Obj]) -> list[Obj] | None:
    """The new ``rules`` for an aggregated ClusterRole, or None when nothing changes."""
    if not isinstance(cluster_role.get("aggregationRule"), Mapping):
        return None
    wanted = aggregate_rules(cluster_role, all_cluster_roles)
    current = [rule for rule in cluster_role.get("rules") or ()]
    if [_rule_key(r) for r in wanted] == [_rule_key(r) for r in current]:
        return None
    return wanted


def aggregate_all(cluster_roles: Iterable[Obj]) -> dict[str, list[Obj]]:
    """The rules of every aggregated ClusterRole once aggregation has settled (``admin``
    holds ``edit``'s rules, which hold ``view``'s): name -> rules, for the roles whose
    rules change. The controller gets there by re-running on every change; this runs
    the same step until nothing changes (bounded, in case selectors form a cycle)."""
    roles = {_name(role): dict(role) for role in cluster_roles}
    changed: dict[str, list[Obj]] = {}
    for _ in range(len(roles) + 1):
        progress = False
        for name in sorted(roles):
            rules = aggregation_update(roles[name], roles.values())
            if rules is not None:
                roles[name] = {**roles[name], "rules": rules}
                changed[name] = rules
                progress = True
        if not progress:
            break
    return changed
