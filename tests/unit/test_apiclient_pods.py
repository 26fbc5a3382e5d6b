"""Pod predicates every component shares: terminal, active, ready, QoS class."""

from __future__ import annotations

import pytest

from apiclient.pods import is_active, is_ready, is_terminal, qos_class, ready_condition


def _pod(phase: str | None = None, *, ready: str | None = None, deleting: bool = False) -> dict:
    status: dict = {}
    if phase:
        status["phase"] = phase
    if ready:
        status["conditions"] = [{"type": "PodScheduled", "status": "True"},
                                {"type": "Ready", "status": ready}]
    meta = {"deletionTimestamp": "2026-12-03T00:00:00Z"} if deleting else {}
    return {"metadata": meta, "status": status}


@pytest.mark.parametrize(("pod", "terminal", "active"), [
    (_pod(), False, True),
    (_pod("Pending"), False, True),
    (_pod("Running"), False, True),
    (_pod("Succeeded"), True, False),
    (_pod("Failed"), True, False),
    (_pod("Running", deleting=True), False, False),
])
def test_terminal_and_active(pod: dict, terminal: bool, active: bool) -> None:
    assert (is_terminal(pod), is_active(pod)) == (terminal, active)


def test_ready_reads_the_ready_condition_of_pods_and_nodes() -> None:
    assert is_ready(_pod("Running", ready="True"))
    assert not is_ready(_pod("Running", ready="False"))
    assert not is_ready(_pod("Running"))
    assert ready_condition(_pod("Running", ready="Unknown")) == {"type": "Ready",
                                                                 "status": "Unknown"}
    node = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert is_ready(node)


def _container(requests: dict | None = None, limits: dict | None = None) -> dict:
    resources = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": "c", "resources": resources}


@pytest.mark.parametrize(("containers", "init", "expected"), [
    ([_container()], [], "BestEffort"),
    ([_container({"cpu": "0"}, {"memory": "0"})], [], "BestEffort"),  # zero is unset
    ([_container({"cpu": "100m"})], [], "Burstable"),
    ([_container(limits={"cpu": "1", "memory": "1Gi"})], [], "Guaranteed"),  # requests = limits
    ([_container({"cpu": "1000m", "memory": "1024Mi"}, {"cpu": "1", "memory": "1Gi"})], [],
     "Guaranteed"),  # equal as quantities, not as text
    ([_container({"cpu": "500m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})], [],
     "Burstable"),
    ([_container(limits={"cpu": "1"})], [], "Burstable"),  # memory limit missing
    ([_container(limits={"cpu": "1", "memory": "1Gi"}), _container()], [], "Burstable"),
    ([_container(limits={"cpu": "1", "memory": "1Gi"})], [_container({"cpu": "100m"})],
     "Burstable"),  # init containers count
    ([_container()], [_container({"memory": "64Mi"})], "Burstable"),
    ([_container({"cpu": "not-a-quantity"})], [], "BestEffort"),  # validation reports it
])
def test_qos_class(containers: list, init: list, expected: str) -> None:
    assert qos_class({"containers": containers, "initContainers": init}) == expected
