"""The storage contract: a key-value store shaped like etcd v3.

Why this shape: the apiserver's semantics (resourceVersion, optimistic concurrency,
watch-from-revision, 410 Gone after compaction) map one-to-one onto etcd's model, so
the handlers are written once against this interface and an etcd backend can be added
without touching them. The handlers never see SQL.

Invariants every backend keeps:
- One global, strictly increasing revision. Every successful write (create, update,
  delete) gets the next revision; the object's resourceVersion is that number.
- Revisions survive restarts and never go backwards.
- ``watch(from_revision)`` yields every change with ``revision >= from_revision`` exactly
  once and in revision order, then live changes as they commit. Asking for a revision
  at or below the compacted revision raises :class:`CompactedError`.
- Values are opaque bytes to the store (the apiserver stores JSON).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One stored key at one revision."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class StorageEvent:
    """One committed change, as delivered by :meth:`Storage.watch`.

    For ``PUT`` ``kv`` is the new value and ``prev`` the previous one (``None`` on create).
    For ``DELETE`` ``kv`` carries the key with the *last stored value* and
    ``mod_revision`` set to the revision of the delete; ``prev`` is that same last value.
    """

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def is_create(self) -> bool:
        return self.type == "PUT" and self.prev is None


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store's revision when the range was read
    more: bool  # True when ``limit`` cut the result short


class StorageError(Exception):
    """Base class of storage failures."""


class KeyExistsError(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key


class KeyNotFoundError(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class ConflictError(StorageError):
    """A compare-and-swap lost: the key's mod revision is not the expected one."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"key {key!r} was modified concurrently")
        self.key = key
        self.current = current


class CompactedError(StorageError):
    """The requested revision is older than the oldest revision still kept."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (compacted up to {compacted})")
        self.requested = requested
        self.compacted = compacted


class Storage(abc.ABC):
    """The etcd-v3-shaped store every backend implements."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Open files/connections and recover state (revision, compaction point)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release everything; ends every open watch iterator."""

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The revision of the newest committed write (0 for an empty store)."""

    @abc.abstractmethod
    async def compacted_revision(self) -> int:
        """Revisions at or below this one can no longer be watched from."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """The current value of ``key``, or ``None``."""

    @abc.abstractmethod
    async def range(self, prefix: str, *, start_after: str | None = None,
                    limit: int = 0) -> RangeResult:
        """Current keys starting with ``prefix`` in key order.

        ``start_after`` skips keys ``<=`` it (for pagination); ``limit`` 0 means all.
        """

    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> KeyValue:
        """Store ``key`` only if absent; raise :class:`KeyExistsError` otherwise."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> KeyValue:
        """Compare-and-swap: write only if the key's mod revision equals the expected one.

        Raises :class:`KeyNotFoundError` when the key is absent and
        :class:`ConflictError` (carrying the current value) when the revision differs.
        """

    @abc.abstractmethod
    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        """Delete ``key`` (optionally compare-and-swap); return the deleted value with the
        delete's revision as ``mod_revision``. Raises like :meth:`update`."""

    @abc.abstractmethod
    def watch(self, *, from_revision: int, prefix: str = "") -> AsyncIterator[StorageEvent]:
        """Every change with ``revision >= from_revision`` under ``prefix``, then live ones.

        Raises :class:`CompactedError` (when iterated) if ``from_revision`` is at or below
        the compacted revision. Ends when the store is closed.
        """

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history at or below ``revision`` (current values are always kept)."""

    def needs_rewrite(self, key: str) -> bool:
        """True when the stored value of ``key`` must be written again even by an update
        that changes nothing: it is encrypted with a key that is no longer the first one
        (see :mod:`apiserver.storage.transforming`). Plain backends never need it."""
        return False
