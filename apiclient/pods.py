"""How every component reads a pod's state: finished, active, ready, available, QoS class.

These are the predicates of Kubernetes' ``podutil`` / ``controller_utils`` and
``qos.GetPodQOS``, in one place so that the apiserver, the scheduler, the controllers and
the kubelet loop agree: "ready" means the pod's ``Ready`` condition is ``True``;
"available" adds ``minReadySeconds``, ready continuously for that long, measured from the
condition's ``lastTransitionTime``; a pod in phase ``Succeeded`` or ``Failed`` is finished
and never runs again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from apiclient.meta import parse_time
from apiclient.quantity import parse_quantity

__all__ = [
    "TERMINAL_PHASES",
    "is_active",
    "is_ready",
    "is_terminal",
    "qos_class",
    "ready_condition",
    "ready_since",
    "seconds_until_available",
]

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
_QOS_RESOURCES = ("cpu", "memory")


def is_terminal(pod: Mapping) -> bool:
    """Finished for good: phase ``Succeeded`` or ``Failed``."""
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def is_active(pod: Mapping) -> bool:
    """Counts towards a ReplicaSet: not finished and not being deleted."""
    deleted = (pod.get("metadata") or {}).get("deletionTimestamp")
    return not is_terminal(pod) and not deleted


def ready_condition(obj: Mapping) -> Mapping | None:
    """The ``Ready`` condition of a pod or a node, if it has one."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition
    return None


def is_ready(obj: Mapping) -> bool:
    """The ``Ready`` condition of a pod or a node is ``True``."""
    condition = ready_condition(obj)
    return condition is not None and condition.get("status") == "True"


def ready_since(pod: Mapping) -> datetime | None:
    """When the pod last became ready (None when not ready or the time is unknown)."""
    condition = ready_condition(pod)
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


def _nonzero(values: Mapping[str, Any] | None) -> dict[str, Decimal]:
    """CPU and memory quantities that are set and not zero (unparsable ones count as unset:
    validation reports them, the QoS class must not fail on them)."""
    found: dict[str, Decimal] = {}
    for name in _QOS_RESOURCES:
        raw = (values or {}).get(name)
        if raw is None:
            continue
        try:
            value = parse_quantity(raw)
        except ValueError:
            continue
        if value != 0:
            found[name] = value
    return found


def qos_class(spec: Mapping[str, Any]) -> str:
    """``Guaranteed`` / ``Burstable`` / ``BestEffort`` of a pod spec, as ``qos.GetPodQOS``.

    BestEffort: no container (init or app) requests or limits CPU or memory. Guaranteed:
    every container limits both, and its requests (defaulting to the limits) equal them,
    compared as quantities ("1" CPU equals "1000m"). Anything else is Burstable.
    """
    any_set = False
    guaranteed = True
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = (container or {}).get("resources") or {}
        limits = _nonzero(resources.get("limits"))
        requests = {**limits, **_nonzero(resources.get("requests"))}
        if requests or limits:
            any_set = True
        if set(limits) != set(_QOS_RESOURCES) or requests != limits:
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
