"""The scheduler: binds pending pods to nodes, like kube-scheduler (see
:mod:`scheduler.scheduler`).

``Scheduler`` has a controller's constructor ``(client, informers)``, so the class itself
is a factory for :func:`apiclient.controller.run_controllers`; ``keelson scheduler`` runs
it alone (:func:`run`), ``keelson up`` beside the controllers on shared informers.
"""

from __future__ import annotations

from pathlib import Path

from apiclient.controller import run_controllers

from .scheduler import DEFAULT_SCHEDULER_NAME, Scheduler

__all__ = ["DEFAULT_SCHEDULER_NAME", "Scheduler", "run"]


async def run(kubeconfig: Path) -> None:
    """Schedule pods for the apiserver in ``kubeconfig`` until cancelled."""
    await run_controllers(kubeconfig, factories=[Scheduler])
