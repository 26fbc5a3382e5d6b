"""Control loops that run inside ``keelson apiserver`` (unless ``--disable-controllers``).

Every controller is a level-triggered loop built on apiclient informers (see
:mod:`apiserver.controllers.base`) and talks to the apiserver over its own HTTPS API
with the admin credentials, exactly like an external controller would: the loops use
no back door into storage, so they could run in another process unchanged.
:data:`CONTROLLERS` lists what ``keelson apiserver`` runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from apiclient.client import ApiClient
from apiserver.controllers.base import Controller, SharedInformers

log = logging.getLogger(__name__)

ControllerFactory = Callable[[ApiClient, SharedInformers], Controller]

CONTROLLERS: tuple[ControllerFactory, ...] = ()


async def run_controllers(kubeconfig: Path, *,
                          factories: Sequence[ControllerFactory] = CONTROLLERS) -> None:
    """Build the controllers, start their shared informers, run until cancelled."""
    if not factories:
        return
    client = ApiClient.from_kubeconfig(kubeconfig)
    informers = SharedInformers(client)
    try:
        controllers = [factory(client, informers) for factory in factories]
        informers.start()
        await informers.wait_synced()
        log.info("controllers running: %s", ", ".join(c.name for c in controllers))
        await asyncio.gather(*(c.run() for c in controllers))
    finally:
        # Shielded: a cancelled runner still closes its informers and HTTP session.
        await asyncio.shield(_shutdown(informers, client))


async def _shutdown(informers: SharedInformers, client: ApiClient) -> None:
    await informers.stop()
    await client.close()


def start_controllers(server: Any) -> list[asyncio.Task[None]]:
    """The tasks ``keelson apiserver`` owns (cancelled on shutdown)."""
    return [asyncio.create_task(run_controllers(server.kubeconfig), name="controllers")]
