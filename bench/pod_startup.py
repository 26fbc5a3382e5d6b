"""Benchmark of pod start-up through the node agent (prints figures; not a test).

It starts its own `keelson apiserver` (bench/_util.py; `--fake-api` uses apiclient's
in-memory fake instead) and runs the node agent in a child process (this script with
`--run-agent`) with a test bridge `ktbench0` and CIDR, so a running cluster is not touched.
Then, as seen by a watch on the pods:
  * create -> Running with a pod IP, p50/p99 over 20 pods created one after another;
  * a burst of 50 pods created at once -> all Running;
  * the agent's RSS and CPU use while idle with the 50 pods running (30 s window).
Everything it created (pods, containers, bridge, processes) is removed at the end.

Run as root: .venv/bin/python bench/pod_startup.py [--fake-api] [--idle-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apiclient.client import ApiClient
from apiclient.informer import Informer
from apiclient.resources import PODS
from bench._util import (
    cpu_seconds,
    free_port,
    machine_summary,
    percentile,
    rss_bytes,
    start_apiserver,
)

NODE = "keelbench-node"
BRIDGE = "ktbench0"
POD_CIDR = "10.252.0.0/24"
NAMESPACE = "default"
LABEL = "keelbench"


def pod_body(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": LABEL}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": "localhost/keelson/busybox:1",
                    "command": ["sleep", "100000"],
                }
            ],
        },
    }


class RunningWatch:
    """Records when each pod is first seen Running with an IP, via an informer (a watch)."""

    def __init__(self, client: ApiClient) -> None:
        self.informer = Informer(client, PODS, namespace=NAMESPACE, label_selector=f"app={LABEL}")
        self.running_at: dict[str, float] = {}
        self._changed = asyncio.Event()
        self.informer.add_handler(on_add=self._seen, on_update=lambda _o, new: self._seen(new))

    def _seen(self, pod: dict) -> None:
        status = pod.get("status") or {}
        name = pod["metadata"]["name"]
        if status.get("phase") == "Running" and status.get("podIP") and name not in self.running_at:
            self.running_at[name] = time.monotonic()
            self._changed.set()

    async def wait_running(self, names: list[str], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(n in self.running_at for n in names):
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [n for n in names if n not in self.running_at]
                raise TimeoutError(f"{len(missing)} pods not Running: {missing[:5]}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()


def bench_containers() -> list[str]:
    api = docker.APIClient(version="1.41")
    try:
        return [
            c["Id"]
            for c in api.containers(
                all=True, filters={"label": ["io.keelson.pod.namespace=default"]}
            )
            if c["Labels"].get("io.keelson.pod.name", "").startswith("keelbench-")
        ]
    finally:
        api.close()


async def measure(client: ApiClient, agent_pid: int, *, idle_seconds: float) -> dict:
    watch = RunningWatch(client)
    watch.informer.start()
    await watch.informer.wait_synced()
    figures: dict = {}
    created_at: dict[str, float] = {}
    try:
        sequential = []
        for i in range(20):
            name = f"keelbench-seq-{i}"
            created_at[name] = time.monotonic()
            await client.create(PODS, pod_body(name), namespace=NAMESPACE)
            await watch.wait_running([name], timeout=60)
            sequential.append(watch.running_at[name] - created_at[name])
        figures["sequential_p50"] = percentile(sequential, 0.5)
        figures["sequential_p99"] = percentile(sequential, 0.99)
        for i in range(20):
            await client.delete(PODS, f"keelbench-seq-{i}", namespace=NAMESPACE)
        await wait_gone(client, prefix="keelbench-seq-")

        burst = [f"keelbench-burst-{i}" for i in range(50)]
        started = time.monotonic()
        await asyncio.gather(
            *(client.create(PODS, pod_body(n), namespace=NAMESPACE) for n in burst)
        )
        await watch.wait_running(burst, timeout=180)
        figures["burst_seconds"] = max(watch.running_at[n] for n in burst) - started

        await asyncio.sleep(5)  # let start-up work settle before the idle window
        cpu_before, wall_before = cpu_seconds(agent_pid), time.monotonic()
        await asyncio.sleep(idle_seconds)
        figures["idle_cpu_percent"] = (
            100 * (cpu_seconds(agent_pid) - cpu_before) / (time.monotonic() - wall_before)
        )
        figures["rss_mib"] = rss_bytes(agent_pid) / 2**20
    finally:
        await watch.informer.stop()
    return figures


async def wait_gone(client: ApiClient, *, prefix: str, timeout: float = 120) -> None:
    """Wait until the agent removed every container of the deleted pods."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        containers = await asyncio.to_thread(bench_containers)
        pods = [
            p
            for p in (await client.list(PODS, namespace=NAMESPACE))["items"]
            if p["metadata"]["name"].startswith(prefix)
        ]
        if not pods and not containers:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError("deleted pods were not cleaned up in time")


