"""Golden rule text for the iptables renderer (proxy/iptables/render.py)."""

from proxy.iptables import names
from proxy.iptables import render as renderer
from proxy.iptables.render import NodeInfo
from proxy.objects import service_info, slice_info

NODE = NodeInfo(name="node-a", cluster_cidr="10.244.0.0/16")
SVC = "KEEL-SVC-CDGGSHYLG3RE2FKL"  # default/web:http tcp
SVL = "KEEL-SVL-CDGGSHYLG3RE2FKL"
EXT = "KEEL-EXT-CDGGSHYLG3RE2FKL"
SEP5 = "KEEL-SEP-7U6MWNJWR3SADOJA"  # 10.244.0.5:8080
SEP17 = "KEEL-SEP-A4JCWMD6AMIS43DD"  # 10.244.1.7:8080
HTTP = '-m comment --comment "default/web:http"'
CLUSTER = (
    '-m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80'
)
MASQ_OFF_CLUSTER = f"-A {SVC} {CLUSTER} ! -s 10.244.0.0/16 -j KEEL-MARK-MASQ"


def render_service(svc, slices, node):
    """render.render_service on the records the proxy's informers keep of these API dicts."""
    return renderer.render_service(service_info(svc), [slice_info(s) for s in slices], node)


def render(services, slices, node, **kwargs):
    records = [service_info(s) for s in services], [slice_info(s) for s in slices]
    return renderer.render(*records, node, **kwargs)


def service(name="web", ports=None, status=None, **spec):
    ports = ports or [{"name": "http", "port": 80, "protocol": "TCP"}]
    body = {
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": "10.96.0.10", "ports": ports, **spec},
    }
    if status:
        body["status"] = status
    return body


