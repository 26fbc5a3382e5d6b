"""Conntrack diffs, health servers and metrics exposition of the proxy."""

import shutil
import subprocess

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from apiclient.serving import serve
from proxy.conntrack import StaleFlow, UdpTarget, stale_flows
from proxy.healthz import HealthCheck, ProxyHealth, ServiceHealthServers, healthz_app
from proxy.metrics import ProxyMetrics


def target(ips, *, node_port=0):
    return UdpTarget(("10.96.0.53", "192.0.2.9"), 53, node_port, frozenset(ips))


def test_stale_flows_for_removed_endpoints_only():
    old = {"ns/dns:p": target({"10.244.0.5", "10.244.0.6"}, node_port=30053)}
    new = {"ns/dns:p": target({"10.244.0.6"}, node_port=30053)}
    assert stale_flows(old, new) == [
        StaleFlow(None, 30053, "10.244.0.5"),
        StaleFlow("10.96.0.53", 53, "10.244.0.5"),
        StaleFlow("192.0.2.9", 53, "10.244.0.5"),
    ]
    assert stale_flows(new, new) == []


def test_stale_flows_when_service_gets_its_first_endpoints():
    assert stale_flows({"ns/dns:p": target(set())}, {"ns/dns:p": target({"10.244.0.5"})}) == [
        StaleFlow("10.96.0.53", 53, None),
        StaleFlow("192.0.2.9", 53, None),
    ]
    assert stale_flows({"ns/dns:p": target({"10.244.0.5"})}, {}) == [
        StaleFlow("10.96.0.53", 53, "10.244.0.5"),
        StaleFlow("192.0.2.9", 53, "10.244.0.5"),
    ]


async def test_healthz_503_until_synced_then_200(unused_tcp_port):
    health = ProxyHealth(timeout=60)
    runner = await serve(healthz_app(health), f"127.0.0.1:{unused_tcp_port}")
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{unused_tcp_port}"
            async with session.get(url + "/healthz") as response:
                assert response.status == 503
            health.synced()
            for path in ("/healthz", "/livez"):
                async with session.get(url + path) as response:
                    assert response.status == 200
                    assert (await response.json())["lastUpdated"] == health.last_success
    finally:
        await runner.cleanup()


async def test_service_health_check_servers_answer_by_local_endpoints(unused_tcp_port_factory):
    first, second = unused_tcp_port_factory(), unused_tcp_port_factory()
    servers = ServiceHealthServers(host="127.0.0.1")
    try:
        await servers.sync({first: HealthCheck("default/web", 2), second: HealthCheck("ns/b", 0)})
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{first}/") as response:
                assert response.status == 200
                body = await response.json(content_type=None)
                assert body["localEndpoints"] == 2
                assert body["service"] == {"namespace": "default", "name": "web"}
            async with session.get(f"http://127.0.0.1:{second}/") as response:
                assert response.status == 503
            await servers.sync({first: HealthCheck("default/web", 0)})
            async with session.get(f"http://127.0.0.1:{first}/") as response:
                assert response.status == 503
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"http://127.0.0.1:{second}/")
    finally:
        await servers.close()


def test_metric_names_and_promtool():
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    metrics.sync_duration.observe(0.1)
    metrics.restore_failures.inc()
    metrics.iptables_rules.labels(table="nat").set(10)
    text = generate_latest(registry).decode()
    for name in (
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
        "kubeproxy_network_programming_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
        'kubeproxy_sync_proxy_rules_iptables_total{table="nat"} 10.0',
        "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1.0",
        "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
        "kubeproxy_sync_proxy_rules_service_changes_pending",
    ):
        assert name in text
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    # the one accepted finding: Kubernetes' own name for the rule-count gauge
    assert all("kubeproxy_sync_proxy_rules_iptables_total" in line for line in problems), problems