def start_agent(kubeconfig: Path, data_dir: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        __file__,
        "--run-agent",
        "--kubeconfig",
        str(kubeconfig),
        "--data-dir",
        str(data_dir),
        "--kubelet-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
    ]
    log = (data_dir / "agent.log").open("wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def cleanup(client: ApiClient) -> None:
    pods = (await client.list(PODS, namespace=NAMESPACE, label_selector=f"app={LABEL}"))["items"]
    for pod in pods:
        with contextlib.suppress(Exception):
            await client.delete(PODS, pod["metadata"]["name"], namespace=NAMESPACE)
    with contextlib.suppress(TimeoutError):
        await wait_gone(client, prefix="keelbench-")


async def run_bench(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="keelbench-agent-"))
    async with contextlib.AsyncExitStack() as stack:
        if args.fake_api:
            from apiclient.testing import FakeApiServer

            server = await stack.enter_async_context(FakeApiServer())
            kubeconfig = data_dir / "kubeconfig"
            kubeconfig.write_text(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                f"clusters: [{{name: c, cluster: {{server: '{server.url}'}}}}]\n"
                "contexts: [{name: c, context: {cluster: c}}]\nusers: []\n"
            )
            api_name = "apiclient fake API server (in-process)"
        else:
            apiserver = start_apiserver(extra_args=["--disable-controllers"])
            stack.callback(apiserver.stop)
            kubeconfig = apiserver.kubeconfig
            api_name = "keelson apiserver (SQLite)"
        client = ApiClient.from_kubeconfig(kubeconfig)
        stack.push_async_callback(client.close)
        agent = start_agent(kubeconfig, data_dir)
        stack.callback(
            lambda: subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        )
        stack.callback(stop_process, agent)
        stack.push_async_callback(cleanup, client)
        figures = await measure(client, agent.pid, idle_seconds=args.idle_seconds)
    print(f"machine: {machine_summary()}")
    print(
        f"API: {api_name}; agent: nodeagent.run_agent in its own process; runtime: docker "
        f"{docker.from_env().version()['Version']}"
    )
    print(
        f"pod create -> Running with IP (watch), 20 sequential pods: "
        f"p50 {figures['sequential_p50']:.3f} s, p99 {figures['sequential_p99']:.3f} s"
    )
    print(f"burst of 50 pods -> all Running: {figures['burst_seconds']:.2f} s")
    print(
        f"agent idle with 50 pods over {args.idle_seconds:.0f} s: "
        f"CPU {figures['idle_cpu_percent']:.2f} % of one core, RSS {figures['rss_mib']:.1f} MiB"
    )


def run_agent_child(args: argparse.Namespace) -> None:
    """The agent process the benchmark measures (the `keelson agent` code path)."""
    from nodeagent import AgentOptions, run_agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack

    options = AgentOptions(
        kubeconfig=str(args.kubeconfig),
        node_name=NODE,
        data_dir=str(args.data_dir),
        pod_cidr=POD_CIDR,
        bridge_name=BRIDGE,
        kubelet_port=args.kubelet_port,
        metrics_bind_address=f"127.0.0.1:{args.metrics_port}",
    )

    async def main() -> None:
        client = ApiClient.from_kubeconfig(args.kubeconfig)
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await run_agent(options, client)
        finally:
            await client.close()

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fake-api",
        action="store_true",
        help="use apiclient's in-memory fake instead of keelson apiserver",
    )
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--run-agent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kubelet-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--metrics-port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.run_agent:
        run_agent_child(arguments)
    elif os.geteuid() != 0:
        sys.exit("run as root: the agent creates a bridge and veths")
    else:
        asyncio.run(run_bench(arguments))
