"""The watch cache over a real SQLite store: lists, synthetic ADDED, resume, 410, selector
transitions, slow watchers, deletes and relisting after the cache fell behind."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from apiserver.storage.interface import StorageError, StorageEvent
from apiserver.storage.sqlite import SQLiteStorage
from apiserver.storage.watchcache import (
    CacheEvent,
    CacheNotReadyError,
    TooOldResourceVersionError,
    WatchCache,
    Watcher,
)

PODS = "/registry/core/pods/"
NODES = "/registry/core/nodes/"


def index_fields(prefix: str, obj: dict) -> dict[str, str]:
    metadata = obj["metadata"]
    fields = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
    }
    if prefix == PODS:
        fields["spec.nodeName"] = obj.get("spec", {}).get("nodeName", "")
    return fields


def pod(name: str, *, node: str = "", namespace: str = "ns", labels: dict | None = None) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"nodeName": node},
        }
    )


def on_node(node: str):
    return lambda obj: obj.fields["spec.nodeName"] == node


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    storage = SQLiteStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    yield storage
    await storage.close()


async def start_cache(storage: SQLiteStorage, **options) -> WatchCache:
    cache = WatchCache(storage, prefixes=[PODS, NODES], index_fields=index_fields, **options)
    await cache.start()
    await asyncio.wait_for(cache.wait_until_ready(), 5)
    return cache


async def next_events(watcher: Watcher, count: int, *, timeout: float = 5) -> list[CacheEvent]:
    got: list[CacheEvent] = []

    async def run() -> None:
        async for event in watcher:
            got.append(event)
            if len(got) == count:
                return

    await asyncio.wait_for(run(), timeout)
    return got


def summary(events: list[CacheEvent]) -> list[tuple[str, str, int]]:
    return [(event.type, event.obj.name, event.obj.resource_version) for event in events]


async def test_list_get_count_and_encoded_resource_version(store: SQLiteStorage) -> None:
    await store.create(PODS + "ns/b", pod("b", labels={"app": "web"}))
    await store.create(PODS + "ns/a", pod("a", node="n1"))
    await store.create(PODS + "other/c", pod("c", namespace="other"))
    await store.create(NODES + "n1", orjson.dumps({"kind": "Node", "metadata": {"name": "n1"}}))
    await store.create("/registry/ranges/serviceips", b"not json at all")
    cache = await start_cache(store)
    try:
        objects, revision = cache.list(PODS)
        assert [obj.key for obj in objects] == [PODS + "ns/a", PODS + "ns/b", PODS + "other/c"]
        assert revision == cache.revision == 5
        namespaced, _ = cache.list(PODS + "ns/")
        assert [obj.name for obj in namespaced] == ["a", "b"]
        assert cache.count(PODS) == 3 and cache.count(PODS + "other/") == 1
        assert cache.count(NODES) == 1
        b = cache.get(PODS + "ns/b")
        assert b is not None and b.labels == {"app": "web"} and b.namespace == "ns"
        assert orjson.loads(b.raw)["metadata"]["resourceVersion"] == "1"
        on_n1, _ = cache.list(PODS, predicate=on_node("n1"))
        assert [obj.name for obj in on_n1] == ["a"]
        node = cache.get(NODES + "n1")
        assert node is not None and node.namespace == "" and node.fields["metadata.name"] == "n1"
    finally:
        await cache.stop()


async def test_not_ready_cache_refuses_reads(store: SQLiteStorage) -> None:
    cache = WatchCache(store, prefixes=[PODS], index_fields=index_fields)
    with pytest.raises(CacheNotReadyError):
        cache.list(PODS)


async def test_watch_without_revision_sends_synthetic_added_then_live(store: SQLiteStorage) -> None:
    await store.create(PODS + "ns/a", pod("a"))
    await store.create(PODS + "ns/b", pod("b"))
    cache = await start_cache(store)
    try:
        watcher = cache.watch(PODS, from_revision=None)
        assert watcher.revision == 2
        initial = await next_events(watcher, 2)
        assert summary(initial) == [("ADDED", "a", 1), ("ADDED", "b", 2)]
        current = await store.get(PODS + "ns/a")
        await store.update(
            PODS + "ns/a", pod("a", node="n1"), expected_mod_revision=current.mod_revision
        )
        live = await next_events(watcher, 1)
        assert summary(live) == [("MODIFIED", "a", 3)]
        assert orjson.loads(live[0].obj.raw)["spec"]["nodeName"] == "n1"
        assert watcher.revision == 3
    finally:
        await cache.stop()


async def test_watch_resumes_after_revision(store: SQLiteStorage) -> None:
    cache = await start_cache(store)
    try:
        for name in ["a", "b", "c"]:
            await store.create(PODS + "ns/" + name, pod(name))
        await store.create(NODES + "n1", orjson.dumps({"metadata": {"name": "n1"}}))
        await cache.wait_for_revision(4)
        resumed = cache.watch(PODS, from_revision=1)
        assert summary(await next_events(resumed, 2)) == [("ADDED", "b", 2), ("ADDED", "c", 3)]
        current = cache.watch(PODS, from_revision=cache.revision)
        await store.delete(PODS + "ns/a")
        assert summary(await next_events(current, 1)) == [("DELETED", "a", 5)]
        assert summary(await next_events(resumed, 1)) == [("DELETED", "a", 5)]
        future = cache.watch(PODS, from_revision=6)  # a revision the cache has not reached
        await store.create(PODS + "ns/d", pod("d"))
        await store.create(PODS + "ns/e", pod("e"))
        assert summary(await next_events(future, 1)) == [("ADDED", "e", 7)]
    finally:
        await cache.stop()


async def test_too_old_resource_version(store: SQLiteStorage) -> None:
    for index in range(3):
        await store.create(f"{PODS}ns/old{index}", pod(f"old{index}"))
    cache = await start_cache(store, window=5)
    try:
        with pytest.raises(TooOldResourceVersionError) as too_old:
            cache.watch(PODS, from_revision=1)  # from before the cache's initial list
        assert (too_old.value.requested, too_old.value.oldest) == (1, 3)
        cache.watch(PODS, from_revision=3).close()  # exactly the list revision is fine
        for index in range(10):
            await store.create(f"{PODS}ns/new{index}", pod(f"new{index}"))
        await cache.wait_for_revision(13)
        with pytest.raises(TooOldResourceVersionError):
            cache.watch(PODS, from_revision=7)  # the 5-event window starts at 9
        replay = cache.watch(PODS, from_revision=8)
        assert [event.obj.resource_version for event in await next_events(replay, 5)] == [
            9,
            10,
            11,
            12,
            13,
        ]
    finally:
        await cache.stop()


async def test_selector_transitions(store: SQLiteStorage) -> None:
    cache = await start_cache(store)
    try:
        watcher = cache.watch(PODS, from_revision=0, predicate=on_node("n1"))
        kv = await store.create(PODS + "ns/a", pod("a"))  # not on n1: not sent
        kv = await store.update(kv.key, pod("a", node="n1"), expected_mod_revision=kv.mod_revision)
        kv = await store.update(
            kv.key, pod("a", node="n1", labels={"x": "y"}), expected_mod_revision=kv.mod_revision
        )
        kv = await store.update(kv.key, pod("a", node="n2"), expected_mod_revision=kv.mod_revision)
        kv = await store.update(kv.key, pod("a", node="n3"), expected_mod_revision=kv.mod_revision)
        await store.create(PODS + "ns/b", pod("b", node="n1"))
        got = await next_events(watcher, 4)
        assert summary(got) == [
            ("ADDED", "a", 2),
            ("MODIFIED", "a", 3),
            ("DELETED", "a", 4),
            ("ADDED", "b", 6),
        ]
        assert got[2].obj.fields["spec.nodeName"] == "n2"  # DELETED carries the new state
        replayed = cache.watch(PODS, from_revision=1, predicate=on_node("n1"))
        assert summary(await next_events(replayed, 4)) == summary(got)
    finally:
        await cache.stop()


async def test_deleted_carries_last_state(store: SQLiteStorage) -> None:
    kv = await store.create(PODS + "ns/a", pod("a", labels={"app": "web"}))
    await store.update(
        kv.key, pod("a", node="n1", labels={"app": "web"}), expected_mod_revision=kv.mod_revision
    )
    cache = await start_cache(store)
    try:
        watcher = cache.watch(PODS, from_revision=cache.revision)
        await store.delete(kv.key)
        [deleted] = await next_events(watcher, 1)
        assert deleted.type == "DELETED" and deleted.obj.resource_version == 3
        body = orjson.loads(deleted.obj.raw)
        assert body["metadata"]["resourceVersion"] == "3"
        assert body["spec"]["nodeName"] == "n1" and deleted.obj.labels == {"app": "web"}
        assert cache.get(kv.key) is None and cache.count(PODS) == 0
    finally:
        await cache.stop()


async def test_overflowing_watcher_is_closed_others_continue(store: SQLiteStorage) -> None:
    cache = await start_cache(store, watcher_queue_size=10)
    try:
        slow = cache.watch(PODS, from_revision=cache.revision)
        fast = cache.watch(PODS, from_revision=cache.revision)
        fast_events = asyncio.create_task(next_events(fast, 30))
        for index in range(30):
            await store.create(f"{PODS}ns/p{index}", pod(f"p{index}"))
        assert len(await fast_events) == 30
        assert slow.closed
        assert [event async for event in slow] == []  # its iterator ends
    finally:
        await cache.stop()


async def test_wait_for_revision_times_out(store: SQLiteStorage) -> None:
    cache = await start_cache(store)
    try:
        with pytest.raises(TimeoutError):
            await cache.wait_for_revision(5, timeout=0.05)
        waiting = asyncio.create_task(cache.wait_for_revision(1))
        await store.create(PODS + "ns/a", pod("a"))
        await asyncio.wait_for(waiting, 2)
    finally:
        await cache.stop()


class GatedStorage(SQLiteStorage):
    """A real store whose next watch waits for the test: lets the cache fall behind."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.watch_calls = 0

    def watch(self, *, from_revision: int, prefix: str = "") -> AsyncIterator[StorageEvent]:
        self.watch_calls += 1
        return self._gated(from_revision, prefix)

    async def _gated(self, from_revision: int, prefix: str) -> AsyncIterator[StorageEvent]:
        await self.gate.wait()
        async for event in SQLiteStorage.watch(self, from_revision=from_revision, prefix=prefix):
            yield event


