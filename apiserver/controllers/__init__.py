"""Control loops that run inside ``keelson apiserver`` (unless ``--disable-controllers``).

Every controller is a level-triggered loop built on apiclient informers (see
:mod:`apiserver.controllers.base`) and talks to the apiserver over its own HTTPS API
with the admin credentials, exactly like an external controller would: the loops use
no back door into storage, so they could run in another process unchanged.
:func:`default_controllers` lists what ``keelson apiserver`` runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from apiclient.client import ApiClient
from apiserver.controllers.base import Controller, SharedInformers

log = logging.getLogger(__name__)

ControllerFactory = Callable[[ApiClient, SharedInformers], Controller]



def default_controllers(*, cluster_cidr: str, node_monitor_grace_period: float = 40.0
                        ) -> list[ControllerFactory]:
    # Imported here: the controller modules import this package (for .base) themselves.
    from apiserver.controllers.deployment import DeploymentController
    from apiserver.controllers.endpoints import EndpointsController
    from apiserver.controllers.endpointslice import EndpointSliceController
    from apiserver.controllers.garbagecollector import GarbageCollector
    from apiserver.controllers.nodeipam import NodeIpamController
    from apiserver.controllers.nodelifecycle import NodeLifecycleController
    from apiserver.controllers.replicaset import ReplicaSetController
    from apiserver.scheduler import Scheduler

    return [
        Scheduler,
        functools.partial(NodeLifecycleController,
                          grace_period_seconds=node_monitor_grace_period),
        functools.partial(NodeIpamController, cluster_cidr=cluster_cidr),
        ReplicaSetController,
        DeploymentController,
        EndpointSliceController,
        EndpointsController,
        GarbageCollector,
    ]


async def run_controllers(kubeconfig: Path, *,
                          factories: Sequence[ControllerFactory]) -> None:
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
    factories = default_controllers(
        cluster_cidr=server.options.cluster_cidr,
        node_monitor_grace_period=server.options.node_monitor_grace_period)
    return [asyncio.create_task(run_controllers(server.kubeconfig, factories=factories),
                                name="controllers")]
