"""The watch cache: every LIST and WATCH the apiserver serves comes from this memory.

Why: a storage read per LIST and a storage watch per client do not scale to thousands of
watchers (every kubelet, proxy and controller watches). Like the Kubernetes cacher, one
storage watch over the common prefix feeds an in-memory copy of every object plus a
bounded window of recent events; clients list from the copy and watch from the window.

Invariants:
- Each storage value is decoded once: metadata.resourceVersion is set to the event's
  revision and the object is re-encoded once into ``CachedObject.raw``. Watchers and
  lists share those bytes; no per-watcher JSON work. Only raw bytes, labels and indexed
  fields are kept per object (no decoded dicts), which keeps memory small.
- Everything runs on the event loop: applying an event, appending it to the window and
  offering it to watchers happen in one step, and ``watch()`` takes its snapshot or window
  replay and registers in one synchronous call, so a watcher never misses or repeats an
  event.
- ``_Resource.window_start``: every event of that resource with revision >= it is in the
  window. A watch from N can be answered when N >= window_start - 1 (or N >= the cache
  revision); otherwise :class:`TooOldResourceVersionError` (the client relists).
- The dispatcher never blocks: a watcher whose queue is full is closed (its iterator ends
  and the client resumes from ``Watcher.revision`` or relists).
- When the storage watch reports compaction (the cache fell behind), the cache relists and
  closes every watcher, because their event streams cannot be continued exactly.
- A :class:`ChangeListener` registered on a resource prefix (the authorizers' indexes) is
  called synchronously in the step that applies a change, and reset with every object
  after each (re)list: whatever it derives is never behind what lists and watches serve.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import heapq
import itertools
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from apiclient.backoff import Backoff
from apiserver.storage.interface import CompactedError, Storage, StorageError, StorageEvent
from apiserver.storage.sqlite import prefix_end

log = logging.getLogger(__name__)

Predicate = Callable[["CachedObject"], bool]
IndexFields = Callable[[str, dict], dict[str, str]]

_RETRY_MIN_SECONDS = 0.1
_RETRY_MAX_SECONDS = 5.0


@dataclass(slots=True)
class CachedObject:
    """One object as the cache keeps it: encoded once, plus what selectors need."""

    key: str
    resource_version: int
    raw: bytes  # the object's JSON with metadata.resourceVersion = str(resource_version)
    namespace: str  # "" for cluster-scoped
    name: str
    labels: dict[str, str]
    fields: dict[str, str]  # field-selector values, from the index_fields callback


@dataclass(slots=True)
class CacheEvent:
    """One event as a watcher receives it (after selector transitions)."""

    type: str  # "ADDED" | "MODIFIED" | "DELETED"
    obj: CachedObject  # for DELETED: the last state, resource_version = the delete's revision


class TooOldResourceVersionError(Exception):
    """The requested resourceVersion is older than the event window can answer (HTTP 410)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class ChangeListener(Protocol):
    """Something kept in step with one resource of the cache (see :meth:`WatchCache.listen`)."""

    def reset(self, objects: list[CachedObject]) -> None:
        """Forget everything: these are all the objects now (after a list or relist)."""

    def changed(self, type: str, obj: CachedObject, prev: CachedObject | None) -> None:
        """One applied change: ``ADDED``, ``MODIFIED`` or ``DELETED`` (``obj`` is then the
        last state); ``prev`` is the state it replaced."""


class CacheNotReadyError(Exception):
    """The cache has not loaded its initial list yet; await ``wait_until_ready()``."""


@dataclass(slots=True)
class _Change:
    """One applied change with the state it replaced, kept for selector transitions."""

    type: str
    obj: CachedObject
    prev: CachedObject | None


@dataclass(slots=True)
class _Resource:
    prefix: str
    window: collections.deque[_Change]
    objects: dict[str, CachedObject] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # sorted keys of ``objects``
    window_start: int = 1
    watchers: set[Watcher] = field(default_factory=set)

    def record(self, change: _Change) -> None:
        if self.window.maxlen is not None and len(self.window) == self.window.maxlen:
            self.window_start = self.window[0].obj.resource_version + 1
        self.window.append(change)

    def key_range(self, prefix: str) -> tuple[int, int]:
        """Index bounds in ``keys`` of the keys starting with ``prefix``."""
        low = bisect.bisect_left(self.keys, prefix)
        end = prefix_end(prefix)
        high = len(self.keys) if end is None else bisect.bisect_left(self.keys, end, low)
        return low, high


def _common_prefix(strings: list[str]) -> str:
    """The longest string every one of ``strings`` starts with (the storage watch prefix)."""
    first, last = min(strings), max(strings)
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    return first[:length]