async def test_relist_after_compaction(tmp_path: Path) -> None:
    storage = GatedStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    await storage.create(PODS + "ns/gone", pod("gone"))
    await storage.create(PODS + "ns/kept", pod("kept"))
    cache = await start_cache(storage)
    try:
        early = cache.watch(PODS, from_revision=None)
        await storage.delete(PODS + "ns/gone")
        await storage.create(PODS + "ns/new", pod("new"))
        await storage.compact(await storage.current_revision())  # the cache's history is gone
        storage.gate.set()
        await cache.wait_for_revision(4)
        assert [obj.name for obj in cache.list(PODS)[0]] == ["kept", "new"]
        assert storage.watch_calls == 2  # the compacted watch, then one after the relist
        assert early.closed  # its stream cannot be continued; the client relists
        with pytest.raises(TooOldResourceVersionError):
            cache.watch(PODS, from_revision=2)
        after = cache.watch(PODS, from_revision=cache.revision)
        await storage.create(PODS + "ns/later", pod("later"))
        assert summary(await next_events(after, 1)) == [("ADDED", "later", 5)]
    finally:
        await cache.stop()
        await storage.close()


async def test_hundred_watchers_get_each_event_quickly(store: SQLiteStorage) -> None:
    cache = await start_cache(store)
    arrivals: list[float] = []
    written_at: dict[int, float] = {}

    async def consume(watcher: Watcher, count: int) -> None:
        received = 0
        async for event in watcher:
            arrivals.append(time.perf_counter() - written_at[event.obj.resource_version])
            received += 1
            if received == count:
                return

    try:
        node_watchers = [
            cache.watch(PODS, from_revision=cache.revision, predicate=on_node(f"n{index}"))
            for index in range(10)
        ]
        events = 50
        consumers = [
            asyncio.create_task(consume(watcher, events // 10)) for watcher in node_watchers[:10]
        ]
        plain = [cache.watch(PODS, from_revision=cache.revision) for _ in range(90)]
        consumers += [asyncio.create_task(consume(watcher, events)) for watcher in plain]
        for index in range(events):
            written_at[index + 1] = time.perf_counter()
            await store.create(f"{PODS}ns/p{index}", pod(f"p{index}", node=f"n{index % 10}"))
        await asyncio.wait_for(asyncio.gather(*consumers), 10)
        p99 = statistics.quantiles(arrivals, n=100)[98]
        print(f"\n100 watchers, {len(arrivals)} deliveries: p99 write->watcher {p99 * 1000:.2f} ms")
        assert len(arrivals) == events * 90 + events  # 10 node watchers: 5 events each
        assert p99 < 0.05
    finally:
        await cache.stop()


class FlakyStorage(SQLiteStorage):
    """A real store whose first watch fails once, like a dropped connection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.watch_calls = 0

    def watch(self, *, from_revision: int, prefix: str = "") -> AsyncIterator[StorageEvent]:
        self.watch_calls += 1
        if self.watch_calls == 1:
            return self._fail()
        return SQLiteStorage.watch(self, from_revision=from_revision, prefix=prefix)

    async def _fail(self) -> AsyncIterator[StorageEvent]:
        raise StorageError("connection dropped")
        yield  # an async generator that fails when iterated


async def test_failed_storage_watch_is_retried_without_losing_events(tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    cache = await start_cache(storage)
    try:
        watcher = cache.watch(PODS, from_revision=None)
        await storage.create(PODS + "ns/a", pod("a"))
        await cache.wait_for_revision(1)
        assert storage.watch_calls == 2
        assert summary(await next_events(watcher, 1)) == [("ADDED", "a", 1)]
        assert not watcher.closed  # a retried watch continues exactly: no relist needed
    finally:
        await cache.stop()
        await storage.close()


async def test_storage_close_ends_cache_watchers(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    cache = await start_cache(storage)
    watcher = cache.watch(PODS, from_revision=None)
    await storage.close()
    assert await asyncio.wait_for(next_events(watcher, 1), 2) == []
    assert watcher.closed
    await cache.stop()
