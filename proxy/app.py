"""run_proxy: the composition root of the service proxy (``keelson proxy`` / inside the agent).

Order matters: the safety route exists before any rule is written (an unmatched Service IP
never leaves the node), sysctls are set, the backend is chosen, informers for Services,
EndpointSlices and this Node list and watch, and the first sync waits until all of them
have synced, so the first rules already describe the whole cluster. On exit nothing is
cleaned up: like kube-proxy, the rules stay and keep serving while the proxy restarts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from apiclient import resources
from apiclient.client import ApiClient
from apiclient.informer import Informer
from apiclient.serving import metrics_handler, serve
from proxy import commands, conntrack, objects, sysctls
from proxy.healthz import ProxyHealth, ServiceHealthServers, healthz_app
from proxy.iptables.render import NodeInfo
from proxy.iptables.restore import Iptables, detect_backend
from proxy.metrics import ProxyMetrics
from proxy.options import ProxyOptions
from proxy.proxier import Proxier

log = logging.getLogger(__name__)


def node_info(
    options: ProxyOptions, node: Mapping[str, Any] | None, *, nodeport_addresses: tuple[str, ...]
) -> NodeInfo:
    pod_cidr = ((node or {}).get("spec") or {}).get("podCIDR")
    return NodeInfo(
        name=options.node_name,
        cluster_cidr=options.cluster_cidr or pod_cidr,
        nodeport_addresses=nodeport_addresses,
        nodeport_localhost=options.nodeport_localhost,
        masquerade_all=options.masquerade_all,
    )


def metrics_app(registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry))
    return app


class NodeSetupError(Exception):
    """The proxy could not prepare the node (safety route, addresses); the message says why."""


async def _netlink_in_child(options: ProxyOptions) -> tuple[str, ...]:
    """Safety route, then this node's addresses in --nodeport-addresses, done by
    ``python -m proxy.netlink`` (this process never imports pyroute2: see proxy/netlink.py)."""
    argv = [sys.executable, "-m", "proxy.netlink", "prepare", options.service_cidr,
            *options.nodeport_addresses]  # fmt: skip
    result = await commands.run(argv, netns=options.netns)
    if not result.ok:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise NodeSetupError(lines[-1] if lines else f"{argv} exited {result.returncode}")
    return tuple(json.loads(result.stdout)["addresses"])


async def prepare_node(options: ProxyOptions) -> tuple[str, tuple[str, ...]]:
    """Safety route, sysctls, backend choice: everything before the first rule. Returns
    the iptables backend and the node addresses for NodePorts (empty: every address)."""
    addresses = await _netlink_in_child(options)
    settings = sysctls.wanted(nodeport_localhost=options.nodeport_localhost)
    await asyncio.to_thread(
        sysctls.apply, settings, state_dir=options.state_dir, netns=options.netns
    )
    if options.iptables_backend:
        return options.iptables_backend, addresses
    return await asyncio.to_thread(detect_backend, netns=options.netns), addresses


async def run_proxy(
    options: ProxyOptions,
    client: ApiClient,
    *,
    registry: CollectorRegistry | None = None,
    retry_interval: float = 5.0,
) -> None:
    """Run the proxy until cancelled. ``registry``: serve metrics elsewhere (the agent)."""
    serve_metrics = registry is None and bool(options.metrics_bind_address)
    registry = registry if registry is not None else CollectorRegistry()
    backend, addresses = await prepare_node(options)
    log.info("service proxy: mode %s, iptables backend %s", options.mode, backend)

    def node_facts(node: Mapping[str, Any] | None) -> NodeInfo:
        return node_info(options, node, nodeport_addresses=addresses)

    health = ProxyHealth(timeout=2 * options.sync_period)
    health_servers = ServiceHealthServers(host=options.health_check_bind_host)
    proxier = Proxier(
        node=node_facts(None),
        iptables=Iptables(backend, netns=options.netns),
        metrics=ProxyMetrics(registry),
        health=health,
        sync_period=options.sync_period,
        min_sync_period=options.min_sync_period,
        retry_interval=retry_interval,
        health_servers=health_servers,
        delete_flows=functools.partial(conntrack.delete, netns=options.netns),
    )

    # The stores keep compact records of what rendering reads (proxy/objects.py): most of
    # the memory at 10,000 Services is these. Lists come in pages of 100, not client-go's
    # 500: each page of whole objects is garbage once transformed, and the records made
    # meanwhile pin the heap it used (measured: 2.5 MB less RSS at 10,000 Services for
    # 80 more LIST requests at start).
    records = {"key_func": objects.record_key, "version_func": None, "page_size": 100}
    services = Informer(client, resources.SERVICES, transform=objects.service_info, **records)
    slices = Informer(client, resources.ENDPOINTSLICES, transform=objects.slice_info, **records)
    nodes = Informer(client, resources.NODES, field_selector=f"metadata.name={options.node_name}")
    services.add_handler(
        on_add=lambda obj: proxier.on_service(None, obj),
        on_update=proxier.on_service,
        on_delete=lambda obj: proxier.on_service(obj, None),
    )
    slices.add_handler(
        on_add=lambda obj: proxier.on_endpoint_slice(None, obj),
        on_update=proxier.on_endpoint_slice,
        on_delete=lambda obj: proxier.on_endpoint_slice(obj, None),
    )
    nodes.add_handler(
        on_add=lambda obj: proxier.set_node(node_facts(obj)),
        on_update=lambda _old, obj: proxier.set_node(node_facts(obj)),
    )

    informers = (services, slices, nodes)
    servers: list[web.AppRunner] = []
    try:
        if options.healthz_bind_address:
            servers.append(await serve(healthz_app(health), options.healthz_bind_address))
        if serve_metrics:
            servers.append(await serve(metrics_app(registry), options.metrics_bind_address))
        for informer in informers:
            informer.start()
        await asyncio.gather(*(informer.wait_synced() for informer in informers))
        log.info("informers synced; starting rule syncs")
        await proxier.runner.loop()
    finally:
        for informer in informers:
            await informer.stop()
        await health_servers.close()
        for server in servers:
            await server.cleanup()
