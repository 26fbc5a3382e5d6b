"""Control plane benchmarks: figures for the scheduler and controllers.

Run as root from the repo root:  .venv/bin/python -m bench.controlplane   (all parts, about
two minutes), or one part with `--part scheduler|deployment|latency`.

The scheduler part starts its own `keelson apiserver --disable-controllers` on a free
127.0.0.1 port in a temporary directory, runs the scheduler in this process (as `keelson
apiserver` would, over HTTPS with the admin kubeconfig), and ends that server by PID at the
end, also on failure. The deployment and latency parts each start a fresh `keelson up` with
real containers in its own network namespaces (tests/support/cluster.py: nothing reaches
the host's network) and tear all of it down afterwards, also on failure.

Scheduler throughput (`--part scheduler`): `--nodes` simulated nodes (Node objects only,
Ready, 32 CPUs / 128 GiB / 110 pods each) and a backlog of `--pods` pending pods (100m CPU,
128Mi each, owned by 10 ReplicaSets so spreading is scored) are created first; then the
scheduler starts and the clock runs from its start (informer list included) until the
server reports no pod left unbound. pods/s = pods / that time. Each binding is one
`POST pods/{name}/binding`. A second figure is the time from the scheduler's start to the
last decision (all pods assumed), which shows how much of the total is the binding writes.

Deployment to Ready (`--part deployment`): a `--replicas` (100) Deployment of busybox httpd
(readiness probe every second, 10m CPU / 16Mi requested) is applied with kubectl; the clock
runs from launching `kubectl apply` until the Deployment reports readyReplicas == replicas
(polled every 0.5 s). The node holds them: max-pods 110, a /24 pod CIDR. The CPU figure is
the whole `keelson up` process, since apiserver and agent share it.

Programming latency (`--part latency`): `--changes` (20) times, `--gap` (1.5) seconds apart,
an endpoint of a Service is moved to another Ready pod of its Deployment by a label;
measured is the time from launching `kubectl label` to the proxy's rules (`iptables-save -t
nat` of the proxy's backend in the node netns, polled every 20 ms) holding the DNAT to the
new pod's IP. kubectl's own start-up is inside each figure and printed beside it. With
`--gap 0` the figure is the proxy's one-second minimum sync period instead (see
`programming_latency`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

from apiclient.client import ApiClient
from apiclient.controller import SharedInformers, run_controllers
from apiclient.labels import HOSTNAME_LABEL
from apiclient.pods import is_ready
from apiclient.resources import NODES, PODS
from scheduler import Scheduler
from tests.support.cluster import Cluster, running_cluster, wait_for

from ._util import KeelsonProcess, cpu_seconds, machine_summary, percentile, start_apiserver

BENCH_NAMESPACE = "default"
REPLICASETS = 10
WRITERS = 16
READY_TARGET_SECONDS = 40.0
LATENCY_TARGET_SECONDS = 2.0
RULE_POLL_SECONDS = 0.02
PARTS = ("scheduler", "deployment", "latency")


def _node(name: str) -> dict:
    allocatable = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {HOSTNAME_LABEL: name}},
        "status": {
            "capacity": allocatable,
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def _pod(index: int, owners: list[dict]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"keel-sched-{index}",
            "namespace": BENCH_NAMESPACE,
            "labels": {"app": f"bench-{index % REPLICASETS}"},
            "ownerReferences": [owners[index % REPLICASETS]],
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "localhost/keelson/busybox:1",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ]
        },
    }


async def _in_parallel(count: int, make: Callable[[int], Awaitable[None]]) -> None:
    """Run make(i) for i in range(count) with WRITERS concurrent writers."""
    numbers = iter(range(count))

    async def writer() -> None:
        for index in numbers:
            await make(index)

    await asyncio.gather(*(writer() for _ in range(WRITERS)))


async def _create_cluster(api: ApiClient, *, nodes: int, pods: int) -> None:
    async def create_node(index: int) -> None:
        body = _node(f"keel-node-{index:03d}")
        created = await api.create(NODES, body)
        created["status"] = body["status"]
        await api.replace(NODES, created, subresource="status")

    owners = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": f"bench-{i}",
            "uid": str(uuid.uuid4()),
            "controller": True,
        }
        for i in range(REPLICASETS)
    ]

    async def create_pod(index: int) -> None:
        await api.create(PODS, _pod(index, owners), namespace=BENCH_NAMESPACE)

    await _in_parallel(nodes, create_node)
    await _in_parallel(pods, create_pod)


async def _unbound(api: ApiClient) -> int:
    listing = await api.list(PODS, namespace=BENCH_NAMESPACE, field_selector="spec.nodeName=")
    return len(listing["items"])


async def scheduler_throughput(
    server: KeelsonProcess, *, nodes: int, pods: int, timeout: float
) -> None:
    async with ApiClient.from_kubeconfig(server.kubeconfig) as api:
        print(f"creating {nodes} nodes and {pods} pending pods ...", flush=True)
        await _create_cluster(api, nodes=nodes, pods=pods)
        decided_at: list[float] = []
        schedulers: list[Scheduler] = []

        def factory(client: ApiClient, informers: SharedInformers) -> Scheduler:
            scheduler = Scheduler(client, informers)
            schedulers.append(scheduler)
            return scheduler

        server_cpu = cpu_seconds(server.pid)
        started = time.perf_counter()
        task = asyncio.create_task(run_controllers(server.kubeconfig, factories=[factory]))
        try:
            deadline = started + timeout
            while True:
                if (
                    schedulers
                    and not decided_at
                    and len(list(schedulers[0].cache.placed_keys())) >= pods
                ):
                    decided_at.append(time.perf_counter())
                left = await _unbound(api)
                if left == 0:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{left} of {pods} pods still unbound after {timeout}s")
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server_share = (cpu_seconds(server.pid) - server_cpu) / elapsed * 100
        decided = (decided_at[0] - started) if decided_at else float("nan")
        placement = {}
        for pod in (await api.list(PODS, namespace=BENCH_NAMESPACE))["items"]:
            placement[pod["spec"]["nodeName"]] = placement.get(pod["spec"]["nodeName"], 0) + 1
        print(
            f"scheduler: {pods} pods on {nodes} nodes bound in {elapsed:.2f} s = "
            f"{pods / elapsed:.0f} pods/s (all decided after {decided:.2f} s; "
            f"server CPU {server_share:.0f}% of one core; pods per node "
            f"{min(placement.values())}-{max(placement.values())})",
            flush=True,
        )


# ---- real containers: a 100-replica Deployment, and Service programming latency ----


def _httpd_deployment(name: str, *, replicas: int, labels: dict[str, str]) -> dict:
    """busybox httpd answering its pod name, Ready once httpd answers, small requests."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "httpd",
                            "image": "localhost/keelson/busybox:1",
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c"],
                            "args": [
                                "mkdir -p /www && hostname > /www/index.html"
                                " && exec httpd -f -p 8080 -h /www"
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ],
                },
            },
        },
    }


