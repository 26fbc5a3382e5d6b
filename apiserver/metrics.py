"""The apiserver's Prometheus metrics, with Kubernetes' names and labels.

Names follow kube-apiserver so existing dashboards and alerts work: request counts and
latencies by verb/group/version/resource/subresource/scope (no URL or object labels,
so cardinality stays bounded), watch events by kind, objects in storage by resource
(read from the watch cache at scrape time) and requests in flight by kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0,
                    3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)


class _StorageObjects(Collector):
    """apiserver_storage_objects{resource} computed when scraped."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("apiserver_storage_objects",
                                   "Number of stored objects at the time of last check split "
                                   "by kind.", labels=["resource"])
        for resource, count in sorted(self._counts().items()):
            family.add_metric([resource], count)
        yield family


class APIServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["verb", "group", "version", "resource", "subresource", "scope", "component"]
        self.requests = Counter(
            "apiserver_request", "Counter of apiserver requests broken out for each verb, "
            "group, version, resource, scope, component, and HTTP response code.",
            [*labels, "code"], registry=self.registry)
        self.duration = Histogram(
            "apiserver_request_duration_seconds", "Response latency distribution in seconds "
            "for each verb, group, version, resource, subresource, scope and component.",
            labels, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.watch_events = Counter(
            "apiserver_watch_events", "Number of events sent in watch clients",
            ["group", "version", "kind"], registry=self.registry)
        self.inflight = Gauge(
            "apiserver_current_inflight_requests", "Maximal number of currently used inflight "
            "request limit of this apiserver per request kind in last second.",
            ["request_kind"], registry=self.registry)

    def watch_storage(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_StorageObjects(counts))
