"""The whole agent against real dockerd, real netlink and a real ``keelson apiserver``.

The apiserver runs as its own process (``agent_support``; controllers off, so the tests
play scheduler by creating pods with ``spec.nodeName``); the agent runs in the test's event
loop with a node's credentials (``system:node:<name>``), and the test reads what a user
would, as the admin, through a watch. Everything on the node is real: pause sandboxes,
busybox containers, a bridge and veths in the host namespace (test-named ``kt...`` bridge
and test CIDR), IPAM files. Every test removes its containers, bridge and data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import docker
import pytest
from prometheus_client import CollectorRegistry

from apiclient.client import ApiClient
from apiclient.errors import NotFoundError
from apiclient.informer import Informer
from apiclient.resources import LEASES, NODES, PODS
from nodeagent.agent import AgentOptions, run_agent
from nodeagent.network import netlink
from nodeagent.network.bridge import host_veth_name
from tests.e2e.nodeagent.agent_support import (
    Node,
    docker_ids,
    eventually,
    kubelet_client_ssl,
    new_node,
)
from tests.e2e.nodeagent.conftest import BUSYBOX, _docker_available
from tests.support.apiserver import free_port

pytestmark = [pytest.mark.docker, pytest.mark.root]


@dataclass
class Cluster:
    node_env: Node
    admin: ApiClient  # the test, as a user
    client: ApiClient  # the agent, as its node
    pods: Informer  # the admin's view of the test's pods, through a real watch
    options: AgentOptions
    agent: asyncio.Task | None = None

    @property
    def node(self) -> str:
        return self.node_env.name

    def start_agent(self) -> None:
        self.agent = asyncio.create_task(
            run_agent(self.options, self.client, registry=CollectorRegistry())
        )

    async def stop_agent(self) -> None:
        assert self.agent is not None
        self.agent.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.agent
        self.agent = None

    def pod(self, name: str) -> dict | None:
        return self.pods.store.get(f"{self.node_env.namespace}/{name}")

    async def create(self, name: str, containers: list[dict], **spec) -> dict:
        pod = await self.admin.create(
            PODS, self.node_env.pod_manifest(name, containers, **spec),
            namespace=self.node_env.namespace)
        self.node_env.uids.add(pod["metadata"]["uid"])
        return pod

    async def delete(self, name: str, *, grace_period_seconds: int | None = None) -> None:
        await self.admin.delete(PODS, name, namespace=self.node_env.namespace,
                                grace_period_seconds=grace_period_seconds)

    def phase(self, name: str) -> str | None:
        pod = self.pod(name)
        return ((pod or {}).get("status") or {}).get("phase")


def sh(name: str, script: str, **extra) -> dict:
    return {"name": name, "image": BUSYBOX, "command": ["sh", "-c", script], **extra}


def fetch(ip: str, port: int, *, timeout: float = 3.0) -> str:
    with socket.create_connection((ip, port), timeout=timeout) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        chunks = []
        while data := conn.recv(4096):
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


async def kubelet_get(cluster: Cluster, path: str) -> tuple[int, str]:
    url = f"https://127.0.0.1:{cluster.options.kubelet_port}{path}"
    context = kubelet_client_ssl(cluster.node_env.server)
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        return response.status, await response.text()


@pytest.fixture
async def cluster(apiserver, tmp_path) -> AsyncIterator[Cluster]:
    if not _docker_available():
        pytest.skip("needs a running dockerd")
    node = new_node(apiserver, tmp_path / "agent")
    admin = ApiClient.from_kubeconfig(apiserver.kubeconfig)
    client = ApiClient.from_kubeconfig(node.kubeconfig)
    pods = Informer(admin, PODS, namespace=node.namespace, name="test-pods")
    options = AgentOptions(
        kubeconfig=str(node.kubeconfig),
        node_name=node.name,
        data_dir=str(node.data_dir),
        pod_cidr=node.pod_cidr,
        kubelet_port=free_port(),
        bridge_name=node.bridge,
        metrics_bind_address="127.0.0.1:0",
    )
    env = Cluster(node, admin, client, pods, options)
    try:
        pods.start()
        await pods.wait_synced(timeout=10)
        yield env
    finally:
        try:
            if env.agent is not None:
                await env.stop_agent()  # re-raises an agent crash, after clean-up
        finally:
            await pods.stop()
            await client.close()
            await admin.close()
            await node.cleanup()


async def test_pod_runs_reachable_from_host_and_containers_share_localhost(cluster):
    cluster.start_agent()
    await cluster.create(
        "web",
        [
            sh(
                "server",
                "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && "
                "httpd -f -p 8080 -h /www",
            ),
            sh(
                "client",
                "sleep 1; while true; do wget -q -O /tmp/got http://127.0.0.1:8080/ && "
                "cat /tmp/got; sleep 1; done",
            ),
        ],
    )

    await eventually(lambda: cluster.phase("web") == "Running")
    status = cluster.pod("web")["status"]
    ip = status["podIP"]
    assert ip.startswith(cluster.options.pod_cidr.removesuffix("0/24"))
    assert all(s["containerID"].startswith("docker://") for s in status["containerStatuses"])
    assert "hello-from-web" in await asyncio.to_thread(fetch, ip, 8080)
    node = await cluster.admin.get(NODES, cluster.node)
    assert {c["type"] for c in node["status"]["conditions"]} >= {"Ready", "MemoryPressure"}

    async def lease_exists() -> bool:
        try:
            await cluster.admin.get(LEASES, cluster.node, namespace="kube-node-lease")
        except NotFoundError:
            return False
        return True

    # the Lease is renewed by the node-status loop, asynchronously to the pods
    await eventually(lease_exists, timeout=15)

    assert await kubelet_get(cluster, "/healthz") == (200, "ok")
    code, pods = await kubelet_get(cluster, "/pods")
    assert code == 200 and '"web"' in pods
    logs_path = f"/containerLogs/{cluster.node_env.namespace}/web/client"
    for _ in range(50):  # the client container fetches once a second
        code, logs = await kubelet_get(cluster, f"{logs_path}?tailLines=1")
        if logs:
            break
        await asyncio.sleep(0.1)
    assert (code, logs.strip()) == (200, "hello-from-web")
    code, _ = await kubelet_get(cluster, f"{logs_path}?previous=true")
    assert code == 400


async def test_graceful_termination_then_nothing_left(cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    cluster.start_agent()
    pod = await cluster.create(
        "bye",
        [
            sh(
                "polite",
                "trap 'echo got-term > /marks/polite; exit 0' TERM; while true; do sleep 0.1; done",
                volumeMounts=[{"name": "marks", "mountPath": "/marks"}],
            ),
            sh(
                "stubborn",
                "trap 'echo ignoring > /marks/stubborn' TERM; while true; do sleep 0.1; done",
                volumeMounts=[{"name": "marks", "mountPath": "/marks"}],
            ),
        ],
        terminationGracePeriodSeconds=2,
        volumes=[{"name": "marks", "hostPath": {"path": str(marks)}}],
    )
    await eventually(lambda: cluster.phase("bye") == "Running")
    uid = pod["metadata"]["uid"]

    started = time.monotonic()
    await cluster.delete("bye", grace_period_seconds=2)  # marks it; the agent finishes it
    await eventually(lambda: cluster.pod("bye") is None)
    took = time.monotonic() - started

    assert (marks / "polite").read_text().strip() == "got-term"
    assert (marks / "stubborn").read_text().strip() == "ignoring"
    assert 1.5 < took < 10  # the stubborn one was killed after the 2 s grace period
    assert docker_ids(uid) == set()
    assert host_veth_name(uid) not in await asyncio.to_thread(netlink.list_links)
    ipam_dir = Path(cluster.options.data_dir) / "ipam" / cluster.options.pod_cidr.replace("/", "_")
    assert [p.name for p in ipam_dir.iterdir() if p.name[0].isdigit()] == []


async def test_agent_restart_adopts_and_cleans_pods_deleted_meanwhile(cluster):
    cluster.start_agent()
    stay = await cluster.create("stay", [sh("c", "sleep 1000")])
    leave = await cluster.create("leave", [sh("c", "sleep 1000")])
    await eventually(
        lambda: cluster.phase("stay") == "Running" and cluster.phase("leave") == "Running"
    )
    ids_before = docker_ids(stay["metadata"]["uid"])
    ip_before = cluster.pod("stay")["status"]["podIP"]

    await cluster.stop_agent()  # the agent goes away; pods keep running
    await cluster.delete("leave", grace_period_seconds=0)  # gone at once, no agent to ask
    cluster.start_agent()

    await eventually(lambda: docker_ids(leave["metadata"]["uid"]) == set())
    await asyncio.sleep(1.5)
    assert docker_ids(stay["metadata"]["uid"]) == ids_before
    assert cluster.pod("stay")["status"]["podIP"] == ip_before
    assert "running" in cluster.pod("stay")["status"]["containerStatuses"][0]["state"]
    assert cluster.pod("stay")["status"]["containerStatuses"][0]["restartCount"] == 0


async def test_thirty_pods_get_distinct_ips_and_bad_pods_do_not_block(cluster):
    cluster.start_agent()
    for i in range(30):
        await cluster.create(f"many-{i}", [sh("c", "sleep 1000")])
    await cluster.create("noimage", [{"name": "c", "image": "localhost/keelson/nope:1"}])
    await cluster.create("badcmd", [{"name": "c", "image": BUSYBOX, "command": ["/no/such"]}])

    await eventually(
        lambda: all(cluster.phase(f"many-{i}") == "Running" for i in range(30)), timeout=90
    )
    ips = {cluster.pod(f"many-{i}")["status"]["podIP"] for i in range(30)}
    assert len(ips) == 30

    def waiting_reason(name: str) -> str:
        entry = cluster.pod(name)["status"]["containerStatuses"][0]
        return (entry["state"].get("waiting") or {}).get("reason", "") or (
            entry["lastState"].get("terminated") or {}
        ).get("reason", "")

    await eventually(lambda: waiting_reason("noimage") in ("ErrImagePull", "ImagePullBackOff"))
    await eventually(
        lambda: waiting_reason("badcmd") in ("StartError", "RunContainerError", "CrashLoopBackOff")
    )


async def test_http_readiness_and_tcp_liveness_probes(cluster):
    cluster.start_agent()
    await cluster.create(
        "probed",
        [
            sh(
                "web",
                "mkdir -p /www && httpd -p 8080 -h /www; "
                "trap 'exit 0' TERM; while true; do sleep 0.2; done",
                readinessProbe={"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
                livenessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            ),
            sh(
                "doomed",
                "sleep 1000",
                livenessProbe={
                    "tcpSocket": {"port": 9999},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                },
            ),
        ],
        terminationGracePeriodSeconds=1,  # `sleep` as PID 1 ignores SIGTERM
    )

    def statuses() -> dict[str, dict]:
        return {s["name"]: s for s in cluster.pod("probed")["status"]["containerStatuses"]}

    await eventually(lambda: cluster.phase("probed") == "Running")
    await eventually(lambda: statuses()["doomed"]["restartCount"] >= 1)
    assert statuses()["web"]["ready"] is False  # /ready does not exist yet: 404
    ready_file = "mkdir -p /www && touch /www/ready"
    api = docker.APIClient(version="1.41")
    web_id = statuses()["web"]["containerID"].removeprefix("docker://")
    api.exec_start(api.exec_create(web_id, ["sh", "-c", ready_file]))
    api.close()
    await eventually(lambda: statuses()["web"]["ready"] is True)
    assert statuses()["web"]["restartCount"] == 0


async def test_crash_loop_back_off_grows(cluster):
    cluster.start_agent()
    await cluster.create("crashy", [sh("c", "exit 3")])

    def entry() -> dict:
        return cluster.pod("crashy")["status"]["containerStatuses"][0]

    await eventually(lambda: entry()["restartCount"] == 1)
    first_restart = time.monotonic()
    await eventually(
        lambda: "back-off 10s" in entry()["state"].get("waiting", {}).get("message", "")
    )
    assert entry()["lastState"]["terminated"]["exitCode"] == 3
    assert cluster.phase("crashy") == "Running"
    await eventually(lambda: entry()["restartCount"] == 2, timeout=20)
    assert time.monotonic() - first_restart >= 9
    await eventually(
        lambda: "back-off 20s" in entry()["state"].get("waiting", {}).get("message", "")
    )


DOCKERD_PIDFILE = Path("/run/keelson/dockerd.pid")  # written by scripts/setup-host.sh
REPO = Path(__file__).resolve().parents[3]


def our_dockerd() -> int | None:
    """The running dockerd, only if keelson's set-up started it (never someone else's)."""
    try:
        pid = int(DOCKERD_PIDFILE.read_text())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "dockerd" else None


async def test_dockerd_restart_agent_reconnects_and_pods_come_back(cluster):
    """dockerd restarts (stopping every container): the agent reconnects, its relist sees
    the pod's containers gone, and the pod runs again with a new container and an IP."""
    pid = our_dockerd()
    if pid is None:
        pytest.skip("dockerd was not started by scripts/setup-host.sh; not restarting it")
    cluster.start_agent()
    await cluster.create("survivor", [sh("main", "trap 'exit 0' TERM; sleep 3600 & wait")],
                         restartPolicy="Always")

    def running_container() -> str | None:
        statuses = (cluster.pod("survivor")["status"].get("containerStatuses") or [{}])
        state = statuses[0].get("state") or {}
        return statuses[0].get("containerID") if "running" in state else None

    await eventually(running_container, timeout=30)
    before = running_container()

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "dockerd did not stop"
    setup = await asyncio.to_thread(
        subprocess.run, ["bash", str(REPO / "scripts" / "setup-host.sh")],
        capture_output=True, text=True, timeout=180)
    assert setup.returncode == 0, setup.stderr

    def came_back() -> bool:
        current = running_container()
        pod_status = cluster.pod("survivor")["status"]
        return bool(current and current != before and pod_status.get("podIP"))

    await eventually(came_back, timeout=90)
    assert cluster.agent is not None and not cluster.agent.done()
