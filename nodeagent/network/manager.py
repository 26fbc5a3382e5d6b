"""Pod networking as the pod workers see it: allocate an IP, wire the sandbox, undo both.

Combines the blocking bridge (netlink) and IPAM (files) behind an async facade that runs
them on threads. Its invariant is the issue's "no leaked and no duplicated IPs, ever": an
address is claimed before wiring and released when wiring fails, and after every failed
set-up (and at start) the IPAM store is reconciled against the sandboxes that really run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from nodeagent.network.bridge import PodInterface
from nodeagent.network.ipam import HostLocalIpam

log = logging.getLogger(__name__)
T = TypeVar("T")


class Bridge(Protocol):
    gateway: str

    def ensure_bridge(self) -> None: ...

    def setup_pod(self, *, pod_uid: str, netns_path: str, address: str) -> PodInterface: ...

    def teardown_pod(self, *, pod_uid: str) -> bool: ...

    def pod_veths(self) -> set[str]: ...


class PodNetworkManager:
    def __init__(
        self,
        *,
        bridge: Bridge,
        ipam: HostLocalIpam,
        live_sandboxes: Callable[[], Awaitable[set[str]]],
    ) -> None:
        self.bridge = bridge
        self.ipam = ipam
        self._live_sandboxes = live_sandboxes
        # Own pool: a cancelled worker cannot stop a netlink call half-way, so close()
        # waits for calls still running instead of letting them finish after shutdown.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="podnet")

    async def _run(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, **kwargs))

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def address_of(self, sandbox_id: str) -> str | None:
        return self.ipam.address_of(sandbox_id)

    async def setup(self, *, pod_uid: str, sandbox_id: str, sandbox_pid: int) -> str:
        """Give the sandbox its IP on the bridge; on failure nothing is left behind."""
        address = await self._run(self.ipam.allocate, owner=sandbox_id)
        try:
            await self._run(
                self.bridge.setup_pod,
                pod_uid=pod_uid,
                netns_path=f"/proc/{sandbox_pid}/ns/net",
                address=address,
            )
        except Exception:
            await self._run(self.ipam.release_owner, owner=sandbox_id)
            await self.reconcile()
            raise
        return address

    async def teardown(self, *, pod_uid: str, sandbox_ids: list[str]) -> None:
        await self._run(self.bridge.teardown_pod, pod_uid=pod_uid)
        for sandbox_id in sandbox_ids:
            await self._run(self.ipam.release_owner, owner=sandbox_id)

    async def reconcile(self) -> list[str]:
        """Release addresses whose sandbox no longer runs; returns the released addresses."""
        snapshot_time = time.time()
        try:
            live = await self._live_sandboxes()
        except Exception as err:  # without a trustworthy list, releasing would be a guess
            log.warning("IPAM reconcile skipped: cannot list sandboxes: %s", err)
            return []
        released = await self._run(
            self.ipam.reconcile, live_owners=live, snapshot_time=snapshot_time
        )
        if released:
            log.info("IPAM reconcile released %s", ", ".join(released))
        return released
