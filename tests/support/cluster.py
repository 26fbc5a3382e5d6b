"""A real single-node ``keelson up`` isolated in network namespaces, for e2e tests and bench.

Isolation is the invariant: ``keelson up`` runs inside a fresh node netns ``kt-<id>n`` whose
only uplink is a veth to a second, otherwise empty netns ``kt-<id>g`` acting as the gateway
(198.18.0.0/30, benchmark space). The node agent takes its InternalIP from that default route;
its bridge, veths, iptables rules, ``keelson-svc0`` route and listening ports therefore all
live in the node netns, and kubectl and curl run there too (``Cluster.run``). Nothing reaches
the host's network: the gateway netns has no route anywhere else.

Teardown of ``running_cluster``, also on failure: the namespaces listed in
``Cluster.namespaces`` are deleted and their pods awaited (bounded), ``keelson up`` is stopped
by PID (SIGTERM, then SIGKILL), every container labelled with one of those namespaces is
removed, and both netns are deleted. Callers therefore put everything they create in a
namespace they add to ``Cluster.namespaces``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker

from nodeagent.runtime.interface import LABEL_POD_NAMESPACE

REPO = Path(__file__).resolve().parents[2]
KEELSON = REPO / ".venv" / "bin" / "keelson"
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
PYTHON = REPO / ".venv" / "bin" / "python"
NODE_ADDRESS = "198.18.0.2/30"
GATEWAY_ADDRESS = "198.18.0.1/30"
GATEWAY_IP = "198.18.0.1"
PORT = 6443
T = TypeVar("T")


def wait_for(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.3) -> T:
    """Return ``probe()``'s first truthy value; raise AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class NetnsCommands:
    """Commands run beside a cluster inside its network namespace (``netns``), and
    kubectl with its admin kubeconfig (``kubeconfig``)."""

    netns: str
    kubeconfig: Path

    def run(self, *argv: str, check: bool = True, input: str | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["ip", "netns", "exec", self.netns, *argv], input=input,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}: "
                                 f"{result.stderr.strip()}")
        return result

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.run(str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args,
                        check=check, input=input, timeout=timeout)

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


@dataclass
class Cluster(NetnsCommands):
    """A running ``keelson up`` in ``netns``; ``run`` executes a command beside it."""

    netns: str
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    namespaces: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def curl(self, url: str, *, timeout: float = 2.0) -> subprocess.CompletedProcess[str]:
        return self.run("curl", "-sS", "--max-time", str(timeout), url, check=False,
                        timeout=timeout + 10)

    def readyz(self) -> bool:
        reply = self.run("curl", "-sk", "--max-time", "2", f"https://127.0.0.1:{PORT}/readyz",
                         check=False)
        return reply.stdout.strip() == "ok"

    def node_ready(self) -> bool:
        result = self.kubectl("get", "nodes", "-o", "json", check=False)
        if result.returncode != 0:
            return False
        for node in json.loads(result.stdout)["items"]:
            for condition in node.get("status", {}).get("conditions", []):
                if condition["type"] == "Ready" and condition["status"] == "True":
                    return True
        return False


def create_netns(node: str, gateway: str) -> None:
    """A node netns with an uplink veth to a gateway netns and a default route, so the
    agent finds an InternalIP; nothing of it touches the host's network."""
    sh("ip", "netns", "add", node)
    sh("ip", "netns", "add", gateway)
    node_exec = ("ip", "netns", "exec", node)
    gw_exec = ("ip", "netns", "exec", gateway)
    sh(*node_exec, "ip", "link", "set", "lo", "up")
    sh(*gw_exec, "ip", "link", "set", "lo", "up")
    sh(*node_exec, "ip", "link", "add", "kt-up", "type", "veth", "peer", "name", "kt-gw",
        "netns", gateway)
    sh(*node_exec, "ip", "addr", "add", NODE_ADDRESS, "dev", "kt-up")
    sh(*gw_exec, "ip", "addr", "add", GATEWAY_ADDRESS, "dev", "kt-gw")
    sh(*node_exec, "ip", "link", "set", "kt-up", "up")
    sh(*gw_exec, "ip", "link", "set", "kt-gw", "up")
    sh(*node_exec, "ip", "route", "add", "default", "via", GATEWAY_IP)
    sh(*node_exec, "sysctl", "-qw", "net.ipv4.ip_forward=1")


