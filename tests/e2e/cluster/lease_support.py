"""A control plane and a separate ``keelson agent`` process, so a test can freeze the agent.

``keelson up`` runs the agent inside the apiserver's process; stopping its lease would stop
the control plane too. Here ``keelson apiserver`` (controllers on, a short
``--node-monitor-grace-period``) and ``keelson agent`` are two processes we start by PID,
both inside a fresh node netns ``kt-<id>n`` whose only uplink is a veth to an otherwise
empty gateway netns ``kt-<id>g`` (198.18.0.0/30, benchmark space), as in the cluster
harness: the agent's bridge, veths, iptables rules and ports live in that netns, and no
packet can reach the host's network. The agent authenticates like a kubelet, with a node
certificate (``system:node:<name>``) issued from the apiserver's CA, and renews its Lease
every second (``KEELSON_NODE_LEASE_DURATION_SECONDS=4``) so a 4 s grace period is safe.

Teardown, also on failure and also with the agent frozen: the agent is resumed (SIGCONT)
first, the test namespaces are deleted through the API and their pods awaited (bounded),
both processes are stopped by PID (SIGTERM, then SIGKILL), every container of this agent
(label ``io.keelson.agent``) or of the test namespaces is removed, and both netns are deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from apiserver.auth import pki
from nodeagent.runtime.interface import LABEL_AGENT, LABEL_POD_NAMESPACE
from tests.support.cluster import (
    KEELSON,
    PORT,
    NetnsCommands,
    create_netns,
    delete_netns,
    stop_process,
    wait_for,
)

GRACE_SECONDS = 4
LEASE_DURATION_SECONDS = 4


@dataclass
class LeaseCluster(NetnsCommands):
    """``keelson apiserver`` and ``keelson agent`` in ``netns``, each its own process."""

    netns: str
    gateway_netns: str
    data_dir: Path
    node_name: str
    apiserver: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    namespaces: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "apiserver" / "admin.kubeconfig"

    @property
    def agent_dir(self) -> Path:
        return self.data_dir / "agent"

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.data_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _readyz(self) -> bool:
        reply = self.run("curl", "-sk", "--max-time", "2", f"https://127.0.0.1:{PORT}/readyz",
                         check=False)
        return reply.stdout.strip() == "ok"

    def _spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        # nsenter execs the command in place (the PID we get is keelson's own) and joins
        # the netns only: `ip netns exec` would also give keelson a private mount
        # namespace, hiding the agent's tmpfs volumes from dockerd.
        with (self.data_dir / f"{name}.log").open("wb") as log:
            return subprocess.Popen(["nsenter", f"--net=/run/netns/{self.netns}", *argv],
                                    stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})})

    def start_apiserver(self) -> None:
        self.apiserver = self._spawn("apiserver", [
            str(KEELSON), "apiserver", "--data-dir", str(self.data_dir / "apiserver"),
            "--bind-address", "127.0.0.1", "--secure-port", str(PORT),
            "--node-monitor-grace-period", str(GRACE_SECONDS)])
        wait_for(lambda: self.apiserver.poll() is not None or self._readyz(), timeout=30,
                 what="keelson apiserver to answer /readyz")
        assert self.apiserver.poll() is None, self.log_tail("apiserver")

    def start_agent(self) -> None:
        kubeconfig = self._node_kubeconfig()
        self.agent = self._spawn("agent", [
            str(KEELSON), "agent", "--kubeconfig", str(kubeconfig), "--data-dir",
            str(self.agent_dir), "--node-name", self.node_name],
            env={"KEELSON_NODE_LEASE_DURATION_SECONDS": str(LEASE_DURATION_SECONDS)})
        wait_for(lambda: self.agent.poll() is not None or self.node_ready(), timeout=60,
                 what=f"node {self.node_name} to be Ready")
        assert self.agent.poll() is None, self.log_tail("agent")

    def _node_kubeconfig(self) -> Path:
        """A kubelet's credentials: a client certificate for ``system:node:<name>``."""
        authority = pki.pki_paths(self.data_dir / "apiserver")
        user = f"system:node:{self.node_name}"
        cert, key = pki.issue_client_cert(authority, common_name=user, groups=["system:nodes"])
        path = self.data_dir / "agent.kubeconfig"
        pki.write_kubeconfig(path, server=f"https://127.0.0.1:{PORT}",
                             ca_pem=authority.ca_cert.read_bytes(), cert_pem=cert,
                             key_pem=key, user=user)
        return path

    def node(self) -> dict[str, Any]:
        return self.get("node", self.node_name)

    def node_ready(self) -> bool:
        result = self.kubectl("get", "node", self.node_name, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        return condition(json.loads(result.stdout), "Ready").get("status") == "True"

    def freeze_agent(self) -> None:
        assert self.agent is not None and self.agent.poll() is None
        os.kill(self.agent.pid, signal.SIGSTOP)

    def thaw_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            os.kill(self.agent.pid, signal.SIGCONT)

    def agent_id(self) -> str | None:
        with contextlib.suppress(FileNotFoundError):
            return (self.agent_dir / "agent-id").read_text().strip() or None
        return None


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return item
    return {}


def _delete_namespaces(cluster: LeaseCluster) -> None:
    """Delete the test namespaces through the API and wait (bounded) for their pods to go."""
    if cluster.apiserver is None or cluster.apiserver.poll() is not None:
        return
    for namespace in cluster.namespaces:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false",
                        "--ignore-not-found", check=False)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        pods = cluster.kubectl("get", "pods", "-A", "-o", "json", check=False)
        if pods.returncode == 0 and not any(
                pod["metadata"]["namespace"] in cluster.namespaces
                for pod in json.loads(pods.stdout)["items"]):
            return
        time.sleep(0.5)


def _labels(cluster: LeaseCluster, agent_id: str | None) -> list[str]:
    labels = [f"{LABEL_POD_NAMESPACE}={namespace}" for namespace in cluster.namespaces]
    return labels + ([f"{LABEL_AGENT}={agent_id}"] if agent_id else [])


def containers(labels: list[str]) -> list[str]:
    """Ids of every container (any state) carrying one of ``labels`` (key=value)."""
    api = docker.APIClient(version="1.41", timeout=60)
    try:
        return sorted({item["Id"] for label in labels
                       for item in api.containers(all=True, filters={"label": [label]})})
    finally:
        api.close()


def _remove_containers(labels: list[str]) -> None:
    api = docker.APIClient(version="1.41", timeout=60)
    try:
        for container_id in containers(labels):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container_id, force=True, v=True)
    finally:
        api.close()


@contextlib.contextmanager
def lease_cluster(data_dir: Path) -> Iterator[LeaseCluster]:
    """Start both processes in fresh netns; tear everything down again, also on failure."""
    ident = secrets.token_hex(3)
    cluster = LeaseCluster(netns=f"kt-{ident}n", gateway_netns=f"kt-{ident}g",
                           data_dir=data_dir, node_name=f"kt-lease-{ident}")
    agent_id: str | None = None
    try:
        create_netns(cluster.netns, cluster.gateway_netns)
        cluster.start_apiserver()
        cluster.start_agent()
        yield cluster
    finally:
        try:
            cluster.thaw_agent()
            _delete_namespaces(cluster)
        finally:
            agent_id = cluster.agent_id()
            stop_process(cluster.agent)
            stop_process(cluster.apiserver)
            _remove_containers(_labels(cluster, agent_id))
            delete_netns(cluster.netns, cluster.gateway_netns)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert cluster.netns not in netns and cluster.gateway_netns not in netns
    assert containers(_labels(cluster, agent_id)) == []