def endpoint_slice(name, endpoints, ports=None, service_name="web"):
    return {
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": ports or [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def endpoint(ip, node="node-a", **conditions):
    return {"addresses": [ip], "conditions": {"ready": True, **conditions}, "nodeName": node}


def all_lines(rules):
    return [
        *rules.nat_services,
        *rules.nat_nodeports,
        *rules.filter_services,
        *rules.filter_external,
        *rules.filter_nodeports,
        *rules.chain_rules,
    ]


def sep_rules(sep, address, ip, *, proto="tcp", comment=HTTP):
    return [
        f"-A {sep} {comment} -s {ip}/32 -j KEEL-MARK-MASQ",
        f"-A {sep} {comment} -m {proto} -p {proto} -j DNAT --to-destination {address}",
    ]


FULL_CLUSTER_IP = f"""*nat
:KEEL-SERVICES - [0:0]
:KEEL-NODEPORTS - [0:0]
:KEEL-POSTROUTING - [0:0]
:KEEL-MARK-MASQ - [0:0]
:{SVC} - [0:0]
:{SEP5} - [0:0]
:{SEP17} - [0:0]
{MASQ_OFF_CLUSTER}
-A {SVC} -m comment --comment "default/web:http -> 10.244.0.5:8080" -m statistic --mode random --probability 0.5000000000 -j {SEP5}
-A {SVC} -m comment --comment "default/web:http -> 10.244.1.7:8080" -j {SEP17}
-A {SEP5} {HTTP} -s 10.244.0.5/32 -j KEEL-MARK-MASQ
-A {SEP5} {HTTP} -m tcp -p tcp -j DNAT --to-destination 10.244.0.5:8080
-A {SEP17} {HTTP} -s 10.244.1.7/32 -j KEEL-MARK-MASQ
-A {SEP17} {HTTP} -m tcp -p tcp -j DNAT --to-destination 10.244.1.7:8080
-A KEEL-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KEEL-POSTROUTING -j MARK --xor-mark 0x4000
-A KEEL-POSTROUTING -m comment --comment "keelson service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KEEL-MARK-MASQ -j MARK --or-mark 0x4000
-A KEEL-SERVICES {CLUSTER} -j {SVC}
-A KEEL-SERVICES -m comment --comment "keelson service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KEEL-NODEPORTS
COMMIT
*filter
:KEEL-SERVICES - [0:0]
:KEEL-EXTERNAL-SERVICES - [0:0]
:KEEL-NODEPORTS - [0:0]
:KEEL-FORWARD - [0:0]
:KEEL-FIREWALL - [0:0]
-A KEEL-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KEEL-FORWARD -m comment --comment "keelson forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KEEL-FORWARD -m comment --comment "keelson forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KEEL-FORWARD -m comment --comment "keelson forwarding rules for the cluster CIDR" -s 10.244.0.0/16 -j ACCEPT
-A KEEL-FORWARD -m comment --comment "keelson forwarding rules for the cluster CIDR" -d 10.244.0.0/16 -j ACCEPT
COMMIT
"""  # noqa: E501


def test_cluster_ip_full_text():
    slices = [
        endpoint_slice("web-a", [endpoint("10.244.1.7", node="node-b"), endpoint("10.244.0.5")])
    ]
    ruleset = render([service()], slices, NODE)
    assert ruleset.text == FULL_CLUSTER_IP
    assert (ruleset.nat_rules, ruleset.filter_rules) == (13, 5)


def test_chain_names_are_prefix_plus_base32_hash_and_ours():
    assert names.service_chain("default/web:http", "TCP") == SVC
    assert len(SVC) <= 28
    assert names.is_our_chain(SVC) and names.is_per_service_chain(SEP5)
    assert not names.is_our_chain("DOCKER-USER") and not names.is_per_service_chain("KEEL-SERVICES")


def test_multi_port_tcp_and_udp():
    ports = [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]
    slice_ports = [
        {"name": "http", "port": 8080, "protocol": "TCP"},
        {"name": "dns", "port": 5353, "protocol": "UDP"},
    ]
    rules = render_service(
        service(ports=ports), [endpoint_slice("web-a", [endpoint("10.244.0.5")], slice_ports)], NODE
    )
    dns_svc, dns_sep = "KEEL-SVC-3OI236ZBKTWAFB2I", "KEEL-SEP-3LIG32TRU5LBJJTY"
    dns_cluster = (
        '-m comment --comment "default/web:dns cluster IP" -m udp -p udp -d 10.96.0.10 --dport 53'
    )
    assert all_lines(rules) == [
        f"-A KEEL-SERVICES {CLUSTER} -j {SVC}",
        f"-A KEEL-SERVICES {dns_cluster} -j {dns_svc}",
        MASQ_OFF_CLUSTER,
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.0.5:8080" -j {SEP5}',
        *sep_rules(SEP5, "10.244.0.5:8080", "10.244.0.5"),
        f"-A {dns_svc} {dns_cluster} ! -s 10.244.0.0/16 -j KEEL-MARK-MASQ",
        f'-A {dns_svc} -m comment --comment "default/web:dns -> 10.244.0.5:5353" -j {dns_sep}',
        *sep_rules(
            dns_sep,
            "10.244.0.5:5353",
            "10.244.0.5",
            proto="udp",
            comment='-m comment --comment "default/web:dns"',
        ),
    ]
    assert rules.chains == (SVC, SEP5, dns_svc, dns_sep)


def test_named_target_port_resolved_per_slice():
    slices = [
        endpoint_slice("web-a", [endpoint("10.244.0.5")], [{"name": "http", "port": 8080}]),
        endpoint_slice("web-b", [endpoint("10.244.1.7")], [{"name": "http", "port": 9090}]),
    ]
    ports = [{"name": "http", "port": 80, "targetPort": "http"}]
    rules = render_service(service(ports=ports), slices, NODE)
    assert [line.split("--to-destination ")[1] for line in rules.chain_rules if "DNAT" in line] == [
        "10.244.0.5:8080",
        "10.244.1.7:9090",
    ]


def test_node_port_external_ips_and_load_balancer_ips():
    ports = [{"name": "http", "port": 80, "nodePort": 30080}]
    svc = service(
        ports=ports,
        type="LoadBalancer",
        externalIPs=["192.0.2.10"],
        status={"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}},
    )
    rules = render_service(svc, [endpoint_slice("web-a", [endpoint("10.244.0.5")])], NODE)
    tcp80 = "-m tcp -p tcp"
    assert all_lines(rules) == [
        f"-A KEEL-SERVICES {CLUSTER} -j {SVC}",
        f'-A KEEL-SERVICES -m comment --comment "default/web:http external IP" {tcp80}'
        f" -d 192.0.2.10 --dport 80 -j {EXT}",
        f'-A KEEL-SERVICES -m comment --comment "default/web:http loadbalancer IP" {tcp80}'
        f" -d 198.51.100.7 --dport 80 -j {EXT}",
        f"-A KEEL-NODEPORTS {HTTP} {tcp80} --dport 30080 -j {EXT}",
        MASQ_OFF_CLUSTER,
        f'-A {EXT} -m comment --comment "masquerade traffic for default/web:http external'
        ' destinations" -j KEEL-MARK-MASQ',
        f"-A {EXT} -j {SVC}",
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.0.5:8080" -j {SEP5}',
        *sep_rules(SEP5, "10.244.0.5:8080", "10.244.0.5"),
    ]


def test_client_ip_affinity_uses_recent_module():
    svc = service(
        sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}
    )
    slices = [endpoint_slice("web-a", [endpoint("10.244.0.5"), endpoint("10.244.1.7")])]
    rules = render_service(svc, slices, NODE)
    to5 = '-m comment --comment "default/web:http -> 10.244.0.5:8080"'
    to17 = '-m comment --comment "default/web:http -> 10.244.1.7:8080"'
    assert rules.chain_rules == (
        MASQ_OFF_CLUSTER,
        f"-A {SVC} {to5} -m recent --name {SEP5} --rcheck --seconds 60 --reap -j {SEP5}",
        f"-A {SVC} {to17} -m recent --name {SEP17} --rcheck --seconds 60 --reap -j {SEP17}",
        f"-A {SVC} {to5} -m statistic --mode random --probability 0.5000000000 -j {SEP5}",
        f"-A {SVC} {to17} -j {SEP17}",
        f"-A {SEP5} {HTTP} -s 10.244.0.5/32 -j KEEL-MARK-MASQ",
        f"-A {SEP5} {HTTP} -m recent --name {SEP5} --set -m tcp -p tcp"
        " -j DNAT --to-destination 10.244.0.5:8080",
        f"-A {SEP17} {HTTP} -s 10.244.1.7/32 -j KEEL-MARK-MASQ",
        f"-A {SEP17} {HTTP} -m recent --name {SEP17} --set -m tcp -p tcp"
        " -j DNAT --to-destination 10.244.1.7:8080",
    )


def _local_policy_service():
    ports = [{"name": "http", "port": 80, "nodePort": 30080}]
    return service(
        ports=ports, type="NodePort", externalTrafficPolicy="Local", healthCheckNodePort=32000
    )


def test_external_traffic_policy_local_keeps_source_and_uses_local_endpoints():
    slices = [
        endpoint_slice("web-a", [endpoint("10.244.0.5"), endpoint("10.244.1.7", node="node-b")])
    ]
    rules = render_service(_local_policy_service(), slices, NODE)
    ext_comment = "for default/web:http external destinations"
    assert all_lines(rules) == [
        f"-A KEEL-SERVICES {CLUSTER} -j {SVC}",
        f"-A KEEL-NODEPORTS {HTTP} -m tcp -p tcp --dport 30080 -j {EXT}",
        '-A KEEL-NODEPORTS -m comment --comment "default/web:http health check node port"'
        " -m tcp -p tcp --dport 32000 -j ACCEPT",
        MASQ_OFF_CLUSTER,
        f'-A {EXT} -m comment --comment "pod traffic {ext_comment}" -s 10.244.0.0/16 -j {SVC}',
        f'-A {EXT} -m comment --comment "masquerade LOCAL traffic {ext_comment}"'
        " -m addrtype --src-type LOCAL -j KEEL-MARK-MASQ",
        f'-A {EXT} -m comment --comment "route LOCAL traffic {ext_comment}"'
        f" -m addrtype --src-type LOCAL -j {SVC}",
        f"-A {EXT} -j {SVL}",
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.0.5:8080"'
        f" -m statistic --mode random --probability 0.5000000000 -j {SEP5}",
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.1.7:8080" -j {SEP17}',
        f'-A {SVL} -m comment --comment "default/web:http -> 10.244.0.5:8080" -j {SEP5}',
        *sep_rules(SEP5, "10.244.0.5:8080", "10.244.0.5"),
        *sep_rules(SEP17, "10.244.1.7:8080", "10.244.1.7"),
    ]


def test_external_traffic_policy_local_without_local_endpoints_drops_external():
    slices = [endpoint_slice("web-a", [endpoint("10.244.1.7", node="node-b")])]
    rules = render_service(_local_policy_service(), slices, NODE)
    assert rules.filter_external == (
        '-A KEEL-EXTERNAL-SERVICES -m comment --comment "default/web:http has no local endpoints"'
        " -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP",
    )
    assert f"-A {EXT} -j {SVL}" not in rules.chain_rules
    assert SVL not in rules.chains and SVC in rules.chains  # cluster traffic still works


def test_internal_traffic_policy_local():
    slices = [
        endpoint_slice("web-a", [endpoint("10.244.0.5"), endpoint("10.244.1.7", node="node-b")])
    ]
    rules = render_service(service(internalTrafficPolicy="Local"), slices, NODE)
    assert rules.nat_services == (f"-A KEEL-SERVICES {CLUSTER} -j {SVL}",)
    assert rules.chains == (SVL, SEP5)
    assert f'-A {SVL} -m comment --comment "default/web:http -> 10.244.0.5:8080" -j {SEP5}' in (
        rules.chain_rules
    )

    remote_only = [endpoint_slice("web-a", [endpoint("10.244.1.7", node="node-b")])]
    rules = render_service(service(internalTrafficPolicy="Local"), remote_only, NODE)
    assert all_lines(rules) == [
        '-A KEEL-SERVICES -m comment --comment "default/web:http has no local endpoints"'
        " -m tcp -p tcp -d 10.96.0.10 --dport 80 -j DROP"
    ]


def test_no_endpoints_rejects_every_entry_point():
    ports = [{"name": "http", "port": 80, "nodePort": 30080}]
    svc = service(ports=ports, type="LoadBalancer", externalIPs=["192.0.2.10"])
    not_ready = [endpoint_slice("web-a", [endpoint("10.244.0.5", ready=False)])]
    rules = render_service(svc, not_ready, NODE)
    comment = '-m comment --comment "default/web:http has no endpoints"'
    assert all_lines(rules) == [
        f"-A KEEL-SERVICES {comment} -m tcp -p tcp -d 10.96.0.10 --dport 80 -j REJECT",
        f"-A KEEL-EXTERNAL-SERVICES {comment} -m tcp -p tcp -d 192.0.2.10 --dport 80 -j REJECT",
        f"-A KEEL-EXTERNAL-SERVICES {comment} -m addrtype --dst-type LOCAL -m tcp -p tcp"
        " --dport 30080 -j REJECT",
    ]
    assert rules.chains == ()


def test_terminating_serving_endpoints_only_when_none_ready():
    terminating = endpoint("10.244.0.5", ready=False, serving=True, terminating=True)
    stopped = endpoint("10.244.0.6", ready=False, serving=False, terminating=True)
    rules = render_service(service(), [endpoint_slice("web-a", [terminating, stopped])], NODE)
    assert rules.chains == (SVC, SEP5)

    ready = endpoint("10.244.1.7")
    rules = render_service(service(), [endpoint_slice("web-a", [terminating, ready])], NODE)
    assert rules.chains == (SVC, SEP17)


def test_headless_and_external_name_services_render_nothing():
    assert all_lines(render_service(service(clusterIP="None"), [], NODE)) == []
    assert all_lines(render_service(service(type="ExternalName"), [], NODE)) == []


def test_partial_sync_rewrites_top_chains_and_only_changed_service_chains():
    other = service(name="api")
    other["spec"]["clusterIP"] = "10.96.0.20"
    slices = [
        endpoint_slice("web-a", [endpoint("10.244.0.5")]),
        endpoint_slice("api-a", [endpoint("10.244.0.9")], service_name="api"),
    ]
    stale = "KEEL-SEP-AAAAAAAAAAAAAAAA"
    ruleset = render(
        [service(), other], slices, NODE, changed={"default/web"}, delete_chains=[stale]
    )
    nat = ruleset.text.split("*filter\n")[0].splitlines()
    declared = [line for line in nat if line.startswith(":")]
    assert nat[0] == "*nat"
    assert declared == [
        ":KEEL-SERVICES - [0:0]",
        ":KEEL-NODEPORTS - [0:0]",
        ":KEEL-POSTROUTING - [0:0]",
        ":KEEL-MARK-MASQ - [0:0]",
        f":{SVC} - [0:0]",
        f":{SEP5} - [0:0]",
        f":{stale} - [0:0]",
    ]
    api_svc = names.service_chain("default/api:http", "tcp")
    # the unchanged service keeps its jump in the rewritten KEEL-SERVICES, not its chains
    assert any(line.startswith("-A KEEL-SERVICES") and api_svc in line for line in nat)
    assert not any(line.startswith(f"-A {api_svc}") for line in nat)
    assert nat[-2:] == [f"-X {stale}", "COMMIT"]
    # rule counts always describe the whole desired state
    full = render([service(), other], slices, NODE)
    assert (ruleset.nat_rules, ruleset.filter_rules) == (full.nat_rules, full.filter_rules)


def test_never_deletes_chains_that_are_not_ours_or_still_wanted():
    slices = [endpoint_slice("web-a", [endpoint("10.244.0.5")])]
    text = render([service()], slices, NODE, delete_chains=["DOCKER", "KEEL-SERVICES", SVC]).text
    assert "-X" not in text


def test_nodeport_addresses_and_localhost():
    node = NodeInfo(name="n", nodeport_addresses=("192.0.2.1", "127.0.0.1"))
    text = render([], [], node).text
    assert (
        '-A KEEL-SERVICES -m comment --comment "keelson service nodeports; NOTE: this must be'
        ' the last rule in this chain" -d 192.0.2.1 -j KEEL-NODEPORTS' in text
    )
    assert "-d 127.0.0.1 -j KEEL-NODEPORTS" not in text
    local = NodeInfo(name="n", nodeport_localhost=True)
    text = render([], [], local).text
    assert "-m addrtype --dst-type LOCAL -j KEEL-NODEPORTS" in text
    assert "-A KEEL-FIREWALL" in text
