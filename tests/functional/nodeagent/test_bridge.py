"""The pod network on real netlink: bridge, veth, address, route, hairpin, teardown."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from nodeagent.network import netlink
from nodeagent.network.bridge import BridgeNetwork, host_veth_name
from tests.functional.nodeagent.conftest import run_in

pytestmark = pytest.mark.root

CIDR = "10.250.7.0/24"

SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(); print("ready", flush=True)
    c, addr = s.accept(); c.sendall(("hello from pod, you are " + addr[0]).encode()); c.close()
    """
)
CLIENT = textwrap.dedent(
    """
    import socket, sys, time
    for _ in range(50):
        try:
            s = socket.create_connection((sys.argv[1], 8080), timeout=2); break
        except OSError:
            time.sleep(0.1)
    print(s.recv(100).decode())
    """
)


def test_pod_gets_eth0_with_address_and_default_route(host_netns, make_netns):
    pod = make_netns("pod")
    network = BridgeNetwork(pod_cidr=CIDR, host_netns=host_netns)

    iface = network.setup_pod(pod_uid="uid-1", netns_path=pod, address="10.250.7.5")

    assert iface.gateway == "10.250.7.1"
    assert netlink.interface_addresses("keelson0", netns=host_netns) == ["10.250.7.1/24"]
    assert netlink.interface_addresses("eth0", netns=pod) == ["10.250.7.5/24"]
    assert netlink.hairpin_enabled(host_veth_name("uid-1"), netns=host_netns)
    routes = run_in(pod, "ip", "route").stdout
    assert "default via 10.250.7.1 dev eth0" in routes
    assert "UP" in run_in(pod, "ip", "link", "show", "lo").stdout


def test_host_reaches_pod_ip_and_pods_reach_each_other(host_netns, make_netns):
    pod_a, pod_b = make_netns("pod"), make_netns("pod")
    network = BridgeNetwork(pod_cidr=CIDR, host_netns=host_netns)
    network.setup_pod(pod_uid="a", netns_path=pod_a, address="10.250.7.10")
    network.setup_pod(pod_uid="b", netns_path=pod_b, address="10.250.7.11")

    for client_ns, expected_peer in ((host_netns, "10.250.7.1"), (pod_b, "10.250.7.11")):
        server = subprocess.Popen(
            ["ip", "netns", "exec", pod_a.rsplit("/", 1)[1], sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            answer = run_in(client_ns, sys.executable, "-c", CLIENT, "10.250.7.10").stdout
            assert answer.strip() == f"hello from pod, you are {expected_peer}"
        finally:
            server.kill()
            server.wait()


def test_teardown_removes_veth_and_is_idempotent(host_netns, make_netns):
    pod = make_netns("pod")
    network = BridgeNetwork(pod_cidr=CIDR, host_netns=host_netns)
    network.setup_pod(pod_uid="gone", netns_path=pod, address="10.250.7.20")
    assert network.pod_veths() == {host_veth_name("gone")}

    assert network.teardown_pod(pod_uid="gone") is True
    assert network.teardown_pod(pod_uid="gone") is False

    assert network.pod_veths() == set()
    assert not netlink.link_exists("eth0", netns=pod)


def test_failed_setup_leaves_no_veth(host_netns):
    network = BridgeNetwork(pod_cidr=CIDR, host_netns=host_netns)

    with pytest.raises(netlink.NamespaceNotFoundError):
        network.setup_pod(pod_uid="x", netns_path="/proc/999999999/ns/net", address="10.250.7.30")

    assert network.pod_veths() == set()
    assert not netlink.link_exists("kp" + host_veth_name("x")[4:], netns=host_netns)


def test_setup_replaces_leftover_veth_of_an_interrupted_attempt(host_netns, make_netns):
    network = BridgeNetwork(pod_cidr=CIDR, host_netns=host_netns)
    network.ensure_bridge()
    netlink.create_veth(host_veth_name("again"), peer="ktleftover", netns=host_netns)
    pod = make_netns("pod")

    network.setup_pod(pod_uid="again", netns_path=pod, address="10.250.7.40")

    assert netlink.interface_addresses("eth0", netns=pod) == ["10.250.7.40/24"]
    assert not netlink.link_exists("ktleftover", netns=host_netns)


def test_calls_into_a_pod_namespace_leave_the_thread_where_it_was(host_netns, make_netns):
    pod = make_netns("pod")
    before = os.stat("/proc/thread-self/ns/net").st_ino

    BridgeNetwork(pod_cidr=CIDR, host_netns=host_netns).setup_pod(
        pod_uid="ns", netns_path=pod, address="10.250.7.50"
    )

    assert os.stat("/proc/thread-self/ns/net").st_ino == before
    assert netlink.interface_addresses("eth0", netns=pod) == ["10.250.7.50/24"]
