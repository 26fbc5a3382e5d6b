"""Fixtures for the scheduler / node lifecycle / node IPAM e2e tests.

Each test gets its own real ``keelson apiserver`` (nodes are cluster-scoped, so tests
sharing one server would see each other's nodes) and runs the loops under test
in-process with ``run_controllers``. There are no node agents: nodes are plain Node
objects (plus Leases), and a "kubelet" is the test patching pod status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from apiclient.client import ApiClient
from apiclient.controller import ControllerFactory, run_controllers
from apiclient.meta import utc_now, utc_now_micro
from apiclient.resources import LEASES, NODES, PODS
from tests.support.apiserver import ApiServer, running_apiserver

NAMESPACE = "default"


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[ApiServer]:
    with running_apiserver(tmp_path / "apiserver") as server:
        yield server


@pytest.fixture
async def client(apiserver: ApiServer) -> AsyncIterator[ApiClient]:
    async with ApiClient.from_kubeconfig(apiserver.kubeconfig) as api:
        yield api


@contextlib.asynccontextmanager
async def controllers_running(server: ApiServer, factories: Sequence[ControllerFactory]
                              ) -> AsyncIterator[None]:
    task = asyncio.create_task(run_controllers(server.kubeconfig, factories=factories))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0,
                     what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


def node_body(name: str, *, cpu: str = "2", memory: str = "4Gi", pods: str = "110",
              labels: dict[str, str] | None = None, taints: list[dict] | None = None,
              ready: bool = True) -> dict:
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              **(labels or {})}},
        "spec": {"taints": taints or []},
        "status": {"capacity": allocatable, "allocatable": allocatable,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "reason": "KubeletReady", "message": "ready",
                                   "lastHeartbeatTime": utc_now(),
                                   "lastTransitionTime": utc_now()}]},
    }


async def create_node(api: ApiClient, name: str, **options: Any) -> dict:
    """Create a Node and its status (status is only written through /status)."""
    body = node_body(name, **options)
    created = await api.create(NODES, body)
    created["status"] = body["status"]
    return await api.replace(NODES, created, subresource="status")


async def renew_lease(api: ApiClient, node: str) -> None:
    """What the agent's heartbeat does: create or renew kube-node-lease/<node>."""
    spec = {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": utc_now_micro()}
    try:
        lease = await api.get(LEASES, node, namespace="kube-node-lease")
    except Exception:
        await api.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                  "metadata": {"name": node, "namespace": "kube-node-lease"},
                                  "spec": spec}, namespace="kube-node-lease")
        return
    lease["spec"] = {**lease.get("spec", {}), **spec}
    await api.replace(LEASES, lease, namespace="kube-node-lease")


def pod_body(name: str, *, cpu: str | None = None, memory: str | None = None,
             labels: dict[str, str] | None = None, **spec: Any) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {"app": "kt"}},
        "spec": {"containers": [{"name": "main", "image": "localhost/keelson/busybox:1",
                                 "resources": {"requests": requests}}], **spec},
    }


async def create_pod(api: ApiClient, name: str, **options: Any) -> dict:
    return await api.create(PODS, pod_body(name, **options), namespace=NAMESPACE)


async def get_pod(api: ApiClient, name: str) -> dict:
    return await api.get(PODS, name, namespace=NAMESPACE)
