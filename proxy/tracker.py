"""Change trackers: what informer handlers record between two syncs (kube-proxy style).

Handlers never touch rules. They call ``update(previous, current)`` with the proxy's records
(proxy/servicemodel.py); the tracker keeps, per key, the oldest ``previous`` and the newest
``current`` seen since the last drain, and forgets the entry when the two are equal again
(an add followed by a delete, or an update that changed nothing the proxy programs: records
compare equal then). ``drain`` hands the net changes to the sync and says which Services
they touch, which is what a partial sync re-renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from proxy.servicemodel import ServiceInfo, SliceInfo

Record = TypeVar("Record", ServiceInfo, SliceInfo)


@dataclass
class Drained(Generic[Record]):
    """Net changes since the last drain."""

    changes: dict[str, tuple[Record | None, Record | None]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)  # "ns/name" of every Service touched
    trigger_times: list[float] = field(default_factory=list)


class ChangeTracker(Generic[Record]):
    def __init__(
        self,
        *,
        services_of: Callable[[Record], Iterable[str]],
        trigger_time_of: Callable[[Record], float | None] = lambda _record: None,
    ) -> None:
        self._services_of = services_of
        self._trigger_time_of = trigger_time_of
        self._pending: dict[str, tuple[Record | None, Record | None]] = {}
        self._trigger_times: list[float] = []

    def update(self, previous: Record | None, current: Record | None) -> bool:
        """Record one informer event; True if a net change is now pending for that record."""
        record = current if current is not None else previous
        if record is None:
            return False
        key = record.key
        if key in self._pending:
            previous = self._pending[key][0]
        if previous == current:
            self._pending.pop(key, None)
            return False
        self._pending[key] = (previous, current)
        if current is not None and (when := self._trigger_time_of(current)) is not None:
            self._trigger_times.append(when)
        return True

    def pending(self) -> int:
        return len(self._pending)

    def drain(self) -> Drained[Record]:
        drained = Drained(changes=self._pending, trigger_times=self._trigger_times)
        for previous, current in self._pending.values():
            for record in (previous, current):
                if record is not None:
                    drained.services.update(self._services_of(record))
        self._pending, self._trigger_times = {}, []
        return drained


def service_tracker() -> ChangeTracker[ServiceInfo]:
    return ChangeTracker(services_of=lambda service: (service.key,))


def endpoint_slice_tracker() -> ChangeTracker[SliceInfo]:
    def services_of(endpoint_slice: SliceInfo) -> tuple[str, ...]:
        return (endpoint_slice.service_key,) if endpoint_slice.service_key else ()

    return ChangeTracker(
        services_of=services_of, trigger_time_of=lambda endpoint_slice: endpoint_slice.trigger_time
    )
