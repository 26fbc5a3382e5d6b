"""What the EndpointSlice and Endpoints controllers derive from a Service and its pods."""

from __future__ import annotations

from controllers.endpoints import desired_subsets
from controllers.endpointslice import (
    MAX_ENDPOINTS_PER_SLICE,
    TriggerTimes,
    desired_slices,
    pod_endpoints,
)


def service(*, publish_not_ready: bool = False, family: str = "IPv4") -> dict:
    return {"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ipFamilies": [family],
                     "publishNotReadyAddresses": publish_not_ready,
                     "ports": [{"name": "http", "port": 80, "targetPort": "web",
                                "protocol": "TCP"},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}}


def pod(name: str, ip: str | None = "10.244.0.5", *, ready: bool = True, web_port: int = 8080,
        deleting: bool = False, phase: str = "Running", node: str = "n1") -> dict:
    meta: dict = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                  "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-24T12:00:30Z"
    status: dict = {"phase": phase,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status,
            "spec": {"nodeName": node,
                     "containers": [{"name": "c", "ports": [
                         {"name": "web", "containerPort": web_port, "protocol": "TCP"}]}]}}


def test_named_target_port_is_resolved_per_pod() -> None:
    [a, b] = pod_endpoints(service(), [pod("a", web_port=8080),
                                       pod("b", "10.244.0.6", web_port=9090)])
    assert a.ports == (("dns", 53, "UDP"), ("http", 8080, "TCP"))
    assert b.ports == (("dns", 53, "UDP"), ("http", 9090, "TCP"))


def test_pods_without_the_named_port_lack_only_that_port() -> None:
    bare = pod("bare")
    bare["spec"]["containers"][0]["ports"] = []
    [endpoint] = pod_endpoints(service(), [bare])
    assert endpoint.ports == (("dns", 53, "UDP"),)


def test_pods_without_ip_of_the_family_or_finished_are_skipped() -> None:
    pods = [pod("noip", None), pod("done", phase="Succeeded"), pod("v6", "fd00::5"),
            pod("ok")]
    assert [e.name for e in pod_endpoints(service(), pods)] == ["ok"]
    assert [e.name for e in pod_endpoints(service(family="IPv6"), pods)] == ["v6"]


def test_conditions_follow_readiness_and_termination() -> None:
    by_name = {e.name: e for e in pod_endpoints(service(), [
        pod("ready"), pod("unready", ready=False), pod("leaving", deleting=True),
        pod("leaving-unready", ready=False, deleting=True)])}
    conditions = {name: (e.ready, e.serving, e.terminating) for name, e in by_name.items()}
    assert conditions == {"ready": (True, True, False), "unready": (False, False, False),
                          "leaving": (False, True, True),
                          "leaving-unready": (False, False, True)}
    [published] = pod_endpoints(service(publish_not_ready=True), [pod("x", ready=False)])
    assert (published.ready, published.serving) == (True, True)


def test_slices_group_by_port_set_and_hold_at_most_a_hundred() -> None:
    pods = [pod(f"p{i:03}", f"10.244.{i // 200}.{i % 200 + 1}")
            for i in range(MAX_ENDPOINTS_PER_SLICE + 5)]
    pods.append(pod("odd", "10.244.9.9", web_port=9090))
    slices = desired_slices(service(), pods)
    sizes = sorted(len(s["endpoints"]) for s in slices)
    assert sizes == [1, 5, MAX_ENDPOINTS_PER_SLICE]
    odd = next(s for s in slices if len(s["endpoints"]) == 1)
    assert {"name": "http", "port": 9090, "protocol": "TCP"} in odd["ports"]
    first = desired_slices(service(), pods)[0]["endpoints"][0]
    assert first == {"addresses": ["10.244.0.1"],
                     "conditions": {"ready": True, "serving": True, "terminating": False},
                     "targetRef": {"kind": "Pod", "namespace": "ns", "name": "p000",
                                   "uid": "uid-p000"},
                     "nodeName": "n1"}
    assert desired_slices(service(), list(reversed(pods))) == slices  # order-independent


def test_a_service_without_endpoints_gets_one_empty_slice() -> None:
    assert desired_slices(service(), []) == [{"addressType": "IPv4", "endpoints": [],
                                              "ports": []}]


def test_endpoints_subsets_split_ready_and_drop_terminating() -> None:
    subsets = desired_subsets(service(), [pod("b", "10.244.0.7"),
                                          pod("a", "10.244.0.6", ready=False),
                                          pod("gone", "10.244.0.8", deleting=True)])
    assert subsets == [{
        "addresses": [{"ip": "10.244.0.7", "nodeName": "n1",
                       "targetRef": {"kind": "Pod", "namespace": "ns", "name": "b",
                                     "uid": "uid-b"}}],
        "notReadyAddresses": [{"ip": "10.244.0.6", "nodeName": "n1",
                               "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a",
                                             "uid": "uid-a"}}],
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "http", "port": 8080, "protocol": "TCP"}],
    }]


def test_trigger_times_keep_the_newest_until_taken() -> None:
    times = TriggerTimes()
    times.note("ns/web", "2026-11-24T12:00:01Z")
    times.note("ns/web", "2026-11-24T12:00:03Z")
    times.note("ns/web", "2026-11-24T12:00:02Z")
    assert times.take("ns/web") == "2026-11-24T12:00:03Z"
    assert times.take("ns/web") is None
