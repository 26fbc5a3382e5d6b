"""Exponential back-off with jitter: the one implementation every retry loop uses.

Two shapes, as client-go has them:

- :class:`Backoff` (``wait.Backoff``): one retry sequence. ``next_delay()`` returns
  ``initial * factor**n``, stretched by a random ``[0, jitter)`` fraction so that many
  clients failing together do not retry in lock-step, capped at ``maximum``;
  ``reset()`` after a success starts over. Informers, the watch cache, lease
  renewal, node registration and the runtime event stream use it.
- :class:`KeyedBackoff` (``flowcontrol.Backoff``): one delay per key with no jitter, and
  time passed in explicitly so that the rules are tested without sleeping. The kubelet
  loop uses it for container restarts (CrashLoopBackOff) and image pulls.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "KeyedBackoff"]


class Backoff:
    """One retry sequence: ``initial``, growing by ``factor`` per failure, jittered, capped."""

    def __init__(self, *, initial: float, maximum: float, factor: float = 2.0,
                 jitter: float = 0.2, rng: Callable[[], float] = random.random) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or jitter < 0:
            raise ValueError("back-off needs 0 < initial <= maximum, factor >= 1, jitter >= 0")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self.failures = 0
        self.last_delay = 0.0

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        base = self.initial * self.factor ** min(self.failures, 64)
        self.failures += 1
        self.last_delay = min(self.maximum, base * (1.0 + self.jitter * self._rng()))
        return self.last_delay

    async def sleep(self) -> float:
        """Wait ``next_delay()`` seconds; returns how long it waited."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        """A success: the next failure waits ``initial`` again."""
        self.failures = 0


@dataclass
class _Entry:
    delay: float
    last_update: float


class KeyedBackoff:
    """Per-key delays: the first attempt is free, then ``initial`` doubling to ``maximum``.

    A key whose work ran for at least ``reset_after`` seconds (a container that stayed up)
    starts over from nothing.
    """

    def __init__(self, *, initial: float, maximum: float, reset_after: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.reset_after = reset_after
        self._entries: dict[str, _Entry] = {}

    def remaining(self, key: str, *, now: float, since: float | None = None) -> float:
        """Seconds to wait before the next attempt (0 = go now), counted from ``since``
        (when the container last finished) or else from the last recorded attempt."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        start = entry.last_update if since is None else since
        return max(0.0, start + entry.delay - now)

    def attempted(self, key: str, *, now: float) -> None:
        """Record an attempt (a restart, a pull): the next wait doubles."""
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(self.initial, now)
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.last_update = now

    def ran_for(self, key: str, seconds: float) -> None:
        """The work ran this long before failing; long enough runs forget the history."""
        if seconds >= self.reset_after:
            self._entries.pop(key, None)

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key that starts with ``prefix`` (e.g. all of a pod's, ``<uid>/``)."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def current_delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return 0.0 if entry is None else entry.delay
