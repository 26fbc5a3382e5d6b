"""The control plane composed in one process: apiserver + scheduler + controller manager.

Each component is a package of its own with its own entry point (``apiserver.app.serving``,
``scheduler.run``, ``controllers.run``) and they never import each other; this module is
where ``keelson apiserver`` and ``keelson up`` put them side by side, as k3s does. The
scheduler and the controllers share one API client and one set of informers here, so a
pod is listed and watched once, not twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from apiclient.controller import ControllerFactory, run_controllers
from apiserver.app import APIServer, APIServerOptions, serving
from controllers import ControllerManagerOptions, default_controllers
from scheduler import Scheduler


def control_loops(options: ControllerManagerOptions) -> list[ControllerFactory]:
    """The scheduler and every controller, in start order."""
    return [Scheduler, *default_controllers(options)]


@contextlib.asynccontextmanager
async def control_plane(options: APIServerOptions,
                        controllers: ControllerManagerOptions | None
                        ) -> AsyncIterator[APIServer]:
    """A serving apiserver with the control loops beside it (none when ``controllers``
    is None, i.e. ``--disable-controllers``); everything stops on exit."""
    async with serving(options) as server:
        if controllers is not None:
            loops = run_controllers(server.kubeconfig, factories=control_loops(controllers))
            server.add_background(asyncio.create_task(loops, name="control-loops"))
        yield server


async def run_control_plane(options: APIServerOptions,
                            controllers: ControllerManagerOptions | None, *,
                            stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set (SIGTERM/SIGINT), then shut down cleanly."""
    async with control_plane(options, controllers) as server:
        print(f"keelson apiserver ready: https://{options.bind_address}:{options.secure_port} "
              f"(kubeconfig: {server.kubeconfig})", flush=True)
        await stop.wait()
