"""Control loops that run inside ``keelson apiserver`` (unless ``--disable-controllers``).

Each controller is a level-triggered loop built on the apiclient informers. The
scheduler and the workload controllers arrive with their own issue; this package is
where they plug in: :func:`start_controllers` returns the tasks the server owns.
"""

from __future__ import annotations

import asyncio
from typing import Any


def start_controllers(server: Any) -> list[asyncio.Task[None]]:
    return []
