"""The controller manager: level-triggered loops that act through the API, like
kube-controller-manager.

Every controller is built on :mod:`apiclient.controller` (shared informers, a work queue,
workers) and talks to the apiserver over HTTPS with its own kubeconfig, exactly like an
external controller: the loops use no back door into storage. ``keelson controller-manager``
runs them alone (:func:`run`); ``keelson apiserver`` / ``keelson up`` run them in the same
process as the apiserver, composed in ``keelson/``.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from apiclient.controller import ControllerFactory, run_controllers

__all__ = ["ControllerManagerOptions", "default_controllers", "run"]


@dataclass(frozen=True)
class ControllerManagerOptions:
    """The controller manager's flags (``keelson controller-manager``)."""

    cluster_cidr: str = "10.244.0.0/16"
    node_monitor_grace_period: float = 40.0  # seconds without heartbeat before Unknown

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_network(self.cluster_cidr, strict=True)
        except ValueError as exc:
            raise ValueError(f"invalid --cluster-cidr {self.cluster_cidr!r}: {exc}") from None
        if self.node_monitor_grace_period <= 0:
            raise ValueError(f"invalid --node-monitor-grace-period "
                             f"{self.node_monitor_grace_period}: must be positive seconds")


def default_controllers(options: ControllerManagerOptions) -> list[ControllerFactory]:
    """What the controller manager runs, in start order."""
    # Imported here: the controller modules are only loaded by a process that runs them.
    from controllers.clusterroleaggregation import ClusterRoleAggregationController
    from controllers.deployment import DeploymentController
    from controllers.endpoints import EndpointsController
    from controllers.endpointslice import EndpointSliceController
    from controllers.garbagecollector import GarbageCollector
    from controllers.nodeipam import NodeIpamController
    from controllers.nodelifecycle import NodeLifecycleController
    from controllers.replicaset import ReplicaSetController
    from controllers.rootcacertpublisher import RootCACertPublisher
    from controllers.serviceaccounts import ServiceAccountsController

    return [
        functools.partial(NodeLifecycleController,
                          grace_period_seconds=options.node_monitor_grace_period),
        functools.partial(NodeIpamController, cluster_cidr=options.cluster_cidr),
        ReplicaSetController,
        DeploymentController,
        EndpointSliceController,
        EndpointsController,
        GarbageCollector,
        ClusterRoleAggregationController,
        ServiceAccountsController,
        RootCACertPublisher,
    ]


async def run(kubeconfig: Path, options: ControllerManagerOptions) -> None:
    """Run every controller against the apiserver in ``kubeconfig`` until cancelled."""
    await run_controllers(kubeconfig, factories=default_controllers(options))
