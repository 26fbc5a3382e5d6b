"""run_proxy wired to informers (against a real ``keelson apiserver``) and --cleanup."""

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from apiclient import resources
from apiclient.client import ApiClient
from proxy import ProxyOptions, cleanup, run_proxy
from tests.functional.proxy.conftest import CLUSTER_CIDR, endpoint_slice, service
from tests.support.apiserver import ApiServer, running_apiserver

pytestmark = pytest.mark.root

SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.ipv4.conf.all.route_localnet",
)


def snapshot(node) -> dict:
    """What --cleanup must leave exactly as it was: rules, links, sysctls."""
    saved = node.run("iptables-legacy-save")
    rules = [
        re.sub(r"\[\d+:\d+\]", "", line) for line in saved.splitlines() if not line.startswith("#")
    ]
    links = sorted(line.split(":")[1].strip() for line in node.run("ip", "-o", "link").splitlines())
    return {
        "rules": rules,
        "nft": node.run("iptables-nft-save"),
        "links": links,
        "sysctls": [node.run("sysctl", "-n", key).strip() for key in SYSCTLS],
    }


@pytest.fixture
def apiserver(tmp_path) -> Iterator[ApiServer]:
    with running_apiserver(tmp_path / "apiserver") as server:
        yield server


async def wait_for(predicate, *, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_run_proxy_follows_the_api_and_cleanup_restores_the_node(
    node, tmp_path, unused_tcp_port, apiserver
):
    pods = [node.add_pod(i) for i in range(2)]
    # the "host" already has someone else's rules (Docker's) that must survive
    node.run("iptables-legacy", "-t", "nat", "-N", "DOCKER")
    node.run("iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-m", "addrtype",
             "--dst-type", "LOCAL", "-j", "DOCKER")  # fmt: skip
    node.run("iptables-legacy", "-N", "DOCKER-USER")
    node.run("iptables-legacy", "-A", "FORWARD", "-j", "DOCKER-USER")
    node.run("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
    before = snapshot(node)

    options = ProxyOptions(
        netns=node.netns,
        state_dir=tmp_path,
        node_name="node-a",
        cluster_cidr=CLUSTER_CIDR,
        iptables_backend="legacy",
        min_sync_period=0.05,
        nodeport_localhost=True,
        healthz_bind_address=f"127.0.0.1:{unused_tcp_port}",
        metrics_bind_address="",
    )
    registry = CollectorRegistry()
    web = service("web", "10.96.0.10")
    async with (
        aiohttp.ClientSession() as session,
        ApiClient.from_kubeconfig(apiserver.kubeconfig) as client,
    ):
        await client.create(resources.NODES, {"metadata": {"name": "node-a"}, "spec": {}})
        await client.create(resources.SERVICES, web)
        await client.create(resources.ENDPOINTSLICES, endpoint_slice("web", pods[:1]))
        task = asyncio.create_task(run_proxy(options, client, registry=registry))
        try:

            async def healthy():
                try:
                    async with session.get(f"http://127.0.0.1:{unused_tcp_port}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(healthy)
            assert node.curl("http://10.96.0.10/") == (0, "pod0")
            assert node.run("ip", "-o", "route", "show", "dev", "keelson-svc0").startswith(
                "10.96.0.0/12"
            )

            await client.patch(
                resources.ENDPOINTSLICES, "web-1",
                {"endpoints": endpoint_slice("web", pods[1:])["endpoints"]},
                namespace="default",
            )  # fmt: skip

            async def moved():
                return node.curl("http://10.96.0.10/")[1] == "pod1"

            await wait_for(moved)
            assert registry.get_sample_value(
                "kubeproxy_sync_partial_proxy_rules_duration_seconds_count"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # the rules stay after the proxy exits (kube-proxy behaviour)
    assert node.curl("http://10.96.0.10/") == (0, "pod1")
    assert snapshot(node) != before
    await asyncio.to_thread(cleanup, options)  # netlink calls block: off the event loop
    assert snapshot(node) == before
    await asyncio.to_thread(cleanup, options)  # idempotent
    assert snapshot(node) == before
