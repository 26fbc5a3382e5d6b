"""A throw-away "node" for proxy tests: real netfilter and netlink, nothing on the host.

Per test: a node network namespace with a bridge (10.244.0.1/24) and veth "pods", each in
its own namespace running a tiny server; an "outside" client namespace linked to the node by
a veth pair (node address 198.18.0.1); the node's FORWARD policy set to DROP as Docker does.
Every process is killed by PID and every namespace deleted, also when the test fails.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from proxy import conntrack
from proxy.app import prepare_node
from proxy.healthz import ProxyHealth
from proxy.iptables.render import NodeInfo
from proxy.iptables.restore import Iptables
from proxy.metrics import ProxyMetrics
from proxy.options import ProxyOptions
from proxy.proxier import Proxier

pytestmark = pytest.mark.root

NODE_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
CLUSTER_CIDR = "10.244.0.0/16"

UDP_SERVER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", int(sys.argv[2])))
while True:
    data, peer = sock.recvfrom(2048)
    sock.sendto(sys.argv[1].encode(), peer)
"""

UDP_CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 40000))
sock.settimeout(1.0)
for line in sys.stdin:
    sock.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        print(sock.recvfrom(2048)[0].decode(), flush=True)
    except TimeoutError:
        print("timeout", flush=True)
"""


def sh(*argv: str, netns: str | None = None, check: bool = True) -> str:
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    result = subprocess.run(full, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Pod:
    name: str
    netns: str
    ip: str


@dataclass
class TestNode:
    netns: str
    client_netns: str
    tag: str
    pods: list[Pod] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def run(self, *argv: str, check: bool = True) -> str:
        return sh(*argv, netns=self.netns, check=check)

    def add_pod(self, index: int, *, http_port: int = 8080, udp_port: int | None = None) -> Pod:
        pod = Pod(name=f"pod{index}", netns=f"kt-{self.tag}-p{index}", ip=f"10.244.0.{10 + index}")
        sh("ip", "netns", "add", pod.netns)
        self.namespaces.append(pod.netns)
        host_end = f"ktv{self.tag[:6]}{index}"
        sh("ip", "link", "add", host_end, "netns", self.netns, "type", "veth",
           "peer", "name", "eth0", "netns", pod.netns)  # fmt: skip
        self.run("ip", "link", "set", host_end, "master", "kt-br0", "up")
        # as kubelet's hairpin-veth mode does: a pod reaching itself through its Service
        # is DNATed on the bridge and sent back out of the port it came in on
        self.run("ip", "link", "set", host_end, "type", "bridge_slave", "hairpin", "on")
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "addr", "add", f"{pod.ip}/24", "dev", "eth0"],
            ["ip", "route", "add", "default", "via", "10.244.0.1"],
        ):
            sh(*command, netns=pod.netns)
        root = Path(f"/tmp/kt-{self.tag}-{pod.name}")
        root.mkdir(exist_ok=True)
        (root / "index.html").write_text(pod.name)
        self.start(pod.netns, "/bin/busybox", "httpd", "-f", "-p", str(http_port), "-h", str(root))
        if udp_port:
            self.start(pod.netns, sys.executable, "-c", UDP_SERVER, pod.name, str(udp_port))
        self.pods.append(pod)
        wait_until(lambda: f":{http_port}" in sh("ss", "-ltn", netns=pod.netns))
        return pod

    def start(self, netns: str, *argv: str, **popen) -> subprocess.Popen:
        process = subprocess.Popen(["ip", "netns", "exec", netns, *argv], **popen)
        self.processes.append(process)
        return process

    def curl(self, url: str, *, netns: str | None = None, timeout: float = 2) -> tuple[int, str]:
        result = subprocess.run(
            ["ip", "netns", "exec", netns or self.netns, "curl", "-s", "--max-time",
             str(timeout), url],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return result.returncode, result.stdout


def wait_until(predicate, *, timeout: float = 5.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


@pytest.fixture
def node():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tag = uuid.uuid4().hex[:8]
    test_node = TestNode(netns=f"kt-{tag}-node", client_netns=f"kt-{tag}-cli", tag=tag)
    try:
        for netns in (test_node.netns, test_node.client_netns):
            sh("ip", "netns", "add", netns)
            test_node.namespaces.append(netns)
            sh("ip", "link", "set", "lo", "up", netns=netns)
        test_node.run("ip", "link", "add", "kt-br0", "type", "bridge")
        test_node.run("ip", "addr", "add", "10.244.0.1/24", "dev", "kt-br0")
        test_node.run("ip", "link", "set", "kt-br0", "up")
        sh("ip", "link", "add", "kt-up", "netns", test_node.netns, "type", "veth",
           "peer", "name", "eth0", "netns", test_node.client_netns)  # fmt: skip
        test_node.run("ip", "addr", "add", f"{NODE_IP}/30", "dev", "kt-up")
        test_node.run("ip", "link", "set", "kt-up", "up")
        sh("ip", "addr", "add", f"{CLIENT_IP}/30", "dev", "eth0", netns=test_node.client_netns)
        sh("ip", "link", "set", "eth0", "up", netns=test_node.client_netns)
        # what Docker does to a host: forwarding on, FORWARD policy DROP
        test_node.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        test_node.run("iptables-legacy", "-P", "FORWARD", "DROP")
        yield test_node
    finally:
        for process in test_node.processes:
            process.kill()
            process.wait()
        for netns in reversed(test_node.namespaces):
            subprocess.run(["ip", "netns", "del", netns], check=False)
        subprocess.run(["rm", "-rf", *map(str, Path("/tmp").glob(f"kt-{tag}-*"))], check=False)


async def start_proxier(node: TestNode, tmp_path: Path, **options) -> Proxier:
    """Prepare the node (safety route, sysctls) and build a proxier on its real netfilter."""
    opts = ProxyOptions(
        netns=node.netns, state_dir=tmp_path, cluster_cidr=CLUSTER_CIDR, node_name="node-a",
        iptables_backend="legacy", **options,
    )  # fmt: skip
    backend, _addresses = await prepare_node(opts)
    return Proxier(
        node=NodeInfo(name="node-a", cluster_cidr=CLUSTER_CIDR),
        iptables=Iptables(backend, netns=node.netns),
        metrics=ProxyMetrics(CollectorRegistry()),
        health=ProxyHealth(timeout=60),
        sync_period=30,
        min_sync_period=0,
        delete_flows=functools.partial(conntrack.delete, netns=node.netns),
    )


def service(name: str, ip: str, *, port: int = 80, protocol: str = "TCP", **spec) -> dict:
    ports = [{"name": "p", "port": port, "protocol": protocol}]
    if "nodePort" in spec:
        ports[0]["nodePort"] = spec.pop("nodePort")
        spec.setdefault("type", "NodePort")
    return {
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": ip, "ports": ports, **spec},
    }


def endpoint_slice(name: str, pods: list[Pod], *, port: int = 8080, protocol: str = "TCP"):
    return {
        "metadata": {
            "namespace": "default",
            "name": f"{name}-1",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": port, "protocol": protocol}],
        "endpoints": [
            {"addresses": [pod.ip], "conditions": {"ready": True}, "nodeName": "node-a"}
            for pod in pods
        ],
    }