def event_for_watcher(change: _Change, predicate: Predicate | None) -> CacheEvent | None:
    """What a watcher with ``predicate`` sees of ``change`` (Kubernetes selector semantics).

    A MODIFIED that leaves the selection becomes DELETED (with the new state); one that
    enters it becomes ADDED; one that is outside before and after is not sent.
    """
    if predicate is None:
        return CacheEvent(change.type, change.obj)
    if change.type != "MODIFIED":
        return CacheEvent(change.type, change.obj) if predicate(change.obj) else None
    matches_now = predicate(change.obj)
    matched_before = change.prev is not None and predicate(change.prev)
    if matches_now:
        return CacheEvent("MODIFIED" if matched_before else "ADDED", change.obj)
    return CacheEvent("DELETED", change.obj) if matched_before else None


class Watcher:
    """An async iterator of :class:`CacheEvent` for one client watch."""

    def __init__(self, *, prefix: str, predicate: Predicate | None, revision: int,
                 initial: collections.deque[CacheEvent], queue_size: int,
                 unregister: Callable[[Watcher], None]) -> None:
        self.prefix = prefix
        self.revision = revision  # the last revision sent, or where the watch started
        self._after = revision  # live events at or below it were sent already or not asked for
        self.closed = False
        self._predicate = predicate
        self._initial = initial  # not bounded by queue_size: it is the snapshot/replay
        self._queue: collections.deque[CacheEvent] = collections.deque()
        self._queue_size = queue_size
        self._wake = asyncio.Event()
        self._unregister = unregister

    def offer(self, change: _Change) -> None:
        """Called by the dispatcher; never blocks. A full queue closes the watcher."""
        if self.closed or change.obj.resource_version <= self._after \
                or not change.obj.key.startswith(self.prefix):
            return
        event = event_for_watcher(change, self._predicate)
        if event is None:
            return
        if len(self._queue) >= self._queue_size:
            log.info("closing a watch on %s: %d events queued, the client is too slow",
                     self.prefix, len(self._queue))
            self.close()
            return
        self._queue.append(event)
        self._wake.set()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._initial.clear()
        self._queue.clear()
        self._unregister(self)
        self._wake.set()

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> CacheEvent:
        while True:
            if self._initial:
                event = self._initial.popleft()
            elif self._queue:
                event = self._queue.popleft()
            elif self.closed:
                raise StopAsyncIteration
            else:
                self._wake.clear()
                await self._wake.wait()
                continue
            self.revision = max(self.revision, event.obj.resource_version)
            return event


