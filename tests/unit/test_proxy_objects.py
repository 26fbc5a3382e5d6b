"""The proxy's informer transforms (proxy/objects.py): records keep what rendering, the
store and the trackers need, share repeated values, and drop everything else."""

import copy
from datetime import UTC, datetime

from apiclient.labels import LAST_CHANGE_TRIGGER_TIME_ANNOTATION
from apiclient.store import Store
from proxy import objects, tracker
from proxy.iptables.render import NodeInfo, render, render_service
from proxy.objects import service_info, slice_info
from proxy.servicemodel import EndpointState, ServicePort, SlicePort

NODE = NodeInfo(name="node-a", cluster_cidr="10.244.0.0/16")
MANAGED = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]


def full_service(name="web", **spec):
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": "1234",
            "resourceVersion": "17",
            "creationTimestamp": "2026-11-25T00:00:00Z",
            "labels": {"app": name},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}" * 200},
            "managedFields": MANAGED,
        },
        "spec": {
            "selector": {"app": name},
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ipFamilies": ["IPv4"],
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
            ],
            **spec,
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7", "ipMode": "VIP"}]}},
    }


def full_slice(name="web-abc", service="web"):
    return {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "resourceVersion": "21",
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller",
            },
            "annotations": {
                LAST_CHANGE_TRIGGER_TIME_ANNOTATION: "2026-11-25T00:00:01Z",
                "other": "x",
            },
            "ownerReferences": [{"kind": "Service", "name": service, "uid": "1234"}],
            "managedFields": MANAGED,
        },
        "addressType": "IPv4",
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"},
            {"name": "dns", "port": 5353, "protocol": "UDP"},
        ],
        "endpoints": [
            {
                "addresses": [f"10.244.1.{host}"],
                "conditions": {"ready": ready, "serving": True, "terminating": not ready},
                "nodeName": node,
                "zone": "z1",
                "targetRef": {"kind": "Pod", "name": f"pod-{host}", "uid": f"u{host}"},
                "hints": {"forZones": [{"name": "z1"}]},
            }
            for host, ready, node in (
                (2, True, "node-a"),
                (3, True, "node-b"),
                (4, False, "node-a"),
            )
        ],
    }


SPECS = [
    {},
    {"type": "NodePort", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000},
    {"externalIPs": ["192.0.2.9"], "sessionAffinity": "ClientIP",
     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
    {"internalTrafficPolicy": "Local"},
]  # fmt: skip


def test_records_render_the_expected_rules():
    for spec in SPECS:
        if spec.get("type") == "NodePort":
            ports = copy.deepcopy(full_service()["spec"]["ports"])
            ports[0]["nodePort"], ports[1]["nodePort"] = 30080, 30053
            spec = {**spec, "ports": ports}
        slices = [full_slice(), full_slice("web-v6")]
        slices[1]["addressType"] = "IPv6"
        slices[1]["endpoints"][0]["addresses"] = ["fd00::1"]
        rules = render_service(service_info(full_service(**spec)), map(slice_info, slices), NODE)
        dnat = [line.split()[-1] for line in rules.chain_rules if "DNAT" in line]
        # Ready endpoints only (10.244.1.4 is terminating), on both ports; no IPv6.
        assert sorted(set(dnat)) == [
            "10.244.1.2:5353", "10.244.1.2:8080", "10.244.1.3:5353", "10.244.1.3:8080",
        ] or spec.get("internalTrafficPolicy") == "Local", (spec, dnat)  # fmt: skip
        assert rules.chain_rule_count > 0


def test_a_whole_ruleset_renders_from_records():
    services = [service_info(full_service(f"svc{i}")) for i in range(3)]
    slices = [slice_info(full_slice(f"svc{i}-x", f"svc{i}")) for i in range(3)]
    text = render(services, slices, NODE).text
    assert text.count("DNAT --to-destination 10.244.1.2:8080") == 3


def test_what_is_kept_and_what_is_dropped():
    service = service_info(full_service())
    assert service.key == "shop/web"
    assert service.ports[0] == ServicePort(
        service_key="shop/web", port_name="http", protocol="tcp", port=80,
        cluster_ip="10.96.0.10", load_balancer_ips=("192.0.2.7",),
    )  # fmt: skip
    assert service.ports[0].service_key is service.key  # one string, not one per port

    endpoint_slice = slice_info(full_slice())
    assert (endpoint_slice.key, endpoint_slice.service_key) == ("shop/web-abc", "shop/web")
    assert endpoint_slice.packed_addresses == bytes([10, 244, 1, 2, 10, 244, 1, 3, 10, 244, 1, 4])
    assert endpoint_slice.ports == (SlicePort("http", "tcp", 8080), SlicePort("dns", "udp", 5353))
    assert endpoint_slice.addresses == ("10.244.1.2", "10.244.1.3", "10.244.1.4")
    assert endpoint_slice.states[2] == EndpointState(
        ready=False, serving=True, terminating=True, node_name="node-a"
    )
    assert endpoint_slice.trigger_time == datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC).timestamp()


def test_only_ipv4_first_addresses_are_kept_and_unknown_readiness_counts_as_ready():
    body = full_slice()
    body["endpoints"][0]["addresses"] = ["10.244.9.9", "10.244.9.10"]
    body["endpoints"][1]["conditions"] = {}
    record = slice_info(body)
    assert record.addresses[0] == "10.244.9.9" and len(record.addresses) == 3
    assert record.states[1].ready and record.states[1].serving
    body["addressType"] = "IPv6"
    assert slice_info(body).addresses == ()
    unlabelled = full_slice()
    del unlabelled["metadata"]["labels"]
    assert slice_info(unlabelled).service_key is None


def test_headless_and_external_name_services_have_no_ports():
    assert service_info(full_service(clusterIP="None")).ports == ()
    assert service_info(full_service(type="ExternalName")).ports == ()


def test_repeated_values_are_shared_between_records():
    first, second = slice_info(full_slice("a")), slice_info(full_slice("b"))
    assert first.states is second.states and first.ports is second.ports
    assert first.states[0].node_name is second.states[2].node_name


def test_the_informer_store_diffs_records_by_content():
    store = Store(key_func=objects.record_key, version_func=None)
    store.replace([service_info(full_service())])
    newer = full_service()
    newer["metadata"]["resourceVersion"] = "18"  # nothing the proxy programs changed
    assert not store.replace([service_info(newer)])
    newer["spec"]["clusterIP"] = "10.96.0.11"
    diff = store.replace([service_info(newer)])
    assert [new.ports[0].cluster_ip for _old, new in diff.updated] == ["10.96.0.11"]
    assert store.get("shop/web") is diff.updated[0][1]


def test_the_transforms_leave_their_input_alone():
    service, endpoint_slice = full_service(), full_slice()
    before = copy.deepcopy((service, endpoint_slice))
    service_info(service), slice_info(endpoint_slice)
    assert (service, endpoint_slice) == before


def test_a_change_the_proxy_ignores_is_not_a_change():
    changes = tracker.service_tracker()
    old = full_service()
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "18"
    new["spec"]["selector"] = {"app": "other"}  # no rule depends on the selector
    assert not changes.update(service_info(old), service_info(new))
    new["spec"]["ports"][0]["port"] = 81
    assert changes.update(service_info(old), service_info(new))
