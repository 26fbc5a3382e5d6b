"""The proxier's sync engine against a stateful fake of iptables (proxy/proxier.py).

The fake applies restore input the way ``iptables-restore --noflush`` does (":" creates or
flushes a chain, "-A" appends and needs existing chains, "-X" deletes, a table commits
atomically), so the tests assert the resulting rule state, not the text.
"""

import copy

import pytest
from prometheus_client import CollectorRegistry

from proxy.healthz import ProxyHealth
from proxy.iptables.render import NodeInfo
from proxy.iptables.restore import RestoreError
from proxy.metrics import ProxyMetrics
from proxy.objects import service_info, slice_info
from proxy.proxier import Proxier

NODE = NodeInfo(name="node-a", cluster_cidr="10.244.0.0/16")
BUILTIN = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "OUTPUT", "POSTROUTING"),
}
TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "MARK", "MASQUERADE"}


class FakeIptables:
    def __init__(self):
        self.tables = {t: {c: [] for c in chains} for t, chains in BUILTIN.items()}
        self.texts = []
        self.fail_next = 0
        self.saves = 0

    async def restore(self, chunks):
        text = "\n".join(chunks)
        self.texts.append(text)
        if self.fail_next:
            self.fail_next -= 1
            raise RestoreError("injected failure", line=1, context="> 1 *filter")
        self.apply(text)

    def apply(self, text):
        tables = copy.deepcopy(self.tables)
        chains = None
        for line in text.splitlines():
            if line.startswith("*"):
                chains = tables[line[1:]]
            elif line.startswith(":"):
                chains[line[1:].split()[0]] = []
            elif line.startswith(("-A ", "-I ")):
                words = line.split()
                target = words[words.index("-j") + 1]
                assert words[1] in chains, f"append to missing chain: {line}"
                assert target in chains or target in TARGETS, f"missing target: {line}"
                if line.startswith("-I "):  # "-I CHAIN 1 spec", saved as "-A CHAIN spec"
                    chains[words[1]].insert(0, f"-A {words[1]} {line.split(' ', 3)[3]}")
                else:
                    chains[words[1]].append(line)
            elif line.startswith("-X "):
                name = line.split()[1]
                users = [r for rules in chains.values() for r in rules if f"-j {name}" in r]
                assert not users, f"deleting referenced chain {name}: {users}"
                del chains[name]
        self.tables = tables

    async def save(self):
        self.saves += 1
        saved = {}
        for table, chains in self.tables.items():
            declared = [f":{name} - [0:0]" for name in chains]
            rules = [rule for chain_rules in chains.values() for rule in chain_rules]
            saved[table] = "\n".join([f"*{table}", *declared, *rules, "COMMIT"])
        return saved

    async def canary_present(self):
        return "KEEL-PROXY-CANARY" in self.tables["filter"]


def service(name, ip, *, protocol="TCP", **spec):
    return service_info(
        {
            "metadata": {"namespace": "default", "name": name},
            "spec": {
                "clusterIP": ip,
                "ports": [{"name": "p", "port": 80, "protocol": protocol}],
                **spec,
            },
        }
    )


