"""The proxy's informer transforms: slim objects render exactly like the full API objects,
keep what the store and the trackers need, and drop everything else."""

import copy

from proxy import tracker
from proxy.iptables.render import NodeInfo, render, render_service
from proxy.objects import slim_endpoint_slice, slim_service

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
                tracker.TRIGGER_TIME_ANNOTATION: "2026-11-25T00:00:01Z",
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


def test_slim_objects_render_exactly_like_full_ones():
    for spec in SPECS:
        if spec.get("type") == "NodePort":
            ports = copy.deepcopy(full_service()["spec"]["ports"])
            ports[0]["nodePort"], ports[1]["nodePort"] = 30080, 30053
            spec = {**spec, "ports": ports}
        service, slices = full_service(**spec), [full_slice(), full_slice("web-v6")]
        slices[1]["addressType"] = "IPv6"
        slices[1]["endpoints"][0]["addresses"] = ["fd00::1"]
        full = render_service(service, slices, NODE)
        slim = render_service(slim_service(service), [slim_endpoint_slice(s) for s in slices], NODE)
        assert slim == full, spec
        assert full.chain_rule_count > 0


def test_a_whole_ruleset_is_the_same():
    services = [full_service(f"svc{i}") for i in range(3)]
    slices = [full_slice(f"svc{i}-x", f"svc{i}") for i in range(3)]
    full = render(services, slices, NODE).text
    slim = render(
        [slim_service(s) for s in services], [slim_endpoint_slice(s) for s in slices], NODE
    ).text
    assert slim == full
    assert "DNAT --to-destination 10.244.1.2:8080" in slim


def test_what_is_kept_and_what_is_dropped():
    service = slim_service(full_service())
    assert service["metadata"] == {"name": "web", "namespace": "shop", "resourceVersion": "17"}
    assert set(service["spec"]) == {"clusterIP", "ports"}
    assert service["spec"]["ports"][0] == {"name": "http", "protocol": "TCP", "port": 80}
    assert service["status"] == {"loadBalancer": {"ingress": ({"ip": "192.0.2.7"},)}}

    endpoint_slice = slim_endpoint_slice(full_slice())
    assert endpoint_slice["metadata"] == {
        "name": "web-abc",
        "namespace": "shop",
        "resourceVersion": "21",
        "labels": {"kubernetes.io/service-name": "web"},
        "annotations": {tracker.TRIGGER_TIME_ANNOTATION: "2026-11-25T00:00:01Z"},
    }
    assert endpoint_slice["ports"][0] == {"name": "http", "port": 8080, "protocol": "TCP"}
    assert endpoint_slice["endpoints"][2] == {
        "addresses": ("10.244.1.4",),
        "conditions": {"ready": False, "serving": True, "terminating": True},
        "nodeName": "node-a",
        "zone": "z1",
    }
    assert tracker.trigger_time(endpoint_slice) == tracker.trigger_time(full_slice())


def test_repeated_values_are_shared_between_objects():
    first, second = slim_endpoint_slice(full_slice("a")), slim_endpoint_slice(full_slice("b"))
    assert first["endpoints"][0]["conditions"] is second["endpoints"][1]["conditions"]
    assert first["ports"] is second["ports"]
    assert first["endpoints"][0]["nodeName"] is second["endpoints"][2]["nodeName"]
    web, shop = slim_service(full_service("web")), slim_service(full_service("shop"))
    assert web["spec"]["ports"] is shop["spec"]["ports"]
    node_port = full_service("np", type="NodePort")
    node_port["spec"]["ports"][0]["nodePort"] = 30080
    assert slim_service(node_port)["spec"]["ports"][0]["nodePort"] == 30080
    assert web["spec"]["ports"][0] == {"name": "http", "protocol": "TCP", "port": 80}


def test_the_transforms_are_idempotent_and_leave_their_input_alone():
    service, endpoint_slice = full_service(), full_slice()
    before = copy.deepcopy((service, endpoint_slice))
    assert slim_service(slim_service(service)) == slim_service(service)
    assert slim_endpoint_slice(slim_endpoint_slice(endpoint_slice)) == slim_endpoint_slice(
        endpoint_slice
    )
    assert (service, endpoint_slice) == before


def test_a_change_the_proxy_ignores_is_not_a_change_after_slimming():
    changes = tracker.service_tracker()
    old = full_service()
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "18"
    new["spec"]["selector"] = {"app": "other"}  # no rule depends on the selector
    assert not changes.update(slim_service(old), slim_service(new))
    new["spec"]["ports"][0]["port"] = 81
    assert changes.update(slim_service(old), slim_service(new))
