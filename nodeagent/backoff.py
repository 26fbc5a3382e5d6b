"""Per-key exponential back-off for restarts and image pulls (kubelet flowcontrol.Backoff).

A container's first restart is immediate; each further restart waits ``initial`` seconds,
doubling up to ``maximum``, measured from when the container last finished. A container
that ran for at least ``reset_after`` seconds before dying starts over from nothing. Time is
passed in explicitly so the rules are tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_SECONDS = 10.0
MAXIMUM_SECONDS = 300.0
RESET_AFTER_SECONDS = 600.0


@dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(
        self,
        *,
        initial: float = INITIAL_SECONDS,
        maximum: float = MAXIMUM_SECONDS,
        reset_after: float = RESET_AFTER_SECONDS,
    ) -> None:
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
        """A container ran this long before dying; long enough runs forget the history."""
        if seconds >= self.reset_after:
            self._entries.pop(key, None)

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key of a pod (keys are ``<pod uid>/...``) once the pod is gone."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def current_delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return 0.0 if entry is None else entry.delay
