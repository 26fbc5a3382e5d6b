"""The control plane composed in one process: apiserver + scheduler + controller manager.

Each component is a package of its own with its own entry point (``apiserver.app.serving``,
``scheduler.run``, ``controllers.run``) and they never import each other; this module is
where ``keelson apiserver`` and ``keelson up`` put them side by side, as k3s does. Each
loop runs with its own identity and kubeconfig, written next to the admin one
(``system:kube-scheduler`` in ``scheduler.kubeconfig``, ``system:kube-controller-manager``
in ``controller-manager.kubeconfig``), exactly as it would as a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import controllers
import scheduler
from apiserver.app import APIServer, APIServerOptions, serving
from apiserver.auth import pki
from controllers import ControllerManagerOptions

SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"


def component_kubeconfigs(server: APIServer) -> tuple[Path, Path]:
    """(scheduler, controller-manager) kubeconfigs with their own client certificates."""
    assert server.pki is not None
    data_dir, port = server.options.data_dir, server.options.secure_port
    return (
        pki.ensure_client_kubeconfig(data_dir, server.pki, port=port, name="scheduler",
                                     user=SCHEDULER_USER),
        pki.ensure_client_kubeconfig(data_dir, server.pki, port=port,
                                     name="controller-manager", user=CONTROLLER_MANAGER_USER),
    )


@contextlib.asynccontextmanager
async def control_plane(options: APIServerOptions,
                        manager: ControllerManagerOptions | None
                        ) -> AsyncIterator[APIServer]:
    """A serving apiserver with the scheduler and controllers beside it (none when
    ``manager`` is None, i.e. ``--disable-controllers``); everything stops on exit."""
    async with serving(options) as server:
        if manager is not None:
            scheduler_config, manager_config = await asyncio.to_thread(
                component_kubeconfigs, server)
            server.add_background(asyncio.create_task(scheduler.run(scheduler_config),
                                                      name="scheduler"))
            server.add_background(asyncio.create_task(controllers.run(manager_config, manager),
                                                      name="controller-manager"))
        yield server


async def run_control_plane(options: APIServerOptions,
                            manager: ControllerManagerOptions | None, *,
                            stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set (SIGTERM/SIGINT), then shut down cleanly."""
    async with control_plane(options, manager) as server:
        print(f"keelson apiserver ready: https://{options.bind_address}:{options.secure_port} "
              f"(kubeconfig: {server.kubeconfig})", flush=True)
        await stop.wait()
