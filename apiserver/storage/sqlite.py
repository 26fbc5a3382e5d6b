"""The embedded storage backend: an etcd-v3-shaped key-value store in one SQLite file.

Why this design:
- **One writer thread, group commit.** SQLite allows one writer at a time and a commit is
  the expensive part, so every write is queued to a dedicated thread that owns the write
  connection. It takes everything queued, runs each operation's compare-and-swap inside one
  transaction and commits once. Each operation's outcome is resolved on its own: one lost
  CAS never fails its neighbours. The event loop never waits on SQLite.
- **Reads on their own connections** (a small thread pool, WAL snapshot isolation), so a
  read never waits for a commit and a range is one consistent snapshot with its revision.
- **History table.** Every change is a row keyed by its revision (new value, previous value,
  commit time). ``watch(from_revision)`` replays rows still kept, then switches to the live
  stream; compaction deletes old rows and the ``compacted`` mark refuses older watches.

Invariants:
- The global revision and the compacted revision live in the ``meta`` table and are
  written in the same transaction as the changes they describe, so they survive restarts
  and never go backwards.
- Live events are handed to the event loop one committed batch at a time, in commit order
  (``call_soon_threadsafe`` is FIFO); ``_delivered_revision`` is the newest revision whose
  event every live subscriber has been offered.
- Watch hand-over: a watcher subscribes first and records ``_delivered_revision`` as D in
  the same loop step, then replays history up to D; every event above D reaches its live
  queue. Nothing is missed and nothing is sent twice.
- A live queue is bounded; a watcher that falls behind drops its queue and catches up
  from history again (like etcd's unsynced watchers), so a slow reader costs disk reads,
  not unbounded memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiserver.storage.interface import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RangeResult,
    Storage,
    StorageError,
    StorageEvent,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    deleted INTEGER NOT NULL,        -- 1: a delete; value is then the last stored value
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_mod_revision INTEGER,       -- NULL on create
    prev_value BLOB,                 -- the replaced value of an update; NULL otherwise
    committed_at REAL NOT NULL       -- unix time, for keep_seconds
);
"""

_HISTORY_PAGE = 1000
_LIVE_QUEUE_LIMIT = 50_000
_MAX_BATCH = 2000
_COMPACT_STEP = 20_000  # history rows deleted per compaction transaction


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (etcd style).

    ``None`` means "no upper bound" (empty prefix). UTF-8 byte order equals code point
    order, so incrementing the last code point is correct for SQLite's BINARY collation.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF and not 0xD7FF <= last < 0xDFFF:
            chars[-1] = chr(last + 1)
            return "".join(chars)
        chars.pop()
    return None


@dataclass(slots=True)
class _WriteOp:
    kind: str  # "create" | "update" | "delete" | "compact"
    key: str
    value: bytes | None
    expected_mod_revision: int | None
    future: asyncio.Future[Any]


@dataclass(slots=True, eq=False)  # compared and hashed by identity
class _Subscriber:
    """The live side of one watch: committed events under ``prefix``, bounded."""

    prefix: str
    events: collections.deque[StorageEvent] = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False

    def offer(self, event: StorageEvent) -> None:
        if self.overflowed or not event.kv.key.startswith(self.prefix):
            return
        if len(self.events) >= _LIVE_QUEUE_LIMIT:
            self.events.clear()
            self.overflowed = True
        else:
            self.events.append(event)
        self.wake.set()

    def restart(self) -> None:
        self.events.clear()
        self.overflowed = False


def _event_from_row(row: tuple[Any, ...]) -> StorageEvent:
    revision, key, deleted, value, create_revision, prev_mod, prev_value = row
    if deleted:
        prev = KeyValue(key, value, create_revision, prev_mod)
        return StorageEvent("DELETE", KeyValue(key, value, create_revision, revision), prev)
    kv = KeyValue(key, value, create_revision, revision)
    if prev_mod is None:
        return StorageEvent("PUT", kv, None)
    return StorageEvent("PUT", kv, KeyValue(key, prev_value, create_revision, prev_mod))


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    # After a checkpoint, truncate the WAL file back to this size so it stays bounded.
    conn.execute("PRAGMA journal_size_limit=16777216")
    return conn


