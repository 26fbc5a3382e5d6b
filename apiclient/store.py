"""The informer's local cache: objects by key, plus optional secondary indexes.

asyncio-only and lock-free: every mutation is synchronous, so no other coroutine can see
a half-applied change. Index entries are kept exactly in step with the objects (an upsert
removes the old object's index values before adding the new ones), so `by_index` never
returns a stale object.

`replace` (used on every relist) returns the diff against the previous contents, so the
informer can tell handlers about objects that were added, changed or *vanished* while it
was disconnected. An object counts as changed when its resourceVersion differs (or, with
no resourceVersion, when its content differs): a relist does not re-announce unchanged ones.

Objects are API dicts unless the informer's transform turns them into something else (the
service proxy keeps compact records); ``key_func`` and ``version_func`` then say how to
get the key and the resourceVersion of one (``version_func=None``: records without one,
compared by content).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .meta import object_key

__all__ = ["IndexFunc", "Store", "StoreDiff", "namespace_index"]

IndexFunc = Callable[[dict], Iterable[str]]


NAMESPACE_INDEX = "namespace"  # the conventional name of the namespace_index index


def namespace_index(obj: dict) -> list[str]:
    """Index function: the object's namespace (client-go's NamespaceIndex)."""
    namespace = (obj.get("metadata") or {}).get("namespace")
    return [namespace] if namespace else []


@dataclass
class StoreDiff:
    added: list[dict] = field(default_factory=list)
    updated: list[tuple[dict, dict]] = field(default_factory=list)  # (old, new)
    deleted: list[dict] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.deleted)


def resource_version(obj: Mapping) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class Store:
    def __init__(
        self,
        *,
        indexers: Mapping[str, IndexFunc] | None = None,
        key_func: Callable[[Any], str] = object_key,
        version_func: Callable[[Any], str | None] | None = resource_version,
    ):
        self._key_func = key_func
        self._version_func = version_func
        self._indexers = dict(indexers or {})
        self._objects: dict[str, dict] = {}
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    def key_of(self, obj: Mapping) -> str:
        return self._key_func(obj)

    def get(self, key: str) -> dict | None:
        return self._objects.get(key)

    def list(self) -> list[dict]:
        return list(self._objects.values())

    def keys(self) -> list[str]:
        return list(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def by_index(self, index: str, value: str) -> list[dict]:
        if index not in self._indices:
            raise KeyError(f"no index named {index!r}; known: {sorted(self._indices)}")
        keys = self._indices[index].get(value, ())
        return [self._objects[key] for key in sorted(keys)]

    def add_indexer(self, name: str, func: IndexFunc) -> None:
        """Add an index (e.g. by a second user of a shared informer); existing objects are
        indexed at once. Asking again for the same function under the same name is a no-op,
        so users of a shared store share one index; a different function under a known
        name is an error."""
        if name in self._indexers:
            if self._indexers[name] is func:
                return
            raise KeyError(f"an index named {name!r} already exists")
        self._indexers[name] = func
        self._indices[name] = {}
        for key, obj in self._objects.items():
            for value in func(obj):
                self._indices[name].setdefault(value, set()).add(key)

    def index_values(self, index: str) -> list[str]:
        """The values that currently have at least one object in `index`."""
        return sorted(self._indices[index])

    def upsert(self, obj: dict) -> dict | None:
        """Insert or replace; returns the previous object with that key, if any."""
        key = self._key_func(obj)
        old = self._objects.get(key)
        if old is not None:
            self._unindex(key, old)
        self._objects[key] = obj
        self._index(key, obj)
        return old

    def delete(self, key: str) -> dict | None:
        """Remove by key; returns the removed object, if there was one."""
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objects: Iterable[dict]) -> StoreDiff:
        """Make the store hold exactly `objects`; report what changed."""
        diff = StoreDiff()
        seen: set[str] = set()
        for obj in objects:
            key = self._key_func(obj)
            seen.add(key)
            old = self.upsert(obj)
            if old is None:
                diff.added.append(obj)
            elif self._changed(old, obj):
                diff.updated.append((old, obj))
        for key in [key for key in self._objects if key not in seen]:
            diff.deleted.append(self.delete(key))
        return diff

    def _changed(self, old: Any, new: Any) -> bool:
        if self._version_func is None:
            return old != new
        old_rv, new_rv = self._version_func(old), self._version_func(new)
        if old_rv and new_rv:
            return old_rv != new_rv
        return old != new

    def _index(self, key: str, obj: dict) -> None:
        for name, func in self._indexers.items():
            for value in func(obj):
                self._indices[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: dict) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