def delete_netns(*names: str) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a process the test started (by its PID), SIGKILL it if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def running_containers(namespace: str) -> int:
    """How many containers of pods in ``namespace`` dockerd still runs."""
    api = docker.APIClient(version="1.41", timeout=60)
    try:
        label = f"{LABEL_POD_NAMESPACE}={namespace}"
        return len(api.containers(filters={"label": [label], "status": "running"}))
    finally:
        api.close()


def containers(namespaces: list[str]) -> list[str]:
    """Ids of every container (any state) of pods in ``namespaces``."""
    api = docker.APIClient(version="1.41", timeout=60)
    try:
        return [item["Id"] for namespace in namespaces
                for item in api.containers(all=True, filters={
                    "label": [f"{LABEL_POD_NAMESPACE}={namespace}"]})]
    finally:
        api.close()


def remove_containers(namespaces: list[str]) -> None:
    """Force-remove every container (any state) of pods in ``namespaces``."""
    api = docker.APIClient(version="1.41", timeout=60)
    try:
        for container_id in containers(namespaces):
            api.remove_container(container_id, force=True, v=True)
    finally:
        api.close()


def _delete_namespaces(cluster: Cluster, *, timeout: float) -> None:
    """Delete the cluster's namespaces through the API and wait (bounded) for their pods."""
    if cluster.process is None or cluster.process.poll() is not None:
        return
    for namespace in cluster.namespaces:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false",
                        "--ignore-not-found", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = cluster.kubectl("get", "pods", "-A", "-o", "json", check=False)
        if pods.returncode == 0:
            items = json.loads(pods.stdout)["items"]
            if not any(p["metadata"]["namespace"] in cluster.namespaces for p in items):
                return
        time.sleep(0.5)


@contextlib.contextmanager
def running_cluster(tmp_dir: Path, *, namespace_teardown_timeout: float = 40.0
                    ) -> Iterator[Cluster]:
    """Start ``keelson up`` with data in ``tmp_dir``; yield once the node and proxy are ready.

    On exit (also on failure) everything is torn down as the module docstring says, then it
    is checked: an AssertionError names a netns or container that survived.
    ``namespace_teardown_timeout`` bounds the wait for pods to go through the API (the
    containers are force-removed after it either way).
    """
    ident = secrets.token_hex(3)
    node_ns, gateway_ns = f"kt-{ident}n", f"kt-{ident}g"
    cluster = Cluster(netns=node_ns, data_dir=tmp_dir, log=tmp_dir / "keelson.log")
    try:
        create_netns(node_ns, gateway_ns)
        with cluster.log.open("wb") as log:
            # nsenter joins the netns only: `ip netns exec` would also give keelson a
            # private mount namespace, hiding the agent's tmpfs volumes from dockerd.
            cluster.process = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{node_ns}", str(KEELSON), "up", "--data-dir",
                 str(tmp_dir), "--secure-port", str(PORT)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: cluster.process.poll() is not None or cluster.readyz(), timeout=60,
                 what="keelson up to answer /readyz")
        assert cluster.process.poll() is None, cluster.log.read_text()[-3000:]
        wait_for(cluster.node_ready, timeout=60, what="the node to be Ready")
        wait_for(lambda: "10.96.0.0/12" in cluster.run(
            "ip", "route", "show", "dev", "keelson-svc0", check=False).stdout,
            timeout=30, what="the proxy's keelson-svc0 route")
        yield cluster
    finally:
        try:
            _delete_namespaces(cluster, timeout=namespace_teardown_timeout)
        finally:
            if cluster.process is not None:
                stop_process(cluster.process)
            remove_containers(cluster.namespaces)
            delete_netns(node_ns, gateway_ns)
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert node_ns not in leftovers and gateway_ns not in leftovers, leftovers
    assert containers(cluster.namespaces) == []
