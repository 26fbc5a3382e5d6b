"""Change trackers: what informer handlers record between two syncs (kube-proxy style).

Handlers never touch rules. They call ``update(previous, current)``; the tracker keeps, per
object key, the oldest ``previous`` and the newest ``current`` seen since the last drain, and
forgets the entry when the two are equal again (an add followed by a delete, or an update
that changed nothing the proxy cares about). ``drain`` hands the net changes to the sync and
says which Services they touch, which is what a partial sync re-renders.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from proxy import servicemodel

Obj = Mapping[str, Any]
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


def object_key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def service_relevant(service: Obj) -> Hashable:
    """The parts of a Service that change rules (not resourceVersion, not managedFields)."""
    lb = (service.get("status") or {}).get("loadBalancer")
    return repr((service.get("spec"), lb))


def slice_relevant(endpoint_slice: Obj) -> Hashable:
    labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
    return repr(
        (
            labels.get(servicemodel.SERVICE_NAME_LABEL),
            endpoint_slice.get("addressType"),
            endpoint_slice.get("ports"),
            endpoint_slice.get("endpoints"),
        )
    )


def trigger_time(endpoint_slice: Obj) -> float | None:
    """Epoch seconds of the change that caused this slice update, if the controller said."""
    annotations = (endpoint_slice.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(TRIGGER_TIME_ANNOTATION)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class Drained:
    """Net changes since the last drain."""

    changes: dict[str, tuple[Obj | None, Obj | None]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)  # "ns/name" of every Service touched
    trigger_times: list[float] = field(default_factory=list)


class ChangeTracker:
    def __init__(
        self,
        *,
        relevant: Callable[[Obj], Hashable],
        services_of: Callable[[Obj], Iterable[str]],
        trigger_time_of: Callable[[Obj], float | None] = lambda _obj: None,
    ) -> None:
        self._relevant = relevant
        self._services_of = services_of
        self._trigger_time_of = trigger_time_of
        self._pending: dict[str, tuple[Obj | None, Obj | None]] = {}
        self._trigger_times: list[float] = []

    def _same(self, a: Obj | None, b: Obj | None) -> bool:
        if a is None or b is None:
            return a is b
        return self._relevant(a) == self._relevant(b)

    def update(self, previous: Obj | None, current: Obj | None) -> bool:
        """Record one informer event; True if a net change is now pending for that object."""
        obj = current if current is not None else previous
        if obj is None:
            return False
        key = object_key(obj)
        if key in self._pending:
            previous = self._pending[key][0]
        if self._same(previous, current):
            self._pending.pop(key, None)
            return False
        self._pending[key] = (previous, current)
        if current is not None and (when := self._trigger_time_of(current)) is not None:
            self._trigger_times.append(when)
        return True

    def pending(self) -> int:
        return len(self._pending)

    def drain(self) -> Drained:
        drained = Drained(changes=self._pending, trigger_times=self._trigger_times)
        for previous, current in self._pending.values():
            for obj in (previous, current):
                if obj is not None:
                    drained.services.update(self._services_of(obj))
        self._pending, self._trigger_times = {}, []
        return drained


def service_tracker() -> ChangeTracker:
    return ChangeTracker(relevant=service_relevant, services_of=lambda svc: [object_key(svc)])


def endpoint_slice_tracker() -> ChangeTracker:
    def services_of(endpoint_slice: Obj) -> list[str]:
        key = servicemodel.slice_service_key(endpoint_slice)
        return [key] if key else []

    return ChangeTracker(
        relevant=slice_relevant, services_of=services_of, trigger_time_of=trigger_time
    )
