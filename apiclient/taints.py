"""Taints and tolerations, matched exactly as Kubernetes' ``Toleration.ToleratesTaint``.

Shared by the scheduler (which nodes a pod may land on) and the node lifecycle
controller (how long a pod may stay on an unreachable node). Only the NoSchedule and
NoExecute effects keep pods off a node; PreferNoSchedule is a scoring hint we ignore.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from apiclient.labels import UNREACHABLE_TAINT_KEY, UNSCHEDULABLE_TAINT_KEY

__all__ = [
    "BLOCKING_EFFECTS",
    "DEFAULT_NOT_READY_TOLERATION_SECONDS",
    "UNREACHABLE_TAINT_KEY",
    "UNSCHEDULABLE_TAINT_KEY",
    "tolerates",
    "toleration_seconds",
    "untolerated_taint",
]

BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
# What Kubernetes' DefaultTolerationSeconds admission adds to every pod (300 s); our
# apiserver does not add it yet, so a pod without a matching toleration gets this.
DEFAULT_NOT_READY_TOLERATION_SECONDS = 300

Obj = Mapping[str, Any]


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Whether one toleration matches one taint (key, operator, value, effect)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(taints: Iterable[Obj], tolerations: Iterable[Obj]) -> Obj | None:
    """The first NoSchedule/NoExecute taint no toleration matches, or None."""
    tolerations = list(tolerations)
    for taint in taints:
        if taint.get("effect") not in BLOCKING_EFFECTS:
            continue
        if not any(tolerates(toleration, taint) for toleration in tolerations):
            return taint
    return None


def toleration_seconds(tolerations: Iterable[Obj], taint: Obj, *,
                       default: int = DEFAULT_NOT_READY_TOLERATION_SECONDS) -> float | None:
    """How long a pod may stay on a node with this NoExecute taint.

    Like the taint manager's ``getMinTolerationTime``: the shortest ``tolerationSeconds``
    among the matching tolerations; None (forever) when none of them sets one; ``default``
    when no toleration matches at all.
    """
    matching = [t for t in tolerations if tolerates(t, taint)]
    if not matching:
        return float(default)
    bounds = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
    if not bounds:
        return None
    return float(max(0, min(bounds)))
