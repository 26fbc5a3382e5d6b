"""List-then-watch informer: keeps a local `Store` in step with the apiserver.

The loop (client-go's reflector, kopf's watching.py):

    list (paginated) -> store.replace -> handlers get adds, updates and deletes of the diff
    -> watch from the list's resourceVersion, with bookmarks
    -> apply events; remember the newest resourceVersion (bookmarks move it too)
    -> stream ended (server timeout): watch again from the newest resourceVersion
    -> 410 Gone: relist (the diff delivers deletes for objects that vanished meanwhile)
    -> any other error: exponential backoff with jitter, reset after the next success

Invariants:
- Handlers are called in registration order, one event at a time, after the store has
  been updated, so a handler that reads the store sees the new state. A handler that
  raises is logged and skipped; it never stops the informer or the other handlers.
- `has_synced` becomes true only after the first full list was delivered to handlers.
- A watch that ends within a second without any event counts as a failure, so a server
  that closes streams at once cannot make the loop spin.
- `transform` (client-go's SetTransform), when given, is applied to every object exactly
  once, before it enters the store and before any handler sees it: listed items, watch
  events (deletes too), on every relist. A user that needs only a few fields (the service
  proxy at 10,000 Services) keeps only those; the store then holds nothing else. It must
  keep metadata.name, namespace and resourceVersion (keys and the relist diff use them),
  or return another type and give `key_func` and `version_func` for it (None: objects
  without a resourceVersion, which the relist diff compares by content).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .backoff import Backoff
from .client import ApiClient, WatchEvent
from .errors import GoneError
from .meta import object_key
from .resources import Resource
from .store import Store, resource_version

__all__ = ["Informer"]

log = logging.getLogger(__name__)

_SHORT_WATCH_SECONDS = 1.0


@dataclass(frozen=True)
class _Handler:
    on_add: Callable[[dict], Any] | None
    on_update: Callable[[dict, dict], Any] | None
    on_delete: Callable[[dict], Any] | None


class _ShortWatchError(Exception):
    """The server ended a watch at once, without sending anything."""


class Informer:
    # The clock seam: tests replace it on an instance to observe backoff without waiting.
    _sleep = staticmethod(asyncio.sleep)

    def __init__(
        self,
        client: ApiClient,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: object | None = None,
        field_selector: object | None = None,
        indexers: Mapping[str, Callable[[dict], Iterable[str]]] | None = None,
        name: str | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        watch_timeout: int = 300,
        transform: Callable[[dict], Any] | None = None,
        key_func: Callable[[Any], str] | None = None,
        version_func: Callable[[Any], str | None] | None = resource_version,
        page_size: int = 500,
    ):
        self.client = client
        self.resource = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.name = name or res.plural
        self.watch_timeout = watch_timeout
        self.transform = transform
        self.page_size = page_size  # items per LIST page (client-go's default is 500)
        self.store = Store(
            indexers=indexers,
            key_func=key_func or object_key,
            version_func=version_func,
        )
        self._handlers: list[_Handler] = []
        self._synced = asyncio.Event()
        self._resource_version = ""
        self._backoff = Backoff(initial=backoff_initial, maximum=backoff_max, jitter=0.5)
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ public surface

    def add_handler(
        self,
        *,
        on_add: Callable[[dict], Any] | None = None,
        on_update: Callable[[dict, dict], Any] | None = None,
        on_delete: Callable[[dict], Any] | None = None,
    ) -> None:
        """Register callbacks (plain or async). Add handlers before `start()`: a handler
        added later sees only the events that come after it."""
        self._handlers.append(_Handler(on_add, on_update, on_delete))

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait for the first full list; TimeoutError after `timeout` seconds."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    @property
    def last_sync_resource_version(self) -> str:
        """The newest resourceVersion seen (list, event or bookmark)."""
        return self._resource_version

    @property
    def consecutive_failures(self) -> int:
        return self._backoff.failures

    @property
    def last_backoff(self) -> float:
        """The most recent delay slept after an error, in seconds (0 before any error)."""
        return self._backoff.last_delay

    def start(self) -> asyncio.Task:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"informer-{self.name}"
            )
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Swallow only the cancellation we caused, never one aimed at our caller.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    # ------------------------------------------------------------------ the loop

    async def run(self, *, _iterations: int | None = None) -> None:
        """List and watch until cancelled (or, in tests, for `_iterations` attempts)."""
        need_list = True
        attempts = 0
        while _iterations is None or attempts < _iterations:
            attempts += 1
            listed_now = False
            try:
                if need_list:
                    await self._list()
                    need_list, listed_now = False, True
                    self._backoff.reset()
                if await self._watch():
                    self._backoff.reset()
            except asyncio.CancelledError:
                raise
            except GoneError as error:
                need_list = True
                if listed_now:  # even a fresh list's resourceVersion is gone: do not spin
                    await self._back_off(error)
                else:
                    log.info("informer %s: %s; relisting", self.name, error)
            except Exception as error:
                await self._back_off(error)

    async def _back_off(self, error: Exception) -> None:
        delay = self._backoff.next_delay()
        log.warning(
            "informer %s: %s: %s; retrying in %.2fs",
            self.name,
            type(error).__name__,
            error,
            delay,
        )
        await self._sleep(delay)

    async def _list(self) -> None:
        listing = await self.client.list_all(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            transform=self._prepare_listed,
            page_size=self.page_size,
        )
        items = listing.get("items") or []
        diff = self.store.replace(items)
        self._resource_version = (listing.get("metadata") or {}).get("resourceVersion", "")
        for obj in diff.added:
            await self._dispatch("on_add", obj)
        for old, new in diff.updated:
            await self._dispatch("on_update", old, new)
        for obj in diff.deleted:
            await self._dispatch("on_delete", obj)
        self._synced.set()

    def _prepare_listed(self, item: dict) -> dict:
        # List items carry no kind/apiVersion on the wire; handlers get whole objects.
        item.setdefault("kind", self.resource.kind)
        item.setdefault("apiVersion", self.resource.api_version)
        return self.transform(item) if self.transform is not None else item

    async def _watch(self) -> bool:
        """One watch stream; True if it delivered at least one event."""
        started = time.monotonic()
        delivered = False
        stream = self.client.watch(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            resource_version=self._resource_version or None,
            timeout_seconds=self.watch_timeout,
            allow_bookmarks=True,
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                delivered = True
                await self._apply(event)
        if not delivered and time.monotonic() - started < _SHORT_WATCH_SECONDS:
            raise _ShortWatchError("the watch ended at once without events")
        return delivered

    async def _apply(self, event: WatchEvent) -> None:
        obj = event.object
        resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        if event.type == "BOOKMARK":
            if resource_version:
                self._resource_version = resource_version
            return
        if self.transform is not None and event.type in ("ADDED", "MODIFIED", "DELETED"):
            obj = self.transform(obj)
        if event.type in ("ADDED", "MODIFIED"):
            old = self.store.upsert(obj)
            if old is None:
                await self._dispatch("on_add", obj)
            else:
                await self._dispatch("on_update", old, obj)
        elif event.type == "DELETED":
            self.store.delete(self.store.key_of(obj))
            await self._dispatch("on_delete", obj)
        else:
            log.warning("informer %s: ignoring watch event of type %r", self.name, event.type)
        if resource_version:
            self._resource_version = resource_version

    # ------------------------------------------------------------------ handlers

    async def _dispatch(self, kind: str, *args: dict) -> None:
        for handler in self._handlers:
            await self._call(handler, kind, *args)

    async def _call(self, handler: _Handler, kind: str, *args: dict) -> None:
        callback = getattr(handler, kind)
        if callback is None:
            return
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("informer %s: %s handler %r failed", self.name, kind, callback)
