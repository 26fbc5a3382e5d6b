"""The proxy's Prometheus metrics, with Kubernetes kube-proxy names.

The registry is injected so the node agent can expose ``kubelet_*`` and ``kubeproxy_*`` on
one endpoint; tests pass a fresh ``CollectorRegistry``. Durations are seconds.
Note: ``kubeproxy_sync_proxy_rules_iptables_total`` is a gauge (rules currently programmed)
under its Kubernetes name; promtool's lint warns about ``_total`` on a non-counter, and the
Kubernetes name is kept on purpose so existing dashboards work.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# kube-proxy's buckets: 1 ms doubling up to ~16 s
SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))
PROGRAMMING_BUCKETS = (
    *(0.25 * i for i in range(1, 20)),  # 0.25 s .. 4.75 s
    *(5.0 * i for i in range(1, 12)),
    *(60.0 * i for i in range(1, 6)),
)


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def histogram(name: str, doc: str, buckets: tuple[float, ...] = SYNC_BUCKETS) -> Histogram:
            return Histogram(name, doc, buckets=buckets, registry=registry)

        self.sync_duration = histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds"
        )
        self.full_sync_duration = histogram(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
        )
        self.partial_sync_duration = histogram(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
        )
        self.network_programming_duration = histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            PROGRAMMING_BUCKETS,
        )
        self.last_sync_timestamp = Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            registry=registry,
        )
        self.last_queued_timestamp = Gauge(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            registry=registry,
        )
        self.iptables_rules = Gauge(
            "kubeproxy_sync_proxy_rules_iptables_total",
            "Total number of iptables rules owned by keelson's proxy",
            ["table"],
            registry=registry,
        )
        self.restore_failures = Counter(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures",
            "Cumulative proxy iptables restore failures",
            registry=registry,
        )
        self.endpoint_changes_pending = Gauge(
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            registry=registry,
        )
        self.service_changes_pending = Gauge(
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "Pending proxy rules Service changes",
            registry=registry,
        )
