"""Pod lifecycle event generator: notice container changes and wake the right pod worker.

Like kubelet's generic PLEG, the truth comes from a periodic relist of the runtime (cheap
list, no inspect); Docker's event stream only makes the next relist happen at once. The
comparison is the pure function ``diff`` so every transition is unit-tested. Health is
"the last successful relist is recent": a stale relist means the runtime is not answering
and the agent reports itself unhealthy instead of acting on an outdated picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from apiclient.backoff import Backoff
from nodeagent.runtime.interface import (
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    ContainerSummary,
)

log = logging.getLogger(__name__)

# pod uid -> container id -> state; sandboxes are included (their death matters too).
PodSnapshot = Mapping[str, Mapping[str, ContainerState]]


class EventType(enum.StrEnum):
    STARTED = "ContainerStarted"
    DIED = "ContainerDied"
    REMOVED = "ContainerRemoved"
    CHANGED = "ContainerChanged"


@dataclass(frozen=True)
class PodLifecycleEvent:
    pod_uid: str
    container_id: str
    type: EventType


def snapshot(containers: Iterable[ContainerSummary]) -> dict[str, dict[str, ContainerState]]:
    pods: dict[str, dict[str, ContainerState]] = {}
    for container in containers:
        if container.pod_uid:
            pods.setdefault(container.pod_uid, {})[container.id] = container.state
    return pods


def _events_for(
    pod_uid: str, container_id: str, old: ContainerState | None, new: ContainerState | None
) -> list[PodLifecycleEvent]:
    if old == new:
        return []
    if new is None:
        if old is ContainerState.EXITED:
            return [PodLifecycleEvent(pod_uid, container_id, EventType.REMOVED)]
        return [
            PodLifecycleEvent(pod_uid, container_id, EventType.DIED),
            PodLifecycleEvent(pod_uid, container_id, EventType.REMOVED),
        ]
    kind = {
        ContainerState.RUNNING: EventType.STARTED,
        ContainerState.EXITED: EventType.DIED,
    }.get(new, EventType.CHANGED)
    return [PodLifecycleEvent(pod_uid, container_id, kind)]


def diff(old: PodSnapshot, new: PodSnapshot) -> list[PodLifecycleEvent]:
    """Events turning ``old`` into ``new``; pure, ordered by pod then container id."""
    events: list[PodLifecycleEvent] = []
    for pod_uid in sorted(set(old) | set(new)):
        before = old.get(pod_uid, {})
        after = new.get(pod_uid, {})
        for container_id in sorted(set(before) | set(after)):
            events += _events_for(
                pod_uid, container_id, before.get(container_id), after.get(container_id)
            )
    return events


class Pleg:
    """Relists every ``period`` seconds (sooner on a Docker event) and reports changed pods."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        on_pod_changed: Callable[[str], None],
        *,
        period: float = 1.0,
        observe_relist: Callable[[float, list[ContainerSummary]], None] | None = None,
    ) -> None:
        self._runtime = runtime
        self._on_pod_changed = on_pod_changed
        self._period = period
        self._observe_relist = observe_relist
        self._state: dict[str, dict[str, ContainerState]] = {}
        self._poke = asyncio.Event()
        self.last_relist: float | None = None  # monotonic time of the last good relist

    def healthy(self, *, threshold: float = 180.0, now: float | None = None) -> bool:
        if self.last_relist is None:
            return False
        return (now if now is not None else time.monotonic()) - self.last_relist < threshold

    async def relist(self) -> list[PodLifecycleEvent]:
        started = time.monotonic()
        containers = await self._runtime.list_containers()
        current = snapshot(containers)
        events = diff(self._state, current)
        self._state = current
        self.last_relist = time.monotonic()
        if self._observe_relist is not None:
            self._observe_relist(self.last_relist - started, containers)
        for pod_uid in dict.fromkeys(event.pod_uid for event in events):
            self._on_pod_changed(pod_uid)
        return events

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch_events())
        try:
            while True:
                try:
                    await self.relist()
                except ContainerRuntimeError as err:
                    log.warning("PLEG relist failed: %s", err)
                except Exception:  # keep relisting; a stale relist shows up as unhealthy
                    log.exception("PLEG relist failed unexpectedly")
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._period):
                        await self._poke.wait()
                self._poke.clear()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_events(self) -> None:
        """Follow the runtime's event stream; reconnect after 0.2 s doubling to 7 s."""
        backoff = Backoff(initial=0.2, maximum=7.0)
        while True:
            try:
                async for _event in self._runtime.events():
                    backoff.reset()
                    self._poke.set()
            except ContainerRuntimeError as err:
                delay = backoff.next_delay()
                log.info("runtime event stream: %s; reconnecting in %.1fs", err, delay)
                await asyncio.sleep(delay)
            else:
                await backoff.sleep()