class SQLiteStorage(Storage):
    """The :class:`Storage` contract over one SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path, *, keep_revisions: int = 10000,
                 keep_seconds: float = 300, compact_interval: float = 30) -> None:
        self._path = str(path)
        self._keep_revisions = keep_revisions
        self._keep_seconds = keep_seconds
        self._compact_interval = compact_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_WriteOp | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._delivered_revision = 0
        self._compacted = 0
        self._compactor: asyncio.Task[None] | None = None
        self._open = False
        self._closed = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        write_conn = await asyncio.to_thread(self._open_writer_connection)
        revision, compacted = await asyncio.to_thread(self._read_marks, write_conn)
        self._delivered_revision, self._compacted = revision, compacted
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="keel-sqlite-read")
        self._writer = threading.Thread(target=self._writer_main, args=(write_conn, revision),
                                        name="keel-sqlite-write", daemon=True)
        self._writer.start()
        self._open = True
        self._closed.clear()
        if self._compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_periodically())

    def _open_writer_connection(self) -> sqlite3.Connection:
        conn = _connect(self._path)
        conn.executescript(_SCHEMA)
        return conn

    @staticmethod
    def _read_marks(conn: sqlite3.Connection) -> tuple[int, int]:
        marks = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        return marks["revision"], marks["compacted"]

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
            self._compactor = None
        self._queue.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        # Let the writer's last call_soon_threadsafe batch run before ending watches.
        await asyncio.sleep(0)
        self._closed.set()
        for subscriber in self._subscribers:
            subscriber.wake.set()
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, wait=True)
            self._readers = None
        with self._reader_lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()
        self._reader_local = threading.local()

    # ----------------------------------------------------------------- reads

    async def current_revision(self) -> int:
        return self._delivered_revision

    async def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT value, create_revision, mod_revision FROM kv WHERE key = ?", (key,)
            ).fetchone())
        return None if row is None else KeyValue(key, row[0], row[1], row[2])

    async def range(self, prefix: str, *, start_after: str | None = None,
                    limit: int = 0) -> RangeResult:
        return await self._read(lambda conn: self._range(conn, prefix, start_after, limit))

    @staticmethod
    def _range(conn: sqlite3.Connection, prefix: str, start_after: str | None,
               limit: int) -> RangeResult:
        sql = "SELECT key, value, create_revision, mod_revision FROM kv WHERE key >= ?"
        params: list[Any] = [prefix]
        end = prefix_end(prefix)
        if end is not None:
            sql += " AND key < ?"
            params.append(end)
        if start_after is not None:
            sql += " AND key > ?"
            params.append(start_after)
        sql += " ORDER BY key"
        if limit > 0:
            sql += " LIMIT ?"
            params.append(limit + 1)
        conn.execute("BEGIN")
        try:
            revision = conn.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()[0]
            rows = conn.execute(sql, params).fetchall()
        finally:
            conn.execute("COMMIT")
        more = limit > 0 and len(rows) > limit
        if more:
            rows = rows[:limit]
        return RangeResult([KeyValue(*row) for row in rows], revision, more)

    async def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        if not self._open or self._readers is None or self._loop is None:
            raise StorageError("the SQLite store is not open")
        return await self._loop.run_in_executor(self._readers, self._with_reader, work)

    def _with_reader(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = _connect(self._path)
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_connections.append(conn)
        try:
            return work(conn)
        except sqlite3.Error as error:
            raise StorageError(f"SQLite read failed on {self._path}: {error}") from error

    # ----------------------------------------------------------------- writes

    async def create(self, key: str, value: bytes) -> KeyValue:
        return await self._submit("create", key, value, None)

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> KeyValue:
        return await self._submit("update", key, value, expected_mod_revision)

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        return await self._submit("delete", key, None, expected_mod_revision)

    async def compact(self, revision: int) -> None:
        await self._submit("compact", "", None, revision)

    async def _submit(self, kind: str, key: str, value: bytes | None,
                      expected: int | None) -> Any:
        if not self._open or self._loop is None:
            raise StorageError("the SQLite store is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_WriteOp(kind, key, value, expected, future))
        return await future

    # ----------------------------------------------------------------- writer thread

    def _writer_main(self, conn: sqlite3.Connection, revision: int) -> None:
        """Owns the write connection: take all queued ops, commit them as one group."""
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        op = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if op is None:
                        stop = True
                        break
                    batch.append(op)
                revision, outcomes = self._commit_batch(conn, batch, revision)
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._finish_batch, outcomes)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_WriteOp], revision: int
                      ) -> tuple[int, list[tuple[_WriteOp, Any, StorageEvent | None]]]:
        outcomes: list[tuple[_WriteOp, Any, StorageEvent | None]] = []
        start_revision = revision
        now = time.time()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                try:
                    if op.kind == "compact":
                        outcomes.append((op, self._apply_compact(conn, op, revision), None))
                        continue
                    result, event = self._apply_write(conn, op, revision + 1, now)
                except StorageError as error:
                    outcomes.append((op, error, None))
                    continue
                revision += 1
                outcomes.append((op, result, event))
            if revision != start_revision:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            log.error("SQLite commit failed on %s: %s", self._path, error)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StorageError(f"SQLite write failed on {self._path}: {error}")
            return start_revision, [(op, failure, None) for op in batch]
        return revision, outcomes

    @staticmethod
    def _apply_write(conn: sqlite3.Connection, op: _WriteOp, revision: int, now: float
                     ) -> tuple[KeyValue, StorageEvent]:
        row = conn.execute("SELECT value, create_revision, mod_revision FROM kv WHERE key = ?",
                           (op.key,)).fetchone()
        current = None if row is None else KeyValue(op.key, row[0], row[1], row[2])
        if op.kind == "create":
            if current is not None:
                raise KeyExistsError(op.key)
            assert op.value is not None
            conn.execute("INSERT INTO kv VALUES (?, ?, ?, ?)",
                         (op.key, op.value, revision, revision))
            conn.execute("INSERT INTO history VALUES (?, ?, 0, ?, ?, NULL, NULL, ?)",
                         (revision, op.key, op.value, revision, now))
            kv = KeyValue(op.key, op.value, revision, revision)
            return kv, StorageEvent("PUT", kv, None)
        if current is None:
            raise KeyNotFoundError(op.key)
        if op.expected_mod_revision is not None and \
                current.mod_revision != op.expected_mod_revision:
            raise ConflictError(op.key, current)
        if op.kind == "update":
            assert op.value is not None
            conn.execute("UPDATE kv SET value = ?, mod_revision = ? WHERE key = ?",
                         (op.value, revision, op.key))
            conn.execute("INSERT INTO history VALUES (?, ?, 0, ?, ?, ?, ?, ?)",
                         (revision, op.key, op.value, current.create_revision,
                          current.mod_revision, current.value, now))
            kv = KeyValue(op.key, op.value, current.create_revision, revision)
            return kv, StorageEvent("PUT", kv, current)
        conn.execute("DELETE FROM kv WHERE key = ?", (op.key,))
        conn.execute("INSERT INTO history VALUES (?, ?, 1, ?, ?, ?, NULL, ?)",
                     (revision, op.key, current.value, current.create_revision,
                      current.mod_revision, now))
        kv = KeyValue(op.key, current.value, current.create_revision, revision)
        return kv, StorageEvent("DELETE", kv, current)

    @staticmethod
    def _apply_compact(conn: sqlite3.Connection, op: _WriteOp, revision: int) -> int:
        target = op.expected_mod_revision
        assert target is not None
        if target > revision:
            raise StorageError(f"cannot compact to revision {target}: newest is {revision}")
        compacted = conn.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()[0]
        if target <= compacted:
            return compacted
        conn.execute("DELETE FROM history WHERE revision <= ?", (target,))
        conn.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (target,))
        return target

    def _finish_batch(self, outcomes: list[tuple[_WriteOp, Any, StorageEvent | None]]) -> None:
        """On the event loop: resolve each op, then offer its event to live watchers."""
        for op, result, event in outcomes:
            if event is not None:
                self._delivered_revision = event.revision
                for subscriber in self._subscribers:
                    subscriber.offer(event)
            elif op.kind == "compact" and isinstance(result, int):
                self._compacted = max(self._compacted, result)
                result = None
            if op.future.done():
                continue
            if isinstance(result, BaseException):
                op.future.set_exception(result)
            else:
                op.future.set_result(result)

    # ----------------------------------------------------------------- watch

    def watch(self, *, from_revision: int, prefix: str = "") -> AsyncIterator[StorageEvent]:
        """See :meth:`Storage.watch`; ``from_revision`` below 1 means "from revision 1"."""
        return self._watch(max(from_revision, 1), prefix)

    async def _watch(self, from_revision: int, prefix: str) -> AsyncIterator[StorageEvent]:
        if not self._open:
            raise StorageError("the SQLite store is not open")
        subscriber = _Subscriber(prefix)
        self._subscribers.add(subscriber)
        next_revision = from_revision
        try:
            while True:
                # Hand-over: in this same loop step, restart the live queue and note D.
                subscriber.restart()
                caught_up_to = self._delivered_revision
                if self._closed.is_set():
                    return
                if next_revision <= self._compacted:
                    raise CompactedError(next_revision, self._compacted)
                while next_revision <= caught_up_to:
                    page = await self._read(
                        lambda conn, start=next_revision, end=caught_up_to:
                        self._history_page(conn, prefix, start, end))
                    for event in page:
                        yield event
                    next_revision = page[-1].revision + 1 if len(page) == _HISTORY_PAGE \
                        else caught_up_to + 1
                while not subscriber.overflowed:
                    if self._closed.is_set():
                        return
                    if not subscriber.events:
                        subscriber.wake.clear()
                        await subscriber.wake.wait()
                        continue
                    event = subscriber.events.popleft()
                    if event.revision >= next_revision:
                        next_revision = event.revision + 1
                        yield event
        finally:
            self._subscribers.discard(subscriber)

    @staticmethod
    def _history_page(conn: sqlite3.Connection, prefix: str, start: int,
                      end: int) -> list[StorageEvent]:
        sql = ("SELECT revision, key, deleted, value, create_revision, prev_mod_revision,"
               " prev_value FROM history WHERE revision >= ? AND revision <= ?")
        params: list[Any] = [start, end]
        if prefix:
            sql += " AND key >= ?"
            params.append(prefix)
            upper = prefix_end(prefix)
            if upper is not None:
                sql += " AND key < ?"
                params.append(upper)
        sql += " ORDER BY revision LIMIT ?"
        params.append(_HISTORY_PAGE)
        conn.execute("BEGIN")
        try:
            compacted = conn.execute(
                "SELECT value FROM meta WHERE name = 'compacted'").fetchone()[0]
            if start <= compacted:
                raise CompactedError(start, compacted)
            rows = conn.execute(sql, params).fetchall()
        finally:
            conn.execute("COMMIT")
        return [_event_from_row(row) for row in rows]

    # ----------------------------------------------------------------- compaction

    async def compact_once(self) -> int:
        """Compact per ``keep_revisions``/``keep_seconds`` now; return the compacted revision.

        Large backlogs are compacted in steps so that no single transaction holds the
        writer for long.
        """
        by_count = self._delivered_revision - self._keep_revisions
        if by_count <= self._compacted:
            return self._compacted
        cutoff = time.time() - self._keep_seconds
        row = await self._read(lambda conn: conn.execute(
            "SELECT revision FROM history WHERE revision <= ? AND committed_at < ?"
            " ORDER BY revision DESC LIMIT 1", (by_count, cutoff)).fetchone())
        target = 0 if row is None else row[0]
        while self._compacted < target:
            await self.compact(min(target, self._compacted + _COMPACT_STEP))
        return self._compacted

    async def _compact_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                await self.compact_once()
            except StorageError as error:
                log.warning("history compaction of %s failed: %s", self._path, error)
