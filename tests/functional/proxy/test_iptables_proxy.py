"""Service traffic through rules the proxier programs into a private node namespace."""

import asyncio
import collections
import subprocess
import sys
import time

import pytest

from proxy.app import prepare_node
from proxy.netlink import local_addresses
from proxy.objects import service_info, slice_info
from proxy.options import ProxyOptions
from tests.functional.proxy.conftest import (
    CLIENT_IP,
    NODE_IP,
    UDP_CLIENT,
    sh,
    start_proxier,
)
from tests.functional.proxy.conftest import endpoint_slice as api_endpoint_slice
from tests.functional.proxy.conftest import service as api_service

pytestmark = pytest.mark.root


def service(*args, **kwargs):
    """The proxy's record of a Service built by the conftest helper (what its informer
    transform would store)."""
    return service_info(api_service(*args, **kwargs))


def endpoint_slice(*args, **kwargs):
    return slice_info(api_endpoint_slice(*args, **kwargs))


def hits(node, url, count, *, netns=None):
    netns = netns or node.netns
    script = f"for i in $(seq {count}); do curl -s --max-time 2 {url}; echo; done"
    return collections.Counter(sh("sh", "-c", script, netns=netns).split())


async def test_cluster_ip_reaches_every_backend(node, tmp_path):
    pods = [node.add_pod(i) for i in range(3)]
    proxier = await start_proxier(node, tmp_path)
    proxier.on_service(None, service("web", "10.96.0.10"))
    proxier.on_endpoint_slice(None, endpoint_slice("web", pods))
    assert await proxier.sync()
    counts = hits(node, "http://10.96.0.10/", 50)
    assert sum(counts.values()) == 50
    assert set(counts) == {"pod0", "pod1", "pod2"}, counts


async def test_client_ip_affinity_sticks(node, tmp_path):
    pods = [node.add_pod(i) for i in range(3)]
    proxier = await start_proxier(node, tmp_path)
    affinity = {"sessionAffinity": "ClientIP"}
    proxier.on_service(None, service("web", "10.96.0.10", **affinity))
    proxier.on_endpoint_slice(None, endpoint_slice("web", pods))
    assert await proxier.sync()
    counts = hits(node, "http://10.96.0.10/", 30)
    assert len(counts) == 1 and sum(counts.values()) == 30, counts


async def test_service_without_endpoints_refuses_at_once(node, tmp_path):
    proxier = await start_proxier(node, tmp_path)
    proxier.on_service(None, service("empty", "10.96.0.11"))
    assert await proxier.sync()
    started = time.monotonic()
    code, _ = node.curl("http://10.96.0.11/")
    elapsed = time.monotonic() - started
    assert code == 7  # curl: connection refused
    # the ip-netns-exec and curl start-up are included; the refusal itself is immediate
    assert elapsed < 0.1, elapsed
    # and it was our REJECT rule that refused it (counters read with python-iptables)
    read = (
        "from proxy.iptables.counters import chain_counters as c;"
        " print(c('filter', 'KEEL-SERVICES'))"
    )
    counters = sh(sys.executable, "-c", read, netns=node.netns)
    assert "comment='default/empty:p has no endpoints', target='REJECT', packets=1" in counters


async def test_node_port_from_outside_and_from_the_node(node, tmp_path):
    pods = [node.add_pod(i) for i in range(2)]
    proxier = await start_proxier(node, tmp_path)
    proxier.on_service(None, service("web", "10.96.0.12", nodePort=30080))
    proxier.on_endpoint_slice(None, endpoint_slice("web", pods))
    assert await proxier.sync()
    outside = hits(node, f"http://{NODE_IP}:30080/", 20, netns=node.client_netns)
    assert sum(outside.values()) == 20 and set(outside) <= {"pod0", "pod1"}, outside
    assert node.curl(f"http://{NODE_IP}:30080/")[1] in {"pod0", "pod1"}
    # localhost node ports are off by default
    assert node.curl("http://127.0.0.1:30080/", timeout=1)[0] != 0


async def test_hairpin_pod_reaches_itself_through_its_service(node, tmp_path):
    pod = node.add_pod(0)
    proxier = await start_proxier(node, tmp_path)
    proxier.on_service(None, service("web", "10.96.0.13"))
    proxier.on_endpoint_slice(None, endpoint_slice("web", [pod]))
    assert await proxier.sync()
    code, body = node.curl("http://10.96.0.13/", netns=pod.netns)
    assert (code, body) == (0, "pod0")


