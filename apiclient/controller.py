"""What every control loop is built from: shared informers, a work queue, a worker pool.

The shape is client-go's (SharedInformerFactory + workqueue + ``syncHandler``), kept
small: informer handlers only *enqueue keys*; workers pop a key and call
``reconcile(key)``, which re-derives everything from the informers' stores (level
triggered: a missed or coalesced event cannot leave the world wrong, the next
reconcile fixes it). A key is never reconciled by two workers at once, a key added
while it is being worked on is reconciled again afterwards, and a failing key is
retried with per-key exponential backoff.

It lives in ``apiclient`` because every control-plane component is built from it: the
scheduler and the controller manager are API clients like any other, and neither
imports the other.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from apiclient.backoff import Backoff
from apiclient.client import ApiClient
from apiclient.errors import ConflictError
from apiclient.informer import Informer
from apiclient.resources import Resource

log = logging.getLogger(__name__)


class SharedInformers:
    """One informer per (resource, selectors), shared by every controller that asks."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._informers: dict[tuple[Any, ...], Informer] = {}
        self._started = False

    def informer(self, res: Resource, *, field_selector: str | None = None,
                 label_selector: str | None = None,
                 indexers: Mapping[str, Callable[[dict], Iterable[str]]] | None = None
                 ) -> Informer:
        key = (res, field_selector, label_selector)
        informer = self._informers.get(key)
        if informer is None:
            if self._started:
                raise RuntimeError(f"informer for {res.plural} requested after start()")
            informer = Informer(self.client, res, field_selector=field_selector,
                                label_selector=label_selector, indexers=dict(indexers or {}),
                                name=res.plural)
            self._informers[key] = informer
        elif indexers:
            for name, fn in indexers.items():
                informer.store.add_indexer(name, fn)
        return informer

    def start(self) -> None:
        self._started = True
        for informer in self._informers.values():
            informer.start()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(i.wait_synced(timeout) for i in self._informers.values()))

    async def stop(self) -> None:
        """Stop every informer, also when the caller is itself being cancelled (then one
        informer's re-raised cancellation must not leave the others running)."""
        results = await asyncio.gather(*(i.stop() for i in self._informers.values()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("stopping an informer failed: %s", result)


class WorkQueue:
    """A set-like queue of keys: deduplicated, never handed to two workers at once."""

    def __init__(self, *, base_delay: float = 0.05, max_delay: float = 60.0) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()  # added while processing: requeue when done
        self._backoffs: dict[str, Backoff] = {}
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._timers: set[asyncio.TimerHandle] = set()

    def add(self, key: str) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self.add(key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def add_rate_limited(self, key: str) -> None:
        """Retry ``key`` after a per-key exponential backoff (with jitter)."""
        backoff = self._backoffs.get(key)
        if backoff is None:
            backoff = Backoff(initial=self._base_delay, maximum=self._max_delay)
            self._backoffs[key] = backoff
        self.add_after(key, backoff.next_delay())

    def forget(self, key: str) -> None:
        self._backoffs.pop(key, None)

    async def get(self) -> str:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return self._queue.qsize()

    def shutdown(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


class Controller(abc.ABC):
    """A level-triggered loop: subclasses wire informer handlers to :meth:`enqueue` in
    ``__init__`` and implement :meth:`reconcile`."""

    name = "controller"
    workers = 2

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        self.client = client
        self.informers = informers
        self.queue = WorkQueue()

    def enqueue(self, key: str, *, after: float = 0.0) -> None:
        self.queue.add_after(key, after)

    @abc.abstractmethod
    async def reconcile(self, key: str) -> None:
        """Make the world match the desired state for ``key``; raise to be retried."""

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                   for i in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            self.queue.shutdown()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except ConflictError:  # someone wrote first: expected, just reconcile again
                log.debug("%s: conflict on %s, retrying", self.name, key)
                self.queue.add_rate_limited(key)
            except Exception as exc:  # retried with backoff; the loop never dies
                log.warning("%s: reconciling %s failed (will retry): %s", self.name, key, exc)
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)


ControllerFactory = Callable[[ApiClient, SharedInformers], Controller]


async def run_controllers(kubeconfig: Path, *,
                          factories: Sequence[ControllerFactory]) -> None:
    """Build the loops on one client and one set of shared informers, start the
    informers, and run every loop until cancelled (the way kube-controller-manager runs
    its controllers; ``keelson up`` adds the scheduler to the same set)."""
    if not factories:
        return
    client = ApiClient.from_kubeconfig(kubeconfig)
    informers = SharedInformers(client)
    try:
        controllers = [factory(client, informers) for factory in factories]
        informers.start()
        await informers.wait_synced()
        log.info("control loops running: %s", ", ".join(c.name for c in controllers))
        await asyncio.gather(*(c.run() for c in controllers))
    finally:
        # Shielded: a cancelled runner still closes its informers and HTTP session.
        await asyncio.shield(_shutdown(informers, client))


async def _shutdown(informers: SharedInformers, client: ApiClient) -> None:
    await informers.stop()
    await client.close()
