"""How the control loops read a pod's state: active, ready, available.

These are the predicates of Kubernetes' ``podutil`` / ``controller_utils``, in one place
so the ReplicaSet counts, the Deployment rollout and the EndpointSlice conditions agree
on what "ready" means: the pod's ``Ready`` condition is ``True``. "Available" adds
``minReadySeconds``: ready continuously for that long, measured from the condition's
``lastTransitionTime``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from apiclient.meta import parse_time

__all__ = ["is_active", "is_ready", "ready_since", "seconds_until_available"]


def is_active(pod: Mapping) -> bool:
    """Counts towards a ReplicaSet: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    deleted = (pod.get("metadata") or {}).get("deletionTimestamp")
    return phase not in ("Succeeded", "Failed") and not deleted


def _ready_condition(pod: Mapping) -> Mapping | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition
    return None


def is_ready(pod: Mapping) -> bool:
    condition = _ready_condition(pod)
    return condition is not None and condition.get("status") == "True"


def ready_since(pod: Mapping) -> datetime | None:
    """When the pod last became ready (None when not ready or the time is unknown)."""
    condition = _ready_condition(pod)
    if condition is None or condition.get("status") != "True":
        return None
    try:
        return parse_time(condition.get("lastTransitionTime") or "")
    except ValueError:
        return None


def seconds_until_available(pod: Mapping, min_ready_seconds: int, now: datetime) -> float | None:
    """0 when available, the seconds left when ready but not yet long enough, None when
    not ready."""
    if not is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = ready_since(pod)
    if since is None:
        return float(min_ready_seconds)
    return max(0.0, min_ready_seconds - (now - since).total_seconds())