class WatchCache:
    """In-memory objects and recent events for ``prefixes``, fed by one storage watch."""

    def __init__(self, storage: Storage, *, prefixes: Iterable[str],
                 index_fields: IndexFields, window: int = 10000,
                 watcher_queue_size: int = 10000) -> None:
        self._storage = storage
        self._index_fields = index_fields
        self._window_size = window
        self._watcher_queue_size = watcher_queue_size
        # Longest first so that a key is attributed to its most specific resource prefix.
        self._prefixes = sorted(set(prefixes), key=len, reverse=True)
        if not self._prefixes:
            raise ValueError("a watch cache needs at least one resource prefix")
        self._root = _common_prefix(self._prefixes)
        self._resources = {prefix: self._new_resource(prefix, 1) for prefix in self._prefixes}
        self._revision = 0
        self._ready = asyncio.Event()
        self._revision_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_ids = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._listeners: dict[str, list[ChangeListener]] = {}

    def _new_resource(self, prefix: str, window_start: int) -> _Resource:
        return _Resource(prefix, collections.deque(maxlen=self._window_size),
                         window_start=window_start)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Load the initial list, then follow the storage watch in a background task."""
        await self._relist()
        self._task = asyncio.create_task(self._follow(), name="keel-watchcache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close_all_watchers()

    async def wait_until_ready(self) -> None:
        await self._ready.wait()

    def listen(self, prefix: str, listener: ChangeListener) -> None:
        """Keep ``listener`` in step with the resource at ``prefix`` (one of the cache's
        prefixes): reset now when the cache is loaded, then called on every change."""
        if prefix not in self._resources:
            raise ValueError(f"{prefix!r} is not a resource prefix of this watch cache")
        self._listeners.setdefault(prefix, []).append(listener)
        if self._ready.is_set():
            self._reset_listener(listener, self._resources[prefix])

    @staticmethod
    def _reset_listener(listener: ChangeListener, resource: _Resource) -> None:
        try:
            listener.reset([resource.objects[key] for key in resource.keys])
        except Exception:
            log.exception("a watch cache listener on %s failed to reset", resource.prefix)

    def _notify(self, prefix: str, change: _Change) -> None:
        for listener in self._listeners.get(prefix, ()):
            try:
                listener.changed(change.type, change.obj, change.prev)
            except Exception:
                log.exception("a watch cache listener on %s failed on %s", prefix,
                              change.obj.key)

    @property
    def revision(self) -> int:
        """The newest revision applied to the cache."""
        return self._revision

    async def wait_for_revision(self, revision: int, *, timeout: float = 3.0) -> None:
        """Return once the cache has applied ``revision``; raise TimeoutError otherwise."""
        if self._revision >= revision:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._revision_waiters, (revision, next(self._waiter_ids), future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"the watch cache is at revision {self._revision}, "
                f"still waiting for {revision} after {timeout}s") from None

    # ----------------------------------------------------------------- feeding

    async def _follow(self) -> None:
        """The storage watch loop: survive errors, relist when history was compacted."""
        retry = Backoff(initial=_RETRY_MIN_SECONDS, maximum=_RETRY_MAX_SECONDS)
        needs_relist = False
        while True:
            try:
                if needs_relist:
                    await self._relist()
                    needs_relist = False
                async for event in self._storage.watch(from_revision=self._revision + 1,
                                                       prefix=self._root):
                    self._apply(event)
                    retry.reset()
                log.info("the storage watch ended (storage closed); the watch cache stops")
                self._close_all_watchers()
                return
            except CompactedError as error:
                log.warning("the watch cache fell behind (%s); relisting", error)
                needs_relist = True
                continue
            except StorageError as error:
                delay = retry.next_delay()
                log.warning("the watch cache's storage watch failed: %s; retrying in %.1fs",
                            error, delay)
            except Exception:
                delay = retry.next_delay()
                log.exception("the watch cache failed unexpectedly; relisting in %.1fs", delay)
                needs_relist = True
            await asyncio.sleep(delay)

    async def _relist(self) -> None:
        result = await self._storage.range(self._root)
        if self._ready.is_set():
            self._close_all_watchers()  # their streams cannot be continued exactly
        resources = {prefix: self._new_resource(prefix, result.revision + 1)
                     for prefix in self._prefixes}
        for kv in result.kvs:
            prefix = self._prefix_of(kv.key)
            if prefix is None:
                continue
            obj = self._decode(prefix, kv.key, kv.value, kv.mod_revision)
            if obj is not None:
                resources[prefix].objects[kv.key] = obj
        for resource in resources.values():
            resource.keys = sorted(resource.objects)
        self._resources = resources
        for prefix, listeners in self._listeners.items():
            for listener in listeners:
                self._reset_listener(listener, resources[prefix])
        self._advance(result.revision)
        self._ready.set()

    def _prefix_of(self, key: str) -> str | None:
        for prefix in self._prefixes:
            if key.startswith(prefix):
                return prefix
        return None

    def _decode(self, prefix: str, key: str, value: bytes, revision: int
                ) -> CachedObject | None:
        try:
            obj = orjson.loads(value)
            metadata = obj.setdefault("metadata", {})
            metadata["resourceVersion"] = str(revision)
            # orjson returns its over-allocated output buffer; an exact-size copy keeps
            # ~3 KB per object out of the cache.
            raw = memoryview(orjson.dumps(obj)).tobytes()
            fields = self._index_fields(prefix, obj)
        except Exception:
            log.exception("skipping the undecodable object at %s (revision %d)", key, revision)
            return None
        return CachedObject(key=key, resource_version=revision, raw=raw,
                            namespace=sys.intern(metadata.get("namespace") or ""),
                            name=metadata.get("name") or "",
                            labels=metadata.get("labels") or {}, fields=fields)

    def _apply(self, event: StorageEvent) -> None:
        prefix = self._prefix_of(event.kv.key)
        if prefix is not None:
            resource = self._resources[prefix]
            change = self._change_for(resource, prefix, event)
            if change is not None:
                resource.record(change)
                self._notify(prefix, change)
                for watcher in tuple(resource.watchers):
                    watcher.offer(change)
        self._advance(event.revision)

    def _change_for(self, resource: _Resource, prefix: str, event: StorageEvent
                    ) -> _Change | None:
        key = event.kv.key
        prev = resource.objects.get(key)
        if event.type == "DELETE" and prev is None:
            return None  # never seen (e.g. it could not be decoded): nothing to announce
        obj = self._decode(prefix, key, event.kv.value, event.revision)
        if obj is None:
            return None
        if event.type == "DELETE":
            del resource.objects[key]
            del resource.keys[bisect.bisect_left(resource.keys, key)]
            return _Change("DELETED", obj, prev)
        resource.objects[key] = obj
        if prev is None:
            bisect.insort(resource.keys, key)
            return _Change("ADDED", obj, None)
        return _Change("MODIFIED", obj, prev)

    def _advance(self, revision: int) -> None:
        self._revision = max(self._revision, revision)
        waiters = self._revision_waiters
        while waiters and waiters[0][0] <= self._revision:
            future = heapq.heappop(waiters)[2]
            if not future.done():
                future.set_result(None)

    # ----------------------------------------------------------------- reading

    def _covering(self, prefix: str) -> list[_Resource]:
        """The resources holding keys under ``prefix``, in key order."""
        return [self._resources[resource_prefix] for resource_prefix in sorted(self._resources)
                if prefix.startswith(resource_prefix) or resource_prefix.startswith(prefix)]

    def _check_ready(self) -> None:
        if not self._ready.is_set():
            raise CacheNotReadyError("the watch cache has not loaded its initial list yet")

    def get(self, key: str) -> CachedObject | None:
        self._check_ready()
        prefix = self._prefix_of(key)
        return None if prefix is None else self._resources[prefix].objects.get(key)

    def list(self, prefix: str, *, predicate: Predicate | None = None,
             start_after: str | None = None, limit: int = 0
             ) -> tuple[list[CachedObject], int]:
        """Objects under ``prefix`` sorted by key, and the cache revision they reflect.

        ``start_after`` skips keys up to and including it (found by bisection) and
        ``limit`` stops after that many matches, so a page costs what it returns, not the
        size of the collection.
        """
        self._check_ready()
        found: list[CachedObject] = []
        resources = self._covering(prefix)
        if len(resources) > 1:
            resources = sorted(resources, key=lambda r: r.prefix)
        for resource in resources:
            low, high = resource.key_range(prefix)
            if start_after is not None:
                low = max(low, bisect.bisect_right(resource.keys, start_after, low, high))
            for key in itertools.islice(resource.keys, low, high):
                obj = resource.objects[key]
                if predicate is None or predicate(obj):
                    found.append(obj)
                    if limit and len(found) >= limit:
                        return found, self._revision
        return found, self._revision

    def count(self, prefix: str, *, after: str | None = None) -> int:
        """How many objects are under ``prefix`` (with keys greater than ``after``)."""
        self._check_ready()
        total = 0
        for resource in self._covering(prefix):
            low, high = resource.key_range(prefix)
            if after is not None:
                low = max(low, bisect.bisect_right(resource.keys, after, low, high))
            total += high - low
        return total

    def watch(self, prefix: str, *, from_revision: int | None,
              predicate: Predicate | None = None) -> Watcher:
        """Start a watch: a snapshot as ADDED events (``from_revision=None``) or the window's
        events after ``from_revision``, then live events. See the module docstring."""
        self._check_ready()
        resources = self._covering(prefix)
        if from_revision is None:
            objects, start = self.list(prefix, predicate=predicate)
            initial = collections.deque(CacheEvent("ADDED", obj) for obj in objects)
        elif from_revision >= self._revision:
            start, initial = from_revision, collections.deque()
        else:
            start = from_revision
            initial = collections.deque(self._replay(resources, prefix, from_revision, predicate))
        watcher = Watcher(prefix=prefix, predicate=predicate, revision=start, initial=initial,
                          queue_size=self._watcher_queue_size, unregister=self._unregister)
        for resource in resources:
            resource.watchers.add(watcher)
        return watcher

    @staticmethod
    def _replay(resources: list[_Resource], prefix: str, after: int,
                predicate: Predicate | None) -> list[CacheEvent]:
        changes: list[_Change] = []
        for resource in resources:
            if after < resource.window_start - 1:
                raise TooOldResourceVersionError(after, resource.window_start - 1)
            newer = list(itertools.takewhile(lambda change: change.obj.resource_version > after,
                                             reversed(resource.window)))
            changes.extend(reversed(newer))
        if len(resources) > 1:
            changes.sort(key=lambda change: change.obj.resource_version)
        events = (event_for_watcher(change, predicate) for change in changes
                  if change.obj.key.startswith(prefix))
        return [event for event in events if event is not None]

    def _unregister(self, watcher: Watcher) -> None:
        for resource in self._resources.values():
            resource.watchers.discard(watcher)

    def _close_all_watchers(self) -> None:
        for resource in self._resources.values():
            for watcher in tuple(resource.watchers):
                watcher.close()
