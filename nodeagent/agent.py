"""The node agent's composition: wire runtime, network, API, workers, PLEG and reporters.

``run_agent`` is what ``keelson agent`` calls. Start-up order matters for the restart
promises: the Node is registered first (its ``spec.podCIDR`` decides the network), IPAM is
reconciled against sandboxes that really run before any pod is synced, the pod informer
(field selector ``spec.nodeName=<node>``) must have synced before containers of unknown
pods are removed, and only then do pod workers see PLEG events. A Services informer (kept
compact: name, cluster IP, ports) feeds the service env vars of new containers; it gets a
few seconds to sync before the first pod is seen. Running containers are
adopted as they are. Cancelling ``run_agent`` stops the agent and leaves pods running, as
kubelet does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from apiclient.backoff import Backoff
from apiclient.client import ApiClient
from apiclient.errors import ApiError, ForbiddenError, TransportError, UnauthorizedError
from apiclient.informer import Informer
from apiclient.resources import NODES, PODS, SERVICES
from apiclient.serving import metrics_handler, serve
from nodeagent.api import PodApi
from nodeagent.gc import run_gc
from nodeagent.metrics import AgentMetrics
from nodeagent.network.bridge import DEFAULT_BRIDGE, BridgeNetwork
from nodeagent.network.ipam import HostLocalIpam
from nodeagent.network.manager import PodNetworkManager
from nodeagent.network.netlink import NetworkError
from nodeagent.node_status import NodeReporter, default_route_address
from nodeagent.pleg import Pleg
from nodeagent.pod_worker import NodeContext, PodWorkers
from nodeagent.runtime.docker import DockerRuntime
from nodeagent.runtime.interface import (
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    ContainerSummary,
)
from nodeagent.server import (
    ServingCertError,
    build_app,
    ensure_serving_cert,
    start_kubelet_server,
)
from nodeagent.service_env import ServiceLister, compact_service

log = logging.getLogger(__name__)

DEFAULT_POD_INFRA_IMAGE = "localhost/keelson/pause:1"
SERVICES_SYNC_WAIT_SECONDS = 10.0  # then pods start anyway; env waits for the services


class AgentError(Exception):
    """The agent cannot start; the message is one sentence a person can act on."""


@dataclass
class AgentOptions:
    """Every flag of ``keelson agent`` (INTERFACE.md) plus ``--max-pods``."""

    kubeconfig: str
    node_name: str = ""  # "" = the lower-cased hostname
    data_dir: str = "/var/lib/keelson/agent"
    proxy_mode: str = "iptables"
    kubelet_port: int = 10250
    metrics_bind_address: str = "127.0.0.1:10249"
    healthz_bind_address: str = "0.0.0.0:10256"
    pod_infra_image: str = DEFAULT_POD_INFRA_IMAGE
    pod_cidr: str | None = None
    max_pods: int = 110
    bridge_name: str = DEFAULT_BRIDGE  # not a flag; lets tests use their own bridge

    @property
    def resolved_node_name(self) -> str:
        return self.node_name or socket.gethostname().lower()


async def _start_metrics_server(
    address: str, registry: CollectorRegistry, healthy: Callable[[], bool]
) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        ok = healthy()
        return web.Response(status=200 if ok else 503, text="ok" if ok else "PLEG is stale")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry))
    app.router.add_get("/healthz", healthz)
    return await serve(app, address)


async def _register(reporter: NodeReporter) -> None:
    """Register the Node, waiting for the API server (retry 200 ms doubling to 7 s)."""
    backoff = Backoff(initial=0.2, maximum=7.0)
    while True:
        try:
            await reporter.register()
            return
        except (UnauthorizedError, ForbiddenError) as err:
            raise AgentError(
                f"the API server refused to register node {reporter.node_name}: {err}"
            ) from err
        except (ApiError, TransportError) as err:
            delay = backoff.next_delay()
            log.warning("cannot register node yet, retrying in %.1fs: %s", delay, err)
            await asyncio.sleep(delay)


POD_CIDR_WAIT_SECONDS = 60.0


def agent_id(data_dir: Path) -> str:
    """This agent's identity on the container runtime, kept in its data dir so a restarted
    agent adopts exactly the containers it made (and never another agent's)."""
    path = data_dir / "agent-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        new_id = uuid.uuid4().hex[:16]
        path.write_text(new_id + "\n")
        return new_id


async def _wait_for_pod_cidr(client: ApiClient, node_name: str, node: dict | None) -> str:
    """Like kubelet: a freshly registered node waits for node IPAM to assign its pod
    CIDR, by watching its own Node object from the version it registered."""
    log.info("waiting for the control plane to assign node %s a pod CIDR", node_name)
    rv = ((node or {}).get("metadata") or {}).get("resourceVersion")
    deadline = asyncio.get_running_loop().time() + POD_CIDR_WAIT_SECONDS
    while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            async for event in client.watch(NODES, field_selector=f"metadata.name={node_name}",
                                            resource_version=rv,
                                            timeout_seconds=max(1, int(remaining))):
                cidr = ((event.object.get("spec") or {}).get("podCIDR"))
                if cidr:
                    return cidr
                rv = (event.object.get("metadata") or {}).get("resourceVersion", rv)
        except (ApiError, TransportError) as err:
            log.warning("watching node %s for its pod CIDR: %s", node_name, err)
            await asyncio.sleep(1.0)
            rv = None
    raise AgentError(
        f"node {node_name} has no spec.podCIDR after {POD_CIDR_WAIT_SECONDS:.0f}s and no "
        "--pod-cidr was given; pass --pod-cidr or enable node IPAM in the control plane"
    )


async def _running_sandboxes(runtime: ContainerRuntime) -> set[str]:
    return {
        c.id
        for c in await runtime.list_containers()
        if c.is_sandbox and c.state is ContainerState.RUNNING
    }


async def run_agent(
    options: AgentOptions,
    client: ApiClient,
    *,
    registry: CollectorRegistry | None = None,
    runtime: ContainerRuntime | None = None,
) -> None:
    """Run the node agent until cancelled; on cancel pods keep running."""
    node_name = options.resolved_node_name
    metrics = AgentMetrics(registry if registry is not None else CollectorRegistry())
    data_dir = Path(options.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    runtime = runtime or DockerRuntime(observer=metrics.observe_runtime_operation,
                                       owner=agent_id(data_dir))
    async with contextlib.AsyncExitStack() as stack:
        # Every resource registers its own clean-up as soon as it exists; the stack runs all
        # of them even when one fails, in reverse order, so nothing (a port, a task, a
        # thread pool) outlives the agent.
        stack.push_async_callback(runtime.close)
        try:
            runtime_version = await runtime.version()
        except ContainerRuntimeError as err:
            raise AgentError(f"cannot talk to the container runtime: {err}") from err

        pleg: Pleg | None = None

        def healthy() -> bool:
            return pleg is not None and pleg.healthy()

        reporter = NodeReporter(
            client,
            node_name=node_name,
            max_pods=options.max_pods,
            kubelet_port=options.kubelet_port,
            data_dir=options.data_dir,
            runtime_version=lambda: runtime_version,
            runtime_healthy=healthy,
        )
        await _register(reporter)
        pod_cidr = options.pod_cidr or reporter.pod_cidr or await _wait_for_pod_cidr(
            client, node_name, reporter.node)

        bridge = BridgeNetwork(pod_cidr=pod_cidr, bridge=options.bridge_name)
        try:
            await asyncio.to_thread(bridge.ensure_bridge)
        except NetworkError as err:
            raise AgentError(f"cannot set up the pod bridge {options.bridge_name}: {err}") from err
        network = PodNetworkManager(
            bridge=bridge,
            ipam=HostLocalIpam(data_dir, pod_cidr),
            live_sandboxes=lambda: _running_sandboxes(runtime),
        )
        stack.push_async_callback(network.close)
        await network.reconcile()

        host_ip = await asyncio.to_thread(default_route_address)
        api = PodApi(client, node_name=node_name)
        stack.push_async_callback(api.close)
        services_informer = Informer(
            client, SERVICES, name="agent-services", transform=compact_service
        )
        services = ServiceLister(
            services_informer.store, synced=lambda: services_informer.has_synced
        )
        stack.push_async_callback(services_informer.stop)
        services_informer.start()
        context = NodeContext(
            runtime=runtime,
            network=network,
            api=api,
            node_name=node_name,
            host_ip=host_ip,
            pod_infra_image=options.pod_infra_image,
            data_dir=data_dir,
            metrics=metrics,
            services=services,
        )
        workers = PodWorkers(context)
        stack.push_async_callback(workers.stop)
        informer = Informer(
            client, PODS, field_selector=f"spec.nodeName={node_name}", name="agent-pods"
        )
        informer.add_handler(
            on_add=workers.update_pod,
            on_update=lambda _old, new: workers.update_pod(new),
            on_delete=workers.remove_pod,
        )

        def observe_relist(seconds: float, containers: list[ContainerSummary]) -> None:
            metrics.observe_relist(seconds, containers, now=time.time())

        pleg = Pleg(runtime, workers.wake, observe_relist=observe_relist)
        stack.push_async_callback(informer.stop)
        try:
            await services_informer.wait_synced(timeout=SERVICES_SYNC_WAIT_SECONDS)
        except TimeoutError:
            log.warning("services not listed after %.0fs; new containers wait for them",
                        SERVICES_SYNC_WAIT_SECONDS)
        informer.start()
        await informer.wait_synced()
        known = {pod["metadata"]["uid"] for pod in informer.store.list()}
        await workers.cleanup_orphans(known)
        try:
            metrics_runner = await _start_metrics_server(
                options.metrics_bind_address, metrics.registry, healthy
            )
        except OSError as err:
            raise AgentError(
                f"cannot serve metrics on {options.metrics_bind_address}: {err.strerror}"
            ) from err
        stack.push_async_callback(metrics_runner.cleanup)
        try:
            cert, key = await asyncio.to_thread(
                ensure_serving_cert,
                data_dir / "pki",
                node_name=node_name,
                addresses=[host_ip] if host_ip else [],
            )
        except ServingCertError as err:
            raise AgentError(str(err)) from err
        try:
            kubelet_runner = await start_kubelet_server(
                build_app(runtime=runtime, pods=informer.store.list, healthy=healthy),
                port=options.kubelet_port,
                cert=cert,
                key=key,
                client_ca=client.config.ca_data,
            )
        except OSError as err:
            raise AgentError(
                f"cannot serve the kubelet API on port {options.kubelet_port}: {err.strerror}"
            ) from err
        stack.push_async_callback(kubelet_runner.cleanup)
        log.info("node agent %s running (pod CIDR %s)", node_name, pod_cidr)
        async with asyncio.TaskGroup() as group:
            group.create_task(pleg.run(), name="pleg")
            group.create_task(reporter.run(), name="node-status")
            group.create_task(
                run_gc(runtime, protected_images={options.pod_infra_image}), name="gc"
            )