async def test_forward_is_accepted_for_pods_despite_drop_policy(node, tmp_path):
    pods = [node.add_pod(i) for i in range(2)]
    proxier = await start_proxier(node, tmp_path)
    proxier.on_service(None, service("web", "10.96.0.14"))
    proxier.on_endpoint_slice(None, endpoint_slice("web", [pods[1]]))
    assert await proxier.sync()
    assert node.curl("http://10.96.0.14/", netns=pods[0].netns) == (0, "pod1")
    assert node.curl(f"http://{pods[1].ip}:8080/", netns=pods[0].netns) == (0, "pod1")


async def test_udp_client_follows_a_replaced_endpoint(node, tmp_path):
    first, second = node.add_pod(0, udp_port=5353), node.add_pod(1, udp_port=5353)
    proxier = await start_proxier(node, tmp_path)
    dns = service("dns", "10.96.0.53", port=53, protocol="UDP")
    before = endpoint_slice("dns", [first], port=5353, protocol="UDP")
    proxier.on_service(None, dns)
    proxier.on_endpoint_slice(None, before)
    assert await proxier.sync()
    client = node.start(
        node.netns, sys.executable, "-c", UDP_CLIENT, "10.96.0.53", "53",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip

    def ask() -> str:
        client.stdin.write("go\n")
        client.stdin.flush()
        return client.stdout.readline().strip()

    assert [ask() for _ in range(3)] == ["pod0"] * 3
    unrelated = sh("conntrack", "-L", "-p", "udp", netns=node.netns, check=False)
    proxier.on_endpoint_slice(before, endpoint_slice("dns", [second], port=5353, protocol="UDP"))
    assert await proxier.sync()
    # pod0 still answers; only the cleared conntrack entry lets the same client move on
    assert [ask() for _ in range(3)] == ["pod1"] * 3
    assert "dport=53" in unrelated


async def test_partial_sync_for_one_service_leaves_the_others_working(node, tmp_path):
    pods = [node.add_pod(i) for i in range(2)]
    proxier = await start_proxier(node, tmp_path)
    for index in range(5):
        proxier.on_service(None, service(f"s{index}", f"10.96.1.{index}"))
        proxier.on_endpoint_slice(None, endpoint_slice(f"s{index}", pods))
    assert await proxier.sync()
    proxier.on_endpoint_slice(endpoint_slice("s0", pods), endpoint_slice("s0", [pods[0]]))
    assert await proxier.sync()
    assert proxier.last_sync_was_full is False
    assert set(hits(node, "http://10.96.1.0/", 10)) == {"pod0"}
    assert set(hits(node, "http://10.96.1.4/", 30)) == {"pod0", "pod1"}
    await asyncio.sleep(0)


async def test_client_ip_seen_by_pod_is_masqueraded_from_outside(node, tmp_path):
    """Traffic to a ClusterIP from outside the cluster CIDR is masqueraded (replies return)."""
    pod = node.add_pod(0)
    proxier = await start_proxier(node, tmp_path)
    proxier.on_service(None, service("web", "10.96.0.15"))
    proxier.on_endpoint_slice(None, endpoint_slice("web", [pod]))
    assert await proxier.sync()
    sh("ip", "route", "add", "10.96.0.0/12", "via", NODE_IP, netns=node.client_netns)
    assert node.curl("http://10.96.0.15/", netns=node.client_netns) == (0, "pod0")
    entries = sh("conntrack", "-L", "-p", "tcp", "--orig-src", CLIENT_IP, netns=node.netns)
    assert "src=10.244.0.10 dst=10.244.0.1" in entries  # reply goes to the node: SNATed


def test_nodeport_addresses_resolve_to_this_nodes_addresses(node):
    assert local_addresses(("198.18.0.0/24", "10.244.0.0/16"), netns=node.netns) == (
        "10.244.0.1",
        NODE_IP,
    )
    assert local_addresses(("192.0.2.0/24",), netns=node.netns) == ()


async def test_prepare_node_does_its_netlink_work_in_a_child_process(node, tmp_path):
    """The proxy resolves --nodeport-addresses and the safety route through
    ``python -m proxy.netlink`` and never imports pyroute2 itself (~9 MB resident)."""
    options = ProxyOptions(
        netns=node.netns, state_dir=tmp_path, iptables_backend="legacy",
        nodeport_addresses=("198.18.0.0/24",),
    )  # fmt: skip
    assert await prepare_node(options) == ("legacy", (NODE_IP,))
    assert "10.96.0.0/12" in sh("ip", "route", "show", "dev", "keelson-svc0", netns=node.netns)
    probe = "import sys, proxy.app; print('pyroute2' in sys.modules)"
    assert sh(sys.executable, "-c", probe).strip() == "False"
