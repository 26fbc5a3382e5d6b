"""The service proxy driven by a real ``keelson apiserver``: Services and EndpointSlices
created through the API become working Service IPs in a private network namespace.

The "node" is a network namespace with veth "pods" (tests.functional.proxy.conftest),
so the host's netfilter is never touched; the ClusterIP is allocated by the apiserver.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from apiclient import resources
from apiclient.client import ApiClient
from apiclient.meta import utc_now
from proxy import ProxyOptions, cleanup, run_proxy
from tests.functional.proxy.conftest import CLUSTER_CIDR, node  # noqa: F401 (fixture)
from tests.support.apiserver import running_apiserver, unique

pytestmark = pytest.mark.root


async def eventually(check, *, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def slice_for(service: str, pods, *, port: int = 8080) -> dict:
    return {
        "metadata": {"name": f"{service}-abc", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service},
                     "annotations": {"endpoints.kubernetes.io/last-change-trigger-time":
                                     utc_now()}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [p.ip], "conditions": {"ready": True}} for p in pods],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


async def test_service_created_through_the_api_answers_on_its_cluster_ip(
        node, tmp_path: Path, unused_tcp_port: int) -> None:  # noqa: F811
    pods = [node.add_pod(i) for i in range(2)]
    with running_apiserver(tmp_path / "apiserver") as server:
        client = ApiClient.from_kubeconfig(server.kubeconfig)
        registry = CollectorRegistry()
        options = ProxyOptions(netns=node.netns, state_dir=tmp_path / "proxy",
                               node_name="node-a", cluster_cidr=CLUSTER_CIDR,
                               iptables_backend="legacy", min_sync_period=0.05,
                               healthz_bind_address=f"127.0.0.1:{unused_tcp_port}",
                               metrics_bind_address="")
        name = unique("web")
        svc = await client.create(resources.SERVICES, {
            "metadata": {"name": name},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
            namespace="default")
        ip = svc["spec"]["clusterIP"]
        await client.create(resources.ENDPOINTSLICES, slice_for(name, pods[:1]),
                            namespace="default")
        task = asyncio.create_task(run_proxy(options, client, registry=registry))
        try:
            async def answers(expected: str):
                async def check() -> bool:
                    return await asyncio.to_thread(node.curl, f"http://{ip}/") == (0, expected)
                return check

            await eventually(await answers("pod0"))
            assert registry.get_sample_value(
                "kubeproxy_network_programming_duration_seconds_count") >= 1

            # the endpoint moves: the proxy follows the watch
            await client.patch(resources.ENDPOINTSLICES, f"{name}-abc",
                               {"endpoints": slice_for(name, pods[1:])["endpoints"]},
                               namespace="default")
            await eventually(await answers("pod1"))

            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{unused_tcp_port}/healthz") as response:
                assert response.status == 200

            # no endpoints left: connection refused at once, not a hang
            await client.patch(resources.ENDPOINTSLICES, f"{name}-abc", {"endpoints": []},
                               namespace="default")

            async def refused() -> bool:
                code, _ = await asyncio.to_thread(node.curl, f"http://{ip}/", timeout=1)
                return code == 7  # curl: failed to connect (REJECT)
            await eventually(refused)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
            await asyncio.to_thread(cleanup, options)
