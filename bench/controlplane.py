"""Control plane benchmarks: figures for the scheduler and controllers.

Run from the repo root:  .venv/bin/python -m bench.controlplane   (about 15 seconds)

Each part starts its own `keelson apiserver --disable-controllers` on a free 127.0.0.1 port
in a temporary directory, runs the loop it measures in this process (as `keelson
apiserver` would, over HTTPS with the admin kubeconfig), and ends that server by PID at the
end, also on failure.

Scheduler throughput (`--part scheduler`): `--nodes` simulated nodes (Node objects only,
Ready, 32 CPUs / 128 GiB / 110 pods each) and a backlog of `--pods` pending pods (100m CPU,
128Mi each, owned by 10 ReplicaSets so spreading is scored) are created first; then the
scheduler starts and the clock runs from its start (informer list included) until the
server reports no pod left unbound. pods/s = pods / that time. Each binding is one
`POST pods/{name}/binding`. A second figure is the time from the scheduler's start to the
last decision (all pods assumed), which shows how much of the total is the binding writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from apiclient.client import ApiClient
from apiclient.resources import NODES, PODS
from apiserver.controllers import run_controllers
from apiserver.controllers.base import SharedInformers
from apiserver.scheduler import Scheduler

from ._util import KeelsonProcess, cpu_seconds, machine_summary, start_apiserver

BENCH_NAMESPACE = "default"
REPLICASETS = 10
WRITERS = 16


def _node(name: str) -> dict:
    allocatable = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=["scheduler"],
        default="scheduler",
        help="which figure to measure (scheduler)",
    )
    parser.add_argument("--nodes", type=int, default=100, help="simulated nodes (100)")
    parser.add_argument("--pods", type=int, default=2000, help="pending pods (2000)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="give up after this many seconds (120)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_summary(), flush=True)
    with start_apiserver(extra_args=("--disable-controllers",)) as server:
        try:
            asyncio.run(
                scheduler_throughput(server, nodes=args.nodes, pods=args.pods, timeout=args.timeout)
            )
        except RuntimeError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
