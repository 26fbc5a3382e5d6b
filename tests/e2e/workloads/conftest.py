"""Fixtures for the workload controllers against a real ``keelson apiserver``.

One apiserver per module (controllers are not run by it: its CONTROLLERS list does not
include ours yet, and the tests want them in-process anyway), a namespace per test, and
:class:`Cluster`: the test's ReplicaSet, Deployment, EndpointSlice, Endpoints and garbage
collector loops running in the test's event loop, plus a simulated kubelet. There are no
node agents here: the simulated kubelet marks the namespace's pods Running and Ready with
an IP of their own (or leaves them not ready while ``cluster.ready`` is False) and finishes
the graceful deletion of bound pods, all through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from apiclient.client import ApiClient
from apiclient.controller import run_controllers
from apiclient.errors import ConflictError, NotFoundError
from apiclient.informer import Informer
from apiclient.meta import utc_now
from apiclient.resources import NAMESPACES, PODS
from controllers.deployment import DeploymentController
from controllers.endpoints import EndpointsController
from controllers.endpointslice import EndpointSliceController
from controllers.garbagecollector import GarbageCollector
from controllers.replicaset import ReplicaSetController
from tests.support.apiserver import ApiServer, running_apiserver, unique

T = TypeVar("T")
ALL_CONTROLLERS = (ReplicaSetController, DeploymentController, EndpointSliceController,
                   EndpointsController, GarbageCollector)
_ip_counter = itertools.count(2)


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with running_apiserver(tmp_path_factory.mktemp("apiserver")) as server:
        yield server


class Cluster:
    def __init__(self, server: ApiServer, client: ApiClient, namespace: str) -> None:
        self.server = server
        self.client = client
        self.namespace = namespace
        self.ready = True  # what the simulated kubelet reports for new pods
        self.finish_deletions = True  # delete terminating pods at once, as a kubelet would
        self.not_started: set[str] = set()  # pod names the simulated kubelet leaves alone

    async def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                      timeout: float = 30.0) -> Any:
        """kubectl in a thread, so the controllers in this loop keep running meanwhile."""
        return await asyncio.to_thread(self.server.kubectl, "-n", self.namespace, *args,
                                       check=check, input=input, timeout=timeout)

    async def pods(self, **selectors: Any) -> list[dict]:
        listing = await self.client.list(PODS, namespace=self.namespace, **selectors)
        return listing["items"]

    async def simulate_kubelet(self, pod: dict) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            if self.finish_deletions:
                with contextlib.suppress(NotFoundError):
                    await self.client.delete(PODS, meta["name"], namespace=self.namespace,
                                             grace_period_seconds=0)
            return
        if (pod.get("status") or {}).get("podIP") or meta["name"] in self.not_started:
            return
        await self.set_pod_status(meta["name"], ready=self.ready)

    async def set_pod_status(self, name: str, *, ready: bool,
                             ip: str | None = None) -> None:
        number = next(_ip_counter)
        ip = ip or f"10.250.{number // 250}.{number % 250 + 1}"
        now = utc_now()
        status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                  "conditions": [
                      {"type": "Ready", "status": "True" if ready else "False",
                       "lastTransitionTime": now},
                      {"type": "ContainersReady", "status": "True" if ready else "False",
                       "lastTransitionTime": now}]}
        with contextlib.suppress(NotFoundError, ConflictError):
            await self.client.patch(PODS, name, {"status": status}, namespace=self.namespace,
                                    subresource="status")

    async def make_ready(self, name: str) -> None:
        pod = await self.client.get(PODS, name, namespace=self.namespace)
        await self.set_pod_status(name, ready=True, ip=pod["status"].get("podIP"))


async def eventually(probe: Callable[[], Awaitable[T]], *, timeout: float = 15.0,
                     interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns a truthy value or raises nothing; the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            result = await probe()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        else:
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"still {result!r} after {timeout}s")
        await asyncio.sleep(interval)


@pytest.fixture
async def cluster(apiserver: ApiServer) -> AsyncIterator[Cluster]:
    namespace = unique()
    client = ApiClient.from_kubeconfig(apiserver.kubeconfig)
    await client.create(NAMESPACES,
                        {"metadata": {"name": namespace}})
    cluster = Cluster(apiserver, client, namespace)
    kubelet = Informer(client, PODS, namespace=namespace)
    kubelet.add_handler(on_add=cluster.simulate_kubelet,
                        on_update=lambda _old, new: cluster.simulate_kubelet(new))
    controllers = asyncio.create_task(run_controllers(apiserver.kubeconfig,
                                                      factories=ALL_CONTROLLERS))
    kubelet.start()
    try:
        await kubelet.wait_synced(10)
        yield cluster
    finally:
        controllers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await controllers
        await kubelet.stop()
        with contextlib.suppress(Exception):
            await client.delete(NAMESPACES,
                                namespace)
        await client.close()
