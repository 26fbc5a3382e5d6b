"""The SQLite backend against the Storage contract: CAS, races, watch order, restart,
compaction and bounded size. Real SQLite files under tmp_path, no fakes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apiserver.storage import sqlite as sqlite_module
from apiserver.storage.interface import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    StorageError,
    StorageEvent,
)
from apiserver.storage.sqlite import SQLiteStorage, prefix_end

PODS = "/registry/core/pods/"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    storage = SQLiteStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    yield storage
    await storage.close()


async def collect(
    events: AsyncIterator[StorageEvent], count: int, *, timeout: float = 10
) -> list[StorageEvent]:
    got: list[StorageEvent] = []

    async def run() -> None:
        async for event in events:
            got.append(event)
            if len(got) == count:
                return

    await asyncio.wait_for(run(), timeout)
    return got


def test_prefix_end() -> None:
    assert prefix_end("/registry/core/pods/") == "/registry/core/pods0"
    assert prefix_end("") is None


async def test_create_get_update_delete(store: SQLiteStorage) -> None:
    created = await store.create(PODS + "a", b"1")
    assert (created.create_revision, created.mod_revision) == (1, 1)
    with pytest.raises(KeyExistsError):
        await store.create(PODS + "a", b"again")
    updated = await store.update(PODS + "a", b"2", expected_mod_revision=1)
    assert (updated.value, updated.create_revision, updated.mod_revision) == (b"2", 1, 2)
    with pytest.raises(ConflictError) as conflict:
        await store.update(PODS + "a", b"3", expected_mod_revision=1)
    assert conflict.value.current is not None and conflict.value.current.value == b"2"
    with pytest.raises(KeyNotFoundError):
        await store.update(PODS + "missing", b"x", expected_mod_revision=1)
    assert await store.get(PODS + "a") == updated
    deleted = await store.delete(PODS + "a", expected_mod_revision=2)
    assert (deleted.value, deleted.mod_revision) == (b"2", 3)
    assert await store.get(PODS + "a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete(PODS + "a")
    assert await store.current_revision() == 3


async def test_range_prefix_and_pagination(store: SQLiteStorage) -> None:
    for name in ["c", "a", "b"]:
        await store.create(PODS + "ns/" + name, name.encode())
    await store.create("/registry/core/pods0", b"outside the prefix")
    await store.create("/registry/core/services/ns/a", b"svc")
    everything = await store.range(PODS)
    assert [kv.key for kv in everything.kvs] == [PODS + "ns/a", PODS + "ns/b", PODS + "ns/c"]
    assert everything.revision == 5 and not everything.more
    first = await store.range(PODS, limit=2)
    assert [kv.value for kv in first.kvs] == [b"a", b"b"] and first.more
    rest = await store.range(PODS, start_after=first.kvs[-1].key, limit=2)
    assert [kv.value for kv in rest.kvs] == [b"c"] and not rest.more


async def test_concurrent_cas_has_exactly_one_winner_per_round(store: SQLiteStorage) -> None:
    key = PODS + "contended"
    current = await store.create(key, b"start")
    for round_number in range(20):

        async def attempt(
            writer: int, expected: int = current.mod_revision, round_number: int = round_number
        ) -> str:
            try:
                await store.update(
                    key, f"{round_number}-{writer}".encode(), expected_mod_revision=expected
                )
            except ConflictError:
                return "lost"
            return "won"

        outcomes = await asyncio.gather(*(attempt(writer) for writer in range(16)))
        assert outcomes.count("won") == 1
        winner = outcomes.index("won")
        current = await store.get(key)
        assert current is not None and current.value == f"{round_number}-{winner}".encode()


async def test_create_if_absent_race_has_one_winner(store: SQLiteStorage) -> None:
    for round_number in range(10):
        results = await asyncio.gather(
            *(
                store.create(f"{PODS}race-{round_number}", str(writer).encode())
                for writer in range(16)
            ),
            return_exceptions=True,
        )
        winners = [result for result in results if not isinstance(result, BaseException)]
        assert len(winners) == 1
        assert all(
            isinstance(result, KeyExistsError)
            for result in results
            if isinstance(result, BaseException)
        )


async def test_watch_joined_mid_stream_gets_every_revision_once_in_order(
    store: SQLiteStorage,
) -> None:
    writers, writes_each = 16, 150
    total = writers * writes_each

    async def writer(number: int) -> None:
        for index in range(writes_each):
            await store.create(f"{PODS}w{number}-{index}", b"{}")

    running = asyncio.gather(*(writer(number) for number in range(writers)))
    await asyncio.sleep(0.02)  # the watch joins while history and live both have events
    assert await store.current_revision() > 0
    got = await collect(store.watch(from_revision=1, prefix=PODS), total)
    await running
    assert [event.revision for event in got] == list(range(1, total + 1))
    assert all(event.is_create for event in got)


async def test_live_watch_with_concurrent_writers_is_ordered(store: SQLiteStorage) -> None:
    watch = store.watch(from_revision=1, prefix=PODS)
    receiver = asyncio.create_task(collect(watch, 800))
    await asyncio.sleep(0)

    async def writer(number: int) -> None:
        key = f"{PODS}hot-{number}"
        kv = await store.create(key, b"0")
        for index in range(99):
            kv = await store.update(key, str(index).encode(), expected_mod_revision=kv.mod_revision)

    await asyncio.gather(*(writer(number) for number in range(8)))
    got = await receiver
    assert [event.revision for event in got] == list(range(1, 801))
    for event in got:
        if not event.is_create:
            assert event.prev is not None and event.prev.mod_revision < event.revision


async def test_watch_prefix_filter_and_delete_event(store: SQLiteStorage) -> None:
    await store.create("/registry/core/services/ns/s", b"svc")
    pod = await store.create(PODS + "ns/p", b"v1")
    await store.update(PODS + "ns/p", b"v2", expected_mod_revision=pod.mod_revision)
    await store.delete(PODS + "ns/p")
    got = await collect(store.watch(from_revision=1, prefix=PODS), 3)
    assert [(event.type, event.revision) for event in got] == [
        ("PUT", 2),
        ("PUT", 3),
        ("DELETE", 4),
    ]
    update, delete = got[1], got[2]
    assert update.prev is not None and update.prev.value == b"v1"
    assert (delete.kv.value, delete.kv.mod_revision, delete.kv.create_revision) == (b"v2", 4, 2)
    assert delete.prev is not None and delete.prev.mod_revision == 3


async def test_watch_from_future_revision_gets_only_later_events(store: SQLiteStorage) -> None:
    await store.create(PODS + "a", b"1")
    receiver = asyncio.create_task(collect(store.watch(from_revision=3), 1))
    await asyncio.sleep(0.05)
    await store.create(PODS + "b", b"2")
    await store.create(PODS + "c", b"3")
    got = await receiver
    assert [event.kv.key for event in got] == [PODS + "c"]


async def test_slow_watcher_catches_up_from_history(
    store: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_LIVE_QUEUE_LIMIT", 5)
    watch = store.watch(from_revision=1)
    first = await asyncio.wait_for(anext_after(watch, store), 5)
    assert first.revision == 1
    for index in range(50):  # nobody reads: the live queue overflows
        await store.create(f"{PODS}slow-{index}", b"x")
    rest = await collect(watch, 50)
    assert [event.revision for event in rest] == list(range(2, 52))


async def anext_after(watch: AsyncIterator[StorageEvent], store: SQLiteStorage) -> StorageEvent:
    waiting = asyncio.ensure_future(watch.__anext__())
    await asyncio.sleep(0.01)
    await store.create(PODS + "first", b"x")
    return await waiting


async def test_close_ends_watches(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    receiver = asyncio.create_task(collect(storage.watch(from_revision=1), 10))
    await asyncio.sleep(0.05)
    await storage.close()
    assert await asyncio.wait_for(receiver, 2) == []  # the iterator ended, nothing arrived
    with pytest.raises(StorageError):
        await storage.get(PODS + "a")


async def test_restart_keeps_data_and_revisions(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, compact_interval=0)
    await storage.open()
    for index in range(10):
        await storage.create(f"{PODS}p{index}", str(index).encode())
    await storage.delete(PODS + "p0")
    await storage.compact(5)
    await storage.close()

    reopened = SQLiteStorage(path, compact_interval=0)
    await reopened.open()
    try:
        assert await reopened.current_revision() == 11
        assert await reopened.compacted_revision() == 5
        assert (await reopened.get(PODS + "p3")).value == b"3"
        assert await reopened.get(PODS + "p0") is None
        created = await reopened.create(PODS + "new", b"n")
        assert created.mod_revision == 12
        history = await collect(reopened.watch(from_revision=6), 7)
        assert [event.revision for event in history] == list(range(6, 13))
    finally:
        await reopened.close()


async def test_watch_below_compaction_raises(store: SQLiteStorage) -> None:
    for index in range(10):
        await store.create(f"{PODS}p{index}", b"x")
    await store.compact(6)
    assert await store.compacted_revision() == 6
    with pytest.raises(CompactedError) as compacted:
        await collect(store.watch(from_revision=6), 1)
    assert (compacted.value.requested, compacted.value.compacted) == (6, 6)
    got = await collect(store.watch(from_revision=7), 4)
    assert [event.revision for event in got] == [7, 8, 9, 10]
    with pytest.raises(StorageError):
        await store.compact(99)  # the future cannot be compacted


async def test_background_compaction_keeps_recent_revisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_COMPACT_STEP", 7)  # a backlog is compacted in steps
    storage = SQLiteStorage(
        tmp_path / "state.db", keep_revisions=20, keep_seconds=0, compact_interval=0.05
    )
    await storage.open()
    try:
        for index in range(100):
            await storage.create(f"{PODS}p{index}", b"x")
        deadline = time.monotonic() + 5
        while await storage.compacted_revision() < 80 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert await storage.compacted_revision() == 80
        got = await collect(storage.watch(from_revision=81), 20)
        assert got[0].revision == 81
    finally:
        await storage.close()


async def test_keep_seconds_protects_recent_history(tmp_path: Path) -> None:
    storage = SQLiteStorage(
        tmp_path / "state.db", keep_revisions=1, keep_seconds=60, compact_interval=0
    )
    await storage.open()
    try:
        for index in range(50):
            await storage.create(f"{PODS}p{index}", b"x")
        assert await storage.compact_once() == 0
    finally:
        await storage.close()


async def test_database_stays_bounded_under_heartbeat_churn(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, keep_revisions=500, keep_seconds=0, compact_interval=0)
    await storage.open()
    value = b'{"kind":"Lease","spec":{"renewTime":"' + b"x" * 200 + b'"}}'
    revisions = {f"/registry/coordination.k8s.io/leases/ns/node-{n}": 0 for n in range(50)}
    for key in revisions:
        revisions[key] = (await storage.create(key, value)).mod_revision

    def disk_bytes() -> int:
        return sum(file.stat().st_size for file in tmp_path.iterdir())

    sizes = []
    try:
        for round_number in range(400):  # 400 x 50 = 20,000 updates
            updated = await asyncio.gather(
                *(
                    storage.update(key, value, expected_mod_revision=revision)
                    for key, revision in revisions.items()
                )
            )
            revisions = {kv.key: kv.mod_revision for kv in updated}
            if round_number % 40 == 39:
                await storage.compact_once()
                sizes.append(disk_bytes())
        assert await storage.current_revision() == 20_050
        assert await storage.compacted_revision() == 20_050 - 500
    finally:
        await storage.close()
    with sqlite3.connect(path) as conn:
        history_rows = conn.execute("SELECT count(*) FROM history").fetchone()[0]
        kv_rows = conn.execute("SELECT count(*) FROM kv").fetchone()[0]
    assert (history_rows, kv_rows) == (500, 50)
    # Compaction frees pages that later writes reuse: the files stop growing.
    assert max(sizes[3:]) <= sizes[2] * 1.2, sizes
    assert path.stat().st_size < 2_000_000


async def test_sixteen_concurrent_writers_throughput(store: SQLiteStorage) -> None:
    writers, writes_each = 16, 500
    value = b'{"kind":"Pod","metadata":{"name":"p"},"spec":{"pad":"' + b"x" * 600 + b'"}}'

    async def writer(number: int) -> None:
        for index in range(writes_each):
            await store.create(f"{PODS}ns/w{number}-{index}", value)

    started = time.perf_counter()
    await asyncio.gather(*(writer(number) for number in range(writers)))
    rate = writers * writes_each / (time.perf_counter() - started)
    print(f"\n16 concurrent writers: {rate:,.0f} creates/s")
    assert await store.current_revision() == writers * writes_each
    assert rate >= 1000  # the apiserver's target; this layer is normally far above it