def _new_namespace(cluster: Cluster) -> str:
    """A namespace the cluster's teardown deletes with all its containers."""
    name = f"keel-bench-{secrets.token_hex(3)}"
    cluster.namespaces.append(name)
    cluster.kubectl("create", "namespace", name)
    return name


def _up_cpu_seconds(cluster: Cluster) -> float:
    """CPU seconds of the `keelson up` process (apiserver, controllers, agent, proxy)."""
    assert cluster.process is not None
    return cpu_seconds(cluster.process.pid)


def _container_engine_cpu_seconds() -> float:
    """CPU seconds so far of dockerd and containerd, read only.

    The per-pod containerd shims are not counted: they come and go within the window.
    """
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] in ("dockerd", "containerd") and process.info["cpu_times"]:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


def deployment_to_ready(cluster: Cluster, *, replicas: int, timeout: float) -> None:
    namespace = _new_namespace(cluster)
    manifest = _httpd_deployment("keel-web", replicas=replicas, labels={"app": "keel-web"})
    cpu_before, engine_before = _up_cpu_seconds(cluster), _container_engine_cpu_seconds()
    started = time.perf_counter()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    while True:
        status = cluster.get("deployment", "keel-web", "-n", namespace).get("status", {})
        ready = status.get("readyReplicas", 0)
        if ready >= replicas:
            break
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {ready} of {replicas} replicas Ready after {timeout:.0f}s")
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    cpu = _up_cpu_seconds(cluster) - cpu_before
    engine_cpu = _container_engine_cpu_seconds() - engine_before
    verdict = "pass" if elapsed <= READY_TARGET_SECONDS else "FAIL"
    print(
        f"deployment: {replicas} replicas from apply to all Ready in {elapsed:.1f} s "
        f"(target <= {READY_TARGET_SECONDS:.0f} s: {verdict}); keelson up (apiserver + agent, "
        f"one process) used {cpu:.1f} CPU s = {cpu / elapsed * 100:.0f}% of one core, "
        f"dockerd + containerd {engine_cpu:.1f} CPU s = {engine_cpu / elapsed * 100:.0f}%",
        flush=True,
    )


