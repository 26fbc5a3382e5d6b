"""Benchmark of the iptables proxier's sync engine (prints figures; not a test).

In a private network namespace (nothing on the host is touched), for N Services x 3
endpoints:
  * full sync: the proxier's first sync (render + chain listing + iptables-restore + jump
    checks) next to the floor: raw ``iptables-restore --noflush`` of the same text into the
    same empty namespace;
  * partial sync for one endpoint change at the largest N, next to raw iptables-restore of
    the same partial text (the floor for that delta);
  * network programming latency p50/p99 for endpoint changes made through an API server
    (apiclient's in-memory fake; the real apiserver is not wired here yet) at 1,000
    Services, with the default --min-sync-period 1 s;
  * RSS of a real ``keelson proxy`` process watching a real ``keelson apiserver`` that holds
    the largest N Services and EndpointSlices (both run inside the namespace), after its
    first full sync, a partial sync and a periodic full resync.

Run as root: .venv/bin/python bench/proxy_sync.py [--sizes 1000,5000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import aiohttp
import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from apiclient import resources
from apiclient.client import ApiClient
from apiclient.kubeconfig import load_kubeconfig
from apiclient.labels import SERVICE_NAME_LABEL
from apiclient.testing import FakeApiServer
from proxy import (
    Iptables,
    NodeInfo,
    Proxier,
    ProxyHealth,
    ProxyMetrics,
    ProxyOptions,
    remove_all,
    run_proxy,
    service_info,
    slice_info,
)

NODE = NodeInfo(name="bench-node", cluster_cidr="10.244.0.0/16")


def service(index: int) -> dict:
    ip = f"10.96.{index // 250}.{index % 250 + 1}"
    return {
        "metadata": {"namespace": "bench", "name": f"svc-{index}"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }


def endpoint_slice(index: int, *, generation: int = 0) -> dict:
    base = 3 * (index % 80)
    ips = [f"10.244.{index // 80}.{base + k + 1}" for k in range(3)]
    if generation:
        ips[0] = f"10.245.{index // 250}.{index % 250 + generation % 2 + 1}"
    return {
        "metadata": {
            "namespace": "bench",
            "name": f"svc-{index}-abcde",
            "labels": {SERVICE_NAME_LABEL: f"svc-{index}"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True}, "nodeName": "other"} for ip in ips
        ],
    }


class RecordingIptables(Iptables):
    """Real iptables that also keeps the last restore input, to time the floor on it."""

    last_chunks: list[str] = []

    @property
    def last_text(self) -> str:
        return "\n".join(self.last_chunks)

    async def restore(self, chunks: Iterable[str]) -> None:
        self.last_chunks = seen = []

        def tee() -> Iterator[str]:
            for chunk in chunks:
                seen.append(chunk)
                yield chunk

        await super().restore(tee())


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (iptables-restore, -save)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def raw_restore(netns: str, text: str, *, cpu: list[float] | None = None) -> float:
    data = text.encode()
    cpu_started, started = cpu_seconds(), time.perf_counter()
    subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-legacy-restore", "--noflush", "-w", "5"],
        input=data, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if cpu is not None:
        cpu.append(cpu_seconds() - cpu_started)
    return elapsed


def new_proxier(netns: str, registry: CollectorRegistry | None = None) -> Proxier:
    return Proxier(
        node=NODE,
        iptables=RecordingIptables("legacy", netns=netns),
        metrics=ProxyMetrics(registry or CollectorRegistry()),
        health=ProxyHealth(timeout=60),
        sync_period=3600,
        min_sync_period=0,
    )


async def full_and_partial(
    netns: str, count: int, *, partial: bool, repeats: int
) -> dict[str, float]:
    """Medians over ``repeats`` runs, each from an empty namespace, floor and proxier
    alternating so machine noise hits both alike."""
    fulls, floors, full_cpu, floor_cpu = [], [], [], []
    for _ in range(repeats):
        remove_all("legacy", netns=netns)
        proxier = new_proxier(netns)
        slices = [slice_info(endpoint_slice(i)) for i in range(count)]
        for i in range(count):
            proxier.on_service(None, service_info(service(i)))
            proxier.on_endpoint_slice(None, slices[i])
        gc.collect()
        cpu_started, started = cpu_seconds(), time.perf_counter()
        assert await proxier.sync()
        fulls.append(time.perf_counter() - started)
        full_cpu.append(cpu_seconds() - cpu_started)
        text = proxier.iptables.last_text
        remove_all("legacy", netns=netns)
        gc.collect()
        floors.append(raw_restore(netns, text, cpu=floor_cpu))
    remove_all("legacy", netns=netns)
    figures = {
        "full": statistics.median(fulls),
        "full_floor": statistics.median(floors),
        "full_cpu": statistics.median(full_cpu),
        "floor_cpu": statistics.median(floor_cpu),
        "rules": text.count("\n-A "),
    }
    if not partial:
        return figures
    assert await new_proxier_sync(proxier)  # back to a fully programmed state
    partial_times, floors = [], []
    for generation in range(1, 6):
        current = slice_info(endpoint_slice(count // 2, generation=generation))
        proxier.on_endpoint_slice(slices[count // 2], current)
        slices[count // 2] = current
        started = time.perf_counter()
        assert await proxier.sync()
        partial_times.append(time.perf_counter() - started)
        assert proxier.last_sync_was_full is False
        floors.append(raw_restore(netns, proxier.iptables.last_text))
    figures["partial"] = statistics.median(partial_times)
    figures["partial_floor"] = statistics.median(floors)
    return figures


async def _create_all(client: ApiClient, count: int) -> None:
    """``count`` selector-less Services and their EndpointSlices, 32 writes in flight."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def writer() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            body = service(index)
            del body["spec"]["clusterIP"]  # the apiserver allocates one
            await client.create(resources.SERVICES, body, namespace="bench")
            await client.create(resources.ENDPOINTSLICES, endpoint_slice(index), namespace="bench")

    await asyncio.gather(*(writer() for _ in range(32)))


