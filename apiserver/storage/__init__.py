"""Storage for the apiserver: the etcd-shaped contract, the SQLite backend, the watch cache.

The handlers import from here: :class:`Storage` and its errors from ``interface``, the
embedded backend :class:`SQLiteStorage`, and the in-memory :class:`WatchCache` that serves
every LIST and WATCH.
"""

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
from apiserver.storage.sqlite import SQLiteStorage
from apiserver.storage.watchcache import (
    CachedObject,
    CacheEvent,
    CacheNotReadyError,
    TooOldResourceVersionError,
    WatchCache,
    Watcher,
)

__all__ = [
    "CacheEvent",
    "CacheNotReadyError",
    "CachedObject",
    "CompactedError",
    "ConflictError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "RangeResult",
    "SQLiteStorage",
    "Storage",
    "StorageError",
    "StorageEvent",
    "TooOldResourceVersionError",
    "WatchCache",
    "Watcher",
]