def _ready_pod_ips(cluster: Cluster, namespace: str, selector: str) -> dict[str, str]:
    """Pod name -> IP of the Ready pods matching ``selector``."""
    pods = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
    return {
        pod["metadata"]["name"]: pod["status"]["podIP"]
        for pod in pods
        if pod["metadata"].get("deletionTimestamp") is None and is_ready(pod)
    }


def _proxy_save_tool(cluster: Cluster) -> str | None:
    """The iptables-save (legacy or nft) whose nat table holds the proxy's KEEL- chains.

    The proxy picks the backend the host already uses, legacy in a fresh netns; the plain
    `iptables-save` may be the other one and then shows none of its rules.
    """
    for tool in ("iptables-legacy-save", "iptables-nft-save"):
        if ":KEEL-SERVICES" in cluster.run(tool, "-t", "nat", check=False).stdout:
            return tool
    return None


def _wait_for_rule(
    cluster: Cluster, pod_ip: str, *, save_tool: str, present: bool, timeout: float
) -> float:
    """Poll the node's nat table until a DNAT to ``pod_ip`` is (or is no longer) there."""
    target = f"--to-destination {pod_ip}:8080"
    started = time.perf_counter()
    while (target in cluster.run(save_tool, "-t", "nat").stdout) != present:
        if time.perf_counter() - started > timeout:
            state = "appear" if present else "go"
            raise RuntimeError(f"the DNAT to {pod_ip} did not {state} within {timeout:.0f}s")
        time.sleep(RULE_POLL_SECONDS)
    return time.perf_counter()