async def _wait_for_syncs(metrics_url: str, at_least: float, timeout: float = 120.0) -> float:
    """Wait until the proxy's /metrics counts ``at_least`` syncs; returns the count."""
    name = "kubeproxy_sync_proxy_rules_duration_seconds_count"
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(metrics_url) as response:
                    text = await response.text()
            except aiohttp.ClientError:
                text = ""
            samples = (
                sample for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name == name
            )  # fmt: skip
            syncs = next((sample.value for sample in samples), 0.0)
            if syncs >= at_least:
                return syncs
            await asyncio.sleep(0.1)
    raise TimeoutError(f"the proxy did not reach {at_least} syncs in {timeout} s")


async def memory(count: int) -> None:
    """RSS of a real ``keelson proxy`` process watching a real apiserver that holds
    ``count`` Services and EndpointSlices (3 endpoints each): after its first full sync,
    after a partial sync for one endpoint change, and after a periodic full resync.
    Runs inside the benchmark's network namespace (``ip netns exec``), where the proxy
    programs that namespace's netfilter and safety route only."""
    from bench._util import free_port, rss_bytes, start_apiserver

    with start_apiserver(extra_args=["--disable-controllers"]) as apiserver:
        client = ApiClient(load_kubeconfig(apiserver.kubeconfig))
        try:
            await client.create(resources.NAMESPACES, {"metadata": {"name": "bench"}})
            started = time.perf_counter()
            await _create_all(client, count)
            print(
                f"created {count} Services + EndpointSlices through the apiserver in"
                f" {time.perf_counter() - started:.1f} s"
            )
            port = free_port()
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            log = apiserver.data_dir / "proxy.log"
            command = [
                str(Path(sys.executable).with_name("keelson")), "proxy",
                "--kubeconfig", str(apiserver.kubeconfig), "--node-name", "bench-node",
                "--iptables-backend", "legacy", "--sync-period", "10",
                "--metrics-bind-address", f"127.0.0.1:{port}",
                "--healthz-bind-address", f"127.0.0.1:{free_port()}",
            ]  # fmt: skip
            with log.open("wb") as output:
                proxy = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
            try:
                started = time.perf_counter()
                syncs = await _wait_for_syncs(metrics_url, 1)
                first = time.perf_counter() - started
                after_first = rss_bytes(proxy.pid)
                body = endpoint_slice(0, generation=1)
                await client.patch(
                    resources.ENDPOINTSLICES, body["metadata"]["name"],
                    {"endpoints": body["endpoints"]}, namespace="bench",
                )  # fmt: skip
                syncs = await _wait_for_syncs(metrics_url, syncs + 1)
                after_partial = rss_bytes(proxy.pid)
                await _wait_for_syncs(metrics_url, syncs + 1, timeout=30)  # periodic full
                after_full = rss_bytes(proxy.pid)
                peak = psutil.Process(proxy.pid).memory_full_info()
            finally:
                proxy.terminate()
                proxy.wait(timeout=10)
        finally:
            await client.close()
    mb = 2**20
    print(
        f"keelson proxy RSS at {count} Services (started to first sync {first:.1f} s):"
        f" {after_first / mb:.1f} MB after the first full sync,"
        f" {after_partial / mb:.1f} MB after a partial sync,"
        f" {after_full / mb:.1f} MB after a periodic full resync"
        f" (USS {peak.uss / mb:.1f} MB)"
    )


