"""Scheduler filters, taints and the unschedulable message: pure functions, no server."""

from __future__ import annotations

import pytest

from apiclient.taints import tolerates, toleration_seconds, untolerated_taint
from scheduler.cache import NodeInfo, PodInfo, pod_requests
from scheduler.filters import (
    failure_message,
    filter_node,
    node_affinity_matches,
    node_ports,
    resources_fit,
)
from scheduler.scheduler import decide


def make_node(
    name: str = "n1",
    *,
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str = "110",
    labels: dict | None = None,
    taints: list | None = None,
    ready: bool = True,
    unschedulable: bool = False,
) -> NodeInfo:
    info = NodeInfo(name)
    info.set_node(
        {
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
    )
    return info


def make_pod(
    name: str = "p", *, cpu: str | None = None, memory: str | None = None, **spec: object
) -> PodInfo:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    containers = spec.pop("containers", [{"name": "c", "resources": {"requests": requests}}])
    return PodInfo.from_pod(
        {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": containers, **spec},
        }
    )


# --- taints and tolerations ------------------------------------------------------------

TAINT = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}, True),
        ({"key": "dedicated", "value": "db"}, True),  # operator defaults to Equal, any effect
        ({"key": "dedicated", "operator": "Equal", "value": "web"}, False),
        ({"key": "dedicated", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # empty key + Exists tolerates everything
        ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_toleration_matching(toleration: dict, expected: bool) -> None:
    assert tolerates(toleration, TAINT) is expected


def test_only_blocking_effects_need_a_toleration() -> None:
    soft = {"key": "x", "effect": "PreferNoSchedule"}
    assert untolerated_taint([soft], []) is None
    assert untolerated_taint([soft, TAINT], []) == TAINT


def test_toleration_seconds_like_the_taint_manager() -> None:
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    exists = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    assert toleration_seconds([], unreachable) == 300
    assert toleration_seconds([exists], unreachable) is None
    assert (
        toleration_seconds(
            [{**exists, "tolerationSeconds": 60}, {**exists, "tolerationSeconds": 5}, exists],
            unreachable,
        )
        == 5
    )
    assert toleration_seconds([{**exists, "tolerationSeconds": -3}], unreachable) == 0


# --- requests, fit, ports, affinity ----------------------------------------------------


def test_pod_requests_sum_containers_take_largest_init_and_add_overhead() -> None:
    spec = {
        "containers": [
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            {"resources": {"requests": {"cpu": "0.5"}}},
        ],
        "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}],
        "overhead": {"cpu": "10m"},
    }
    assert pod_requests(spec) == {"cpu": 2010, "memory": 64 * 2**20}


def test_resources_fit_names_every_short_resource_and_the_pod_count() -> None:
    node = make_node(cpu="1", memory="1Gi", pods="1")
    node.add_pod(make_pod("running", cpu="600m"))
    reasons = resources_fit(make_pod(cpu="500m", memory="2Gi"), node)
    assert reasons == ["Too many pods", "Insufficient cpu", "Insufficient memory"]
    assert resources_fit(make_pod(cpu="400m"), make_node(cpu="1")) == []


def test_a_pod_without_requests_fits_a_full_node() -> None:
    node = make_node(cpu="1")
    node.add_pod(make_pod("big", cpu="1"))
    assert resources_fit(make_pod(), node) == []


def test_host_port_conflicts() -> None:
    def with_port(name: str, port: dict) -> PodInfo:
        return make_pod(name, containers=[{"name": "c", "ports": [{"containerPort": 80, **port}]}])

    node = make_node()
    node.add_pod(with_port("a", {"hostPort": 8080, "hostIP": "127.0.0.1"}))
    assert node_ports(with_port("b", {"hostPort": 8080}), node)  # 0.0.0.0 overlaps
    assert node_ports(with_port("c", {"hostPort": 8080, "hostIP": "127.0.0.1"}), node)
    assert not node_ports(with_port("d", {"hostPort": 8080, "hostIP": "10.0.0.1"}), node)
    assert not node_ports(with_port("e", {"hostPort": 8080, "protocol": "UDP"}), node)
    assert not node_ports(with_port("f", {}), node)  # no hostPort: nothing to reserve
    node.remove_pod("default/a")
    assert not node_ports(with_port("b", {"hostPort": 8080}), node)


def _affinity(*terms: dict) -> dict:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
        }
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, True),
        ({"nodeSelector": {"disk": "ssd"}}, True),
        ({"nodeSelector": {"disk": "hdd"}}, False),
        (
            {
                "affinity": _affinity(
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                )
            },
            True,
        ),
        (
            {
                "affinity": _affinity(
                    {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}
                )
            },
            False,
        ),
        (
            {
                "affinity": _affinity(
                    {
                        "matchExpressions": [
                            {"key": "gpu", "operator": "DoesNotExist"},
                            {"key": "cores", "operator": "Gt", "values": ["8"]},
                        ]
                    }
                )
            },
            True,
        ),
        (
            {
                "affinity": _affinity(
                    {"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["8"]}]}
                )
            },
            False,
        ),
        (
            {
                "affinity": _affinity(  # terms are ORed
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                )
            },
            True,
        ),
        ({"affinity": _affinity()}, False),  # no terms: nothing matches
        ({"affinity": _affinity({})}, False),  # an empty term matches nothing
        (
            {
                "affinity": _affinity(
                    {"matchExpressions": [{"key": "zone", "operator": "Bogus", "values": ["a"]}]}
                )
            },
            False,
        ),
    ],
)
def test_node_selector_and_required_affinity(spec: dict, expected: bool) -> None:
    node = make_node("n1", labels={"disk": "ssd", "zone": "a", "cores": "16"})
    assert node_affinity_matches(make_pod(**spec), node) is expected