def programming_latency(cluster: Cluster, *, changes: int, gap: float, timeout: float) -> None:
    """Move a Service's endpoint from pod to pod by label; time each move into iptables.

    The Deployment's pods all carry ``app=keel-lat``; the Service selects
    ``app=keel-lat,serve=yes``. One change is `kubectl label pod <next> serve=yes`; the
    clock runs from launching that kubectl to `iptables-save -t nat` in the node netns
    showing the DNAT to the pod's IP. Then the previous pod loses the label (not timed) and,
    once its rule is gone, the next change waits ``gap`` seconds. The proxy syncs at most once
    per second (min sync period, as kube-proxy), so with no gap each change waits out the
    sync of the previous removal: that figure is the rate limit, a gap above 1 s shows the
    path itself.
    """
    namespace = _new_namespace(cluster)
    labels = {"app": "keel-lat"}
    manifest = _httpd_deployment("keel-lat", replicas=changes + 1, labels=labels)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "keel-lat"},
        "spec": {
            "selector": {**labels, "serve": "yes"},
            "ports": [{"port": 80, "targetPort": "http"}],
        },
    }
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": [manifest, service]})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)
    print(f"waiting for {changes + 1} pods behind Service keel-lat ...", flush=True)
    deadline = time.monotonic() + timeout
    pods: dict[str, str] = {}
    while len(pods) < changes + 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(pods)} of {changes + 1} pods Ready in {timeout:.0f}s")
        time.sleep(0.5)
        pods = _ready_pod_ips(cluster, namespace, "app=keel-lat")
    names = sorted(pods)
    cluster.kubectl("label", "pod", "-n", namespace, names[0], "serve=yes")
    save_tool = wait_for(
        lambda: _proxy_save_tool(cluster), timeout=30, what="the proxy's KEEL- chains"
    )
    _wait_for_rule(cluster, pods[names[0]], save_tool=save_tool, present=True, timeout=30)
    launch_overhead = _kubectl_launch_seconds(cluster)
    latencies = []
    for previous, name in itertools.pairwise(names):
        started = time.perf_counter()
        cluster.kubectl("label", "pod", "-n", namespace, name, "serve=yes")
        programmed = _wait_for_rule(
            cluster, pods[name], save_tool=save_tool, present=True, timeout=30
        )
        latencies.append(programmed - started)
        cluster.kubectl("label", "pod", "-n", namespace, previous, "serve-")
        _wait_for_rule(cluster, pods[previous], save_tool=save_tool, present=False, timeout=30)
        time.sleep(gap)
    cluster_ip = cluster.get("service", "keel-lat", "-n", namespace)["spec"]["clusterIP"]
    answer = cluster.curl(f"http://{cluster_ip}/").stdout.strip()
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    verdict = "pass" if p99 <= LATENCY_TARGET_SECONDS else "FAIL"
    print(
        f"programming latency (label change -> DNAT in iptables-save), {len(latencies)} "
        f"changes {gap:.1f} s apart: p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(latencies):.2f} s "
        f"(target p99 <= {LATENCY_TARGET_SECONDS:.0f} s: {verdict}); includes kubectl's "
        f"own start-up, {launch_overhead:.2f} s per call; the ClusterIP then answered "
        f"{answer!r} (expected {names[-1]!r})",
        flush=True,
    )


def _kubectl_launch_seconds(cluster: Cluster) -> float:
    """Median wall time of a no-op kubectl call: the client's share of each latency."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        cluster.kubectl("get", "--raw", "/readyz")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _real_cluster_part(run: Callable[[Cluster], None]) -> None:
    """Run one part on a fresh `keelson up` in its own netns; everything is removed after."""
    data_dir = Path(tempfile.mkdtemp(prefix="keelbench-up-"))
    try:
        with running_cluster(data_dir, namespace_teardown_timeout=60) as cluster:
            run(cluster)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=[*PARTS, "all"],
        default="all",
        help="which figure to measure (all)",
    )
    parser.add_argument("--nodes", type=int, default=100, help="simulated nodes (100)")
    parser.add_argument("--pods", type=int, default=2000, help="pending pods (2000)")
    parser.add_argument("--replicas", type=int, default=100, help="Deployment replicas (100)")
    parser.add_argument("--changes", type=int, default=20, help="endpoint moves timed (20)")
    parser.add_argument(
        "--gap",
        type=float,
        default=1.5,
        help="seconds between endpoint moves, after the previous one is programmed (1.5)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="give up a part after this many seconds (120)"
    )
    return parser.parse_args(argv)


def run_part(part: str, args: argparse.Namespace) -> None:
    if part == "scheduler":
        with start_apiserver(extra_args=("--disable-controllers",)) as server:
            asyncio.run(
                scheduler_throughput(server, nodes=args.nodes, pods=args.pods, timeout=args.timeout)
            )
    elif part == "deployment":
        _real_cluster_part(
            lambda cluster: deployment_to_ready(
                cluster, replicas=args.replicas, timeout=args.timeout
            )
        )
    else:
        _real_cluster_part(
            lambda cluster: programming_latency(
                cluster, changes=args.changes, gap=args.gap, timeout=args.timeout
            )
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_summary(), flush=True)
    failed = False
    for part in PARTS if args.part == "all" else (args.part,):
        try:
            run_part(part, args)
        except (RuntimeError, AssertionError) as error:
            print(f"{part} benchmark failed: {error}", file=sys.stderr, flush=True)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