def endpoint_slice(name, service_name, ips, *, protocol="TCP", when=None):
    meta = {
        "namespace": "default",
        "name": name,
        "labels": {"kubernetes.io/service-name": service_name},
    }
    if when:
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": when}
    return slice_info(
        {
            "metadata": meta,
            "addressType": "IPv4",
            "ports": [{"name": "p", "port": 8080, "protocol": protocol}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        }
    )


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def rig():
    iptables, clock, flows = FakeIptables(), Clock(), []
    registry = CollectorRegistry()

    async def delete_flows(batch):
        flows.extend(batch)
        return True

    proxier = Proxier(
        node=NODE,
        iptables=iptables,
        metrics=ProxyMetrics(registry),
        health=ProxyHealth(timeout=60, clock=clock),
        sync_period=30,
        min_sync_period=0,
        delete_flows=delete_flows,
        clock=clock,
        wall_clock=clock,
    )
    return proxier, iptables, clock, flows, registry


async def fresh_state(services, slices):
    """The rule state a brand-new proxier reaches with one full sync of these objects."""
    rig_iptables = FakeIptables()
    proxier = Proxier(
        node=NODE,
        iptables=rig_iptables,
        metrics=ProxyMetrics(CollectorRegistry()),
        health=ProxyHealth(timeout=60),
        sync_period=30,
        min_sync_period=0,
    )
    for obj in services:
        proxier.on_service(None, obj)
    for obj in slices:
        proxier.on_endpoint_slice(None, obj)
    assert await proxier.sync()
    return rig_iptables.tables


async def test_partial_syncs_reach_the_same_state_as_a_full_sync(rig):
    proxier, iptables, clock, _flows, registry = rig
    web, api = service("web", "10.96.0.10"), service("api", "10.96.0.20")
    web_eps = endpoint_slice("web-1", "web", ["10.244.0.5", "10.244.0.6"])
    api_eps = endpoint_slice("api-1", "api", ["10.244.0.9"])
    for obj in (web, api):
        proxier.on_service(None, obj)
    for obj in (web_eps, api_eps):
        proxier.on_endpoint_slice(None, obj)
    assert await proxier.sync()
    assert proxier.last_sync_was_full
    assert iptables.tables["nat"]["OUTPUT"] == [
        '-A OUTPUT -m comment --comment "keelson service portals" -j KEEL-SERVICES'
    ]
    assert iptables.tables == await fresh_state([web, api], [web_eps, api_eps])

    # one endpoint goes away: only web's chains are in the restore input
    web_eps2 = endpoint_slice("web-1", "web", ["10.244.0.6"])
    proxier.on_endpoint_slice(web_eps, web_eps2)
    clock.now += 1
    assert await proxier.sync()
    assert proxier.last_sync_was_full is False
    partial = iptables.texts[-1]
    assert "10.244.0.6:8080" in partial and "10.244.0.9:8080" not in partial
    assert iptables.tables == await fresh_state([web, api], [web_eps2, api_eps])

    # a Service is deleted: its chains disappear, the other one is untouched
    proxier.on_service(api, None)
    clock.now += 1
    assert await proxier.sync()
    assert iptables.tables == await fresh_state([web], [web_eps2, api_eps])
    assert not any("10.96.0.20" in rule for rule in iptables.tables["nat"]["KEEL-SERVICES"])
    sample = registry.get_sample_value
    assert sample("kubeproxy_sync_partial_proxy_rules_duration_seconds_count") == 2
    assert sample("kubeproxy_sync_proxy_rules_iptables_total", {"table": "nat"}) == sum(
        len(rules) for chain, rules in iptables.tables["nat"].items() if chain.startswith("KEEL-")
    )


async def test_failed_restore_counts_and_falls_back_to_full_sync(rig):
    proxier, iptables, clock, _flows, registry = rig
    proxier.on_service(None, service("web", "10.96.0.10"))
    assert await proxier.sync()
    web_eps = endpoint_slice("web-1", "web", ["10.244.0.5"])
    proxier.on_endpoint_slice(None, web_eps)
    iptables.fail_next = 1
    clock.now += 1
    assert not await proxier.sync()
    assert (
        registry.get_sample_value("kubeproxy_sync_proxy_rules_iptables_restore_failures_total") == 1
    )
    clock.now += 1
    assert await proxier.sync()  # nothing new was recorded, yet the state is repaired
    assert proxier.last_sync_was_full
    assert iptables.tables == await fresh_state([service("web", "10.96.0.10")], [web_eps])


async def test_periodic_full_sync_reads_the_kernel_only_when_the_canary_is_gone(rig):
    proxier, iptables, clock, _flows, _registry = rig
    proxier.on_service(None, service("web", "10.96.0.10"))
    assert await proxier.sync()
    assert iptables.saves == 1
    clock.now += 31
    assert await proxier.sync()
    assert proxier.last_sync_was_full and iptables.saves == 1
    # someone flushes everything (firewall reload): the next full sync repairs it all
    iptables.tables = {t: {c: [] for c in chains} for t, chains in BUILTIN.items()}
    clock.now += 31
    assert await proxier.sync()
    assert iptables.saves == 2
    assert iptables.tables == await fresh_state([service("web", "10.96.0.10")], [])
    assert len(iptables.tables["filter"]["FORWARD"]) == 3  # no duplicated jumps


async def test_full_sync_deletes_stale_chains_left_by_a_previous_run(rig):
    proxier, iptables, _clock, _flows, _registry = rig
    iptables.tables["nat"]["KEEL-SEP-OLDOLDOLDOLDOLDO"] = ["-A KEEL-SEP-OLDOLDOLDOLDOLDO -j DNAT"]
    iptables.tables["nat"]["DOCKER"] = ["-A DOCKER -j RETURN"]
    assert await proxier.sync()
    assert "KEEL-SEP-OLDOLDOLDOLDOLDO" not in iptables.tables["nat"]
    assert iptables.tables["nat"]["DOCKER"] == ["-A DOCKER -j RETURN"]


async def test_udp_endpoint_removal_and_first_endpoint_clear_conntrack(rig):
    proxier, _iptables, clock, flows, _registry = rig
    dns = service("dns", "10.96.0.53", protocol="UDP")
    proxier.on_service(None, dns)
    assert await proxier.sync()
    first = endpoint_slice("dns-1", "dns", ["10.244.0.5"], protocol="UDP")
    proxier.on_endpoint_slice(None, first)
    clock.now += 1
    assert await proxier.sync()
    assert [f.argv() for f in flows] == [
        ["conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53", "--dport", "80"]
    ]
    flows.clear()
    proxier.on_endpoint_slice(first, endpoint_slice("dns-1", "dns", ["10.244.0.7"], protocol="UDP"))
    clock.now += 1
    assert await proxier.sync()
    assert [f.argv() for f in flows] == [
        ["conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53", "--dport", "80",
         "--dst-nat", "10.244.0.5"],
    ]  # fmt: skip


async def test_health_and_programming_latency(rig):
    proxier, _iptables, clock, _flows, registry = rig
    assert not proxier.health.healthy()
    proxier.on_service(None, service("web", "10.96.0.10"))
    proxier.on_endpoint_slice(
        None, endpoint_slice("web-1", "web", ["10.244.0.5"], when="1970-01-01T00:16:38Z")
    )
    assert registry.get_sample_value("kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 1
    assert await proxier.sync()
    assert proxier.health.healthy()
    assert registry.get_sample_value("kubeproxy_network_programming_duration_seconds_sum") == 2.0
    assert registry.get_sample_value("kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 0
    clock.now += 61
    assert not proxier.health.healthy()


async def test_udp_node_port_flows_are_deleted_and_syncs_keep_succeeding(rig):
    """Stale-flow filters with and without a Service IP sort together (a node-port filter
    has none): every sync succeeds and /healthz follows."""
    proxier, _iptables, clock, flows, _registry = rig
    body = {
        "metadata": {"namespace": "default", "name": "dns"},
        "spec": {
            "type": "NodePort", "clusterIP": "10.96.0.53",
            "ports": [{"name": "p", "port": 53, "protocol": "UDP", "nodePort": 30053}],
        },
    }  # fmt: skip
    proxier.on_service(None, service_info(body))
    first = endpoint_slice("dns-1", "dns", ["10.244.0.5", "10.244.0.6"], protocol="UDP")
    proxier.on_endpoint_slice(None, first)
    assert await proxier.sync()
    clock.now += 1
    proxier.on_endpoint_slice(first, endpoint_slice("dns-1", "dns", ["10.244.0.6"], protocol="UDP"))
    assert await proxier.sync()
    gone = [flow for flow in flows if flow.dst_nat == "10.244.0.5"]
    assert {flow.orig_dst for flow in gone} >= {None, "10.96.0.53"}
    assert proxier.health.healthy()
