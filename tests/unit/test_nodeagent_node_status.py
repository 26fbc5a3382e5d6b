"""Node status from measured facts, and the metrics exposition being valid Prometheus text."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nodeagent.metrics import AgentMetrics
from nodeagent.node_status import NodeFacts, node_status
from nodeagent.runtime.interface import ContainerState, ContainerSummary

FACTS = NodeFacts(
    cpu_count=2,
    memory_total=8 * 2**30,
    memory_available=4 * 2**30,
    disk_total=100 * 2**30,
    disk_available=50 * 2**30,
    pids_in_use=200,
    pid_max=32768,
    internal_ip="192.0.2.7",
    hostname="node-a",
    kernel="6.1.0",
    os_image="Debian GNU/Linux 12 (bookworm)",
    architecture="amd64",
    machine_id="m",
    boot_id="b",
    runtime_version="20.10.24",
)


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_healthy_node_reports_capacity_addresses_and_ready():
    status = node_status(
        FACTS, max_pods=110, kubelet_port=10250, runtime_healthy=True, now="2026-01-01T00:00:00Z"
    )
    assert status["capacity"] == {
        "cpu": "2",
        "memory": "8388608Ki",
        "ephemeral-storage": "104857600Ki",
        "pods": "110",
    }
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "192.0.2.7"},
        {"type": "Hostname", "address": "node-a"},
    ]
    assert status["nodeInfo"]["containerRuntimeVersion"] == "docker://20.10.24"
    assert conditions(status) == {
        "MemoryPressure": ("False", "KubeletHasSufficientMemory"),
        "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
        "PIDPressure": ("False", "KubeletHasSufficientPID"),
        "Ready": ("True", "KubeletReady"),
    }


def test_pressure_thresholds_and_not_ready():
    starved = dataclasses.replace(
        FACTS, memory_available=50 * 2**20, disk_available=5 * 2**30, pids_in_use=30000
    )
    status = node_status(
        starved, max_pods=110, kubelet_port=10250, runtime_healthy=False, now="2026-01-01T00:00:00Z"
    )
    assert conditions(status) == {
        "MemoryPressure": ("True", "KubeletHasInsufficientMemory"),
        "DiskPressure": ("True", "KubeletHasDiskPressure"),
        "PIDPressure": ("True", "KubeletHasInsufficientPID"),
        "Ready": ("False", "KubeletNotReady"),
    }


def test_unchanged_facts_give_identical_status_apart_from_heartbeats():
    first = node_status(
        FACTS, max_pods=110, kubelet_port=10250, runtime_healthy=True, now="2026-01-01T00:00:00Z"
    )
    later = node_status(
        dataclasses.replace(FACTS, memory_available=3 * 2**30),
        max_pods=110,
        kubelet_port=10250,
        runtime_healthy=True,
        now="2026-01-01T00:05:00Z",
        previous=first,
    )
    for before, after in zip(first["conditions"], later["conditions"], strict=True):
        assert after["lastTransitionTime"] == before["lastTransitionTime"]
        assert after["message"] == before["message"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_metrics_pass_promtool():
    metrics = AgentMetrics(CollectorRegistry())
    metrics.observe_runtime_operation("create_container", 0.02, True)
    metrics.observe_runtime_operation("start_container", 0.5, False)
    metrics.observe_relist(
        0.01,
        [
            ContainerSummary(
                "s",
                {"io.keelson.pod.uid": "u", "io.keelson.type": "sandbox"},
                ContainerState.RUNNING,
                0,
            ),
            ContainerSummary("c", {"io.keelson.pod.uid": "u"}, ContainerState.RUNNING, 0),
        ],
        now=1.0,
    )
    metrics.pod_start_duration.observe(0.7)
    text = generate_latest(metrics.registry)

    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert b"kubelet_running_pods 1.0" in text
    assert b"node_cpu_usage_seconds_total " in text
    assert b"node_memory_working_set_bytes " in text
    assert b'kubelet_running_containers{container_state="running"} 1.0' in text
    assert b'kubelet_runtime_operations_errors_total{operation_type="start_container"} 1.0' in text