async def new_proxier_sync(proxier: Proxier) -> bool:
    proxier._needs_full = True  # benchmark only: force a full re-apply after the floor run
    return await proxier.sync()


async def programming_latency(netns: str, count: int, changes: int) -> list[float]:
    """Seconds from an EndpointSlice write through the API to the rules being applied."""
    remove_all("legacy", netns=netns)
    registry = CollectorRegistry()
    options = ProxyOptions(
        netns=netns, node_name="bench-node", iptables_backend="legacy",
        healthz_bind_address="", metrics_bind_address="", state_dir=Path(f"/tmp/{netns}"),
    )  # fmt: skip
    latencies = []
    count_metric = "kubeproxy_sync_proxy_rules_duration_seconds_count"
    async with FakeApiServer() as server:
        for i in range(count):
            server.seed(resources.SERVICES, service(i))
            server.seed(resources.ENDPOINTSLICES, endpoint_slice(i))
        client = ApiClient(server.config())
        task = asyncio.create_task(run_proxy(options, client, registry=registry))
        try:
            while not registry.get_sample_value(count_metric):
                await asyncio.sleep(0.05)
            for change in range(changes):
                await asyncio.sleep(1.1)  # changes arrive spaced like a real cluster's
                index = (change * 7919) % count
                syncs = registry.get_sample_value(count_metric)
                started = time.perf_counter()
                body = endpoint_slice(index, generation=change + 1)
                await client.patch(
                    resources.ENDPOINTSLICES, body["metadata"]["name"],
                    {"endpoints": body["endpoints"]}, namespace="bench",
                )  # fmt: skip
                while registry.get_sample_value(count_metric) == syncs:
                    await asyncio.sleep(0.002)
                latencies.append(time.perf_counter() - started)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--latency-services", type=int, default=1000)
    parser.add_argument("--latency-changes", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_only:
        await memory(args.memory_only)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    netns = f"kt-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    try:
        print(f"iptables-legacy in namespace {netns}; 3 endpoints per Service")
        print(f"full sync, median of {args.repeats} runs from an empty namespace;")
        print("wall-clock seconds, and CPU seconds (this process + iptables-restore/-save)")
        print(
            f"{'services':>8} {'rules':>7} {'full s':>8} {'floor s':>8} {'ratio':>6}"
            f" {'full cpu':>9} {'floor cpu':>9} {'ratio':>6}"
        )
        for size in sizes:
            figures = await full_and_partial(
                netns, size, partial=size == max(sizes), repeats=args.repeats
            )
            print(
                f"{size:>8} {figures['rules']:>7} {figures['full']:>8.3f}"
                f" {figures['full_floor']:>8.3f} {figures['full'] / figures['full_floor']:>6.2f}"
                f" {figures['full_cpu']:>9.3f} {figures['floor_cpu']:>9.3f}"
                f" {figures['full_cpu'] / figures['floor_cpu']:>6.2f}"
            )
        print(
            f"partial sync, one endpoint change at {max(sizes)} Services (median of 5):"
            f" {figures['partial']:.3f} s, floor {figures['partial_floor']:.3f} s,"
            f" ratio {figures['partial'] / figures['partial_floor']:.2f}"
        )
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                "-m",
                "bench.proxy_sync",
                "--memory-only",
                str(max(sizes)),
            ],
            check=True,
        )
        if args.latency_changes:
            latencies = sorted(
                await programming_latency(netns, args.latency_services, args.latency_changes)
            )
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
            print(
                f"network programming latency at {args.latency_services} Services,"
                f" {len(latencies)} changes: p50 {p50:.3f} s, p99 {p99:.3f} s"
            )
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    asyncio.run(main())
