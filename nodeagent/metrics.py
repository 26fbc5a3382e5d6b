"""The node agent's Prometheus metrics, with Kubernetes' kubelet names and units.

Node usage gauges are read from psutil at scrape time, so an idle agent spends nothing on
them. One ``AgentMetrics`` per agent, built on a registry the caller passes in (tests inject a
fresh ``CollectorRegistry``; production shares one registry with the proxy so one endpoint
serves everything). No pod, container or URL labels: cardinality stays bounded by the
operation types.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from nodeagent.runtime.interface import ContainerState, ContainerSummary

_START_BUCKETS = (0.25, 0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 300, 600)
_OPERATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class NodeResourceCollector:
    """Node usage read from psutil at scrape time (kubelet's /metrics/resource names)."""

    def collect(self) -> Iterator[Metric]:
        times = psutil.cpu_times()
        cpu = CounterMetricFamily(
            "node_cpu_usage_seconds", "Cumulative cpu time consumed by the node in core-seconds."
        )
        cpu.add_metric(
            [],
            times.user
            + times.system
            + getattr(times, "irq", 0.0)
            + getattr(times, "softirq", 0.0)
            + getattr(times, "steal", 0.0),
        )
        yield cpu
        memory = psutil.virtual_memory()
        working_set = GaugeMetricFamily(
            "node_memory_working_set_bytes", "Current working set of the node in bytes."
        )
        working_set.add_metric([], memory.total - memory.available)
        yield working_set
        available = GaugeMetricFamily(
            "node_memory_available_bytes", "Memory available for new processes in bytes."
        )
        available.add_metric([], memory.available)
        yield available


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        registry.register(NodeResourceCollector())
        self.running_pods = Gauge(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox.",
            registry=registry,
        )
        self.running_containers = Gauge(
            "kubelet_running_containers",
            "Number of containers currently running.",
            ["container_state"],
            registry=registry,
        )
        self.pod_start_duration = Histogram(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from the agent seeing a pod for the first time to the pod "
            "running with an IP.",
            buckets=_START_BUCKETS,
            registry=registry,
        )
        self.pod_start_sli_duration = Histogram(
            "kubelet_pod_start_sli_duration_seconds",
            "Duration in seconds to start a pod, excluding image pulls, observed once.",
            buckets=_START_BUCKETS,
            registry=registry,
        )
        self.pod_worker_duration = Histogram(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod, by operation type.",
            ["operation_type"],
            buckets=_OPERATION_BUCKETS,
            registry=registry,
        )
        self.runtime_operations = Counter(
            "kubelet_runtime_operations_total",
            "Cumulative number of runtime operations.",
            ["operation_type"],
            registry=registry,
        )
        self.runtime_operation_errors = Counter(
            "kubelet_runtime_operations_errors_total",
            "Cumulative number of runtime operation errors.",
            ["operation_type"],
            registry=registry,
        )
        self.runtime_operation_duration = Histogram(
            "kubelet_runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations.",
            ["operation_type"],
            buckets=_OPERATION_BUCKETS,
            registry=registry,
        )
        self.pleg_relist_duration = Histogram(
            "kubelet_pleg_relist_duration_seconds",
            "Duration in seconds for relisting pods in PLEG.",
            buckets=_OPERATION_BUCKETS,
            registry=registry,
        )
        self.pleg_last_seen = Gauge(
            "kubelet_pleg_last_seen_seconds",
            "Timestamp in seconds when PLEG was last seen active.",
            registry=registry,
        )

    def observe_runtime_operation(self, operation: str, seconds: float, ok: bool) -> None:
        """Hook for ``DockerRuntime(observer=...)``."""
        self.runtime_operations.labels(operation_type=operation).inc()
        self.runtime_operation_duration.labels(operation_type=operation).observe(seconds)
        if not ok:
            self.runtime_operation_errors.labels(operation_type=operation).inc()

    def observe_relist(
        self, seconds: float, containers: list[ContainerSummary], *, now: float
    ) -> None:
        """After each PLEG relist: its duration, liveness, and the running pod/containers."""
        self.pleg_relist_duration.observe(seconds)
        self.pleg_last_seen.set(now)
        self.running_pods.set(
            sum(1 for c in containers if c.is_sandbox and c.state is ContainerState.RUNNING)
        )
        counts = collections.Counter(c.state.value for c in containers if not c.is_sandbox)
        for state in ContainerState:
            self.running_containers.labels(container_state=state.value).set(counts[state.value])
