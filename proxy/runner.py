"""A coalescing runner (kube-proxy's BoundedFrequencyRunner, for asyncio).

Any number of ``request()`` calls between two runs cause one run. Runs are at least
``min_interval`` apart (bursts of watch events cost one sync), at most ``max_interval``
apart (the periodic resync), and a failed run (the function returned False or raised) is
retried after ``retry_interval`` unless something requests a run sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class CoalescingRunner:
    def __init__(
        self,
        function: Callable[[], Awaitable[bool]],
        *,
        min_interval: float,
        max_interval: float,
        retry_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._function = function
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.retry_interval = retry_interval
        self._clock = clock
        self._requested = asyncio.Event()
        self._requested.set()  # the first run happens at once
        self._last_start = -math.inf
        self._retry_at = math.inf

    def request(self) -> None:
        """Ask for a run as soon as ``min_interval`` allows; never blocks."""
        self._requested.set()

    async def _wait_for_reason(self) -> None:
        deadline = min(self._last_start + self.max_interval, self._retry_at)
        timeout = max(0.0, deadline - self._clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._requested.wait(), timeout=timeout)

    async def loop(self, *, iterations: int | None = None) -> None:
        """Run until cancelled (or ``iterations`` runs, a seam for tests)."""
        done = 0
        while iterations is None or done < iterations:
            await self._wait_for_reason()
            too_soon = self._last_start + self.min_interval - self._clock()
            if too_soon > 0:
                await asyncio.sleep(too_soon)
            self._requested.clear()
            self._last_start = self._clock()
            try:
                ok = await self._function()
            except Exception:
                log.exception("sync failed")
                ok = False
            self._retry_at = math.inf if ok else self._clock() + self.retry_interval
            done += 1