# --- evaluation order and the message --------------------------------------------------


def test_a_node_is_judged_by_its_first_failing_filter() -> None:
    pod = make_pod(cpu="4", nodeSelector={"disk": "ssd"})
    assert filter_node(pod, make_node(ready=False, cpu="1")) == ["node(s) were not ready"]
    assert filter_node(pod, make_node(unschedulable=True)) == ["node(s) were unschedulable"]
    assert filter_node(pod, make_node(taints=[TAINT])) == [
        "node(s) had untolerated taint {dedicated: db}"
    ]
    assert filter_node(pod, make_node(cpu="1")) == [
        "node(s) didn't match Pod's node affinity/selector"
    ]
    assert filter_node(pod, make_node(cpu="1", labels={"disk": "ssd"})) == ["Insufficient cpu"]


def test_a_cordoned_node_takes_pods_tolerating_unschedulable() -> None:
    toleration = {
        "key": "node.kubernetes.io/unschedulable",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    assert filter_node(make_pod(tolerations=[toleration]), make_node(unschedulable=True)) == []


def test_failure_message_like_kubernetes() -> None:
    message = failure_message(
        3,
        {
            "a": ["node(s) didn't match Pod's node affinity/selector"],
            "b": ["Insufficient cpu"],
            "c": ["Insufficient cpu", "Insufficient memory"],
        },
    )
    assert message == (
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't "
        "match Pod's node affinity/selector, 2 Insufficient cpu."
    )
    assert failure_message(0, {}) == "no nodes available to schedule pods"


def test_decide_reports_every_node() -> None:
    nodes = [
        make_node("a"),
        make_node("b", cpu="1", labels={"disk": "ssd"}),
        make_node("c", cpu="1", labels={"disk": "ssd"}),
    ]
    decision = decide(make_pod(cpu="2", nodeSelector={"disk": "ssd"}), nodes)
    assert decision.node is None
    assert decision.message == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node "
        "affinity/selector, 2 Insufficient cpu."
    )
    assert decide(make_pod(cpu="2"), nodes).node == "a"
