"""The iptables proxier: the one place that turns tracked changes into applied rules.

Each run (driven by the coalescing runner) drains the change trackers, re-renders the
Services they touch, and applies one iptables-restore transaction:

* full sync (at start, every ``sync_period``, after any failure): every chain is written,
  stale per-service chains found by name in the nat table are deleted, the jumps from the
  built-in chains are ensured;
* partial sync (otherwise): the top-level chains are rewritten whole, but only the changed
  Services' own chains are written or deleted.

Per Service only a tiny shared state is kept between syncs (render.ServiceState: which
ports have endpoints, the rule count); the top-level chains are rewritten whole from the
records and these states at every sync, as kube-proxy does, and the chains a changed
Service no longer wants are found by rendering its previous records again. So a partial
sync costs work proportional to the change plus the size of the top-level chains, and the
proxier holds no rule text between syncs. Rendering is lazy:
iptables-restore parses the first Services while the next ones are rendered. Conntrack
cleanup, health-check servers, metrics and /healthz are updated only after a successful
apply.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field

from proxy import conntrack, heap, tracker
from proxy.conntrack import StaleFlow, UdpTarget
from proxy.healthz import HealthCheck, ProxyHealth, ServiceHealthServers
from proxy.iptables import render
from proxy.iptables.render import NodeInfo, ServiceRules, ServiceState
from proxy.iptables.restore import CommandError, Iptables, RestoreError
from proxy.metrics import ProxyMetrics
from proxy.runner import CoalescingRunner
from proxy.servicemodel import ServiceInfo, SliceInfo

log = logging.getLogger(__name__)

FlowDeleter = Callable[..., Awaitable[bool]]


@dataclass
class _UdpChanges:
    """UDP targets of the Services re-rendered in one sync, before and after."""

    old: dict[str, UdpTarget] = field(default_factory=dict)
    new: dict[str, UdpTarget] = field(default_factory=dict)


class Proxier:
    def __init__(
        self,
        *,
        node: NodeInfo,
        iptables: Iptables,
        metrics: ProxyMetrics,
        health: ProxyHealth,
        sync_period: float,
        min_sync_period: float,
        retry_interval: float = 5.0,
        health_servers: ServiceHealthServers | None = None,
        delete_flows: FlowDeleter = conntrack.delete,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.iptables = iptables
        self.metrics = metrics
        self.health = health
        self.sync_period = sync_period
        self.health_servers = health_servers
        self._delete_flows = delete_flows
        self._clock = clock
        self._wall_clock = wall_clock
        self.service_changes = tracker.service_tracker()
        self.slice_changes = tracker.endpoint_slice_tracker()
        self.runner = CoalescingRunner(
            self.sync,
            min_interval=min_sync_period,
            max_interval=sync_period,
            retry_interval=retry_interval,
            clock=clock,
        )
        self._services: dict[str, ServiceInfo] = {}
        # service -> its slices; a tuple, not a dict by slice key: one small object per
        # Service (most have one slice) instead of a dict and a key string per slice.
        self._slices: dict[str, tuple[SliceInfo, ...]] = {}
        self._states: dict[str, ServiceState] = {}
        self._udp: dict[str, dict[str, UdpTarget]] = {}  # service -> port key -> target
        self._health_checks: dict[str, tuple[int, HealthCheck]] = {}
        self._pending_flows: set[StaleFlow] = set()
        self._pending_triggers: list[float] = []
        self._needs_full = True
        # True while the kernel holds exactly the per-service chains of the records last
        # rendered (since the last successful sync), so stale chains can be derived from the
        # previous records instead of read from the kernel.
        self._kernel_known = False
        self._last_full = -math.inf
        self.last_sync_was_full: bool | None = None

    # --- handlers: record and poke, never touch rules --------------------------------------
    def _queued(self) -> None:
        self.metrics.last_queued_timestamp.set(self._wall_clock())
        self.metrics.service_changes_pending.set(self.service_changes.pending())
        self.metrics.endpoint_changes_pending.set(self.slice_changes.pending())
        self.runner.request()

    def on_service(self, previous: ServiceInfo | None, current: ServiceInfo | None) -> None:
        if self.service_changes.update(previous, current):
            self._queued()

    def on_endpoint_slice(self, previous: SliceInfo | None, current: SliceInfo | None) -> None:
        if self.slice_changes.update(previous, current):
            self._queued()

    def set_node(self, node: NodeInfo) -> None:
        """New node facts (addresses, CIDR) change every Service's rules: full sync."""
        if node != self.node:
            self.node = node
            self._needs_full = True
            self._kernel_known = False  # chains rendered for the old facts: read the kernel
            self._queued()

    # --- the sync ----------------------------------------------------------------------------
    def _absorb(self) -> tuple[set[str], set[str]]:
        """Apply the tracked changes to the records; returns the Services they touch and
        the chains those Services had before (candidates for deletion)."""
        services = self.service_changes.drain()
        slices = self.slice_changes.drain()
        self._pending_triggers += slices.trigger_times
        touched = services.services | slices.services
        previous_chains = {chain for key in touched for chain in self._chains_of(key)}
        for key, (_previous, current) in services.changes.items():
            if current is None:
                self._services.pop(key, None)
            else:
                self._services[key] = current
        for key, (previous, current) in slices.changes.items():
            if previous is not None and previous.service_key:
                self._set_slice(previous.service_key, key, None)
            if current is not None and current.service_key:
                self._set_slice(current.service_key, key, current)
        return touched, previous_chains

    def _chains_of(self, key: str) -> tuple[str, ...]:
        """The chains the current records of Service ``key`` render to (before a change)."""
        service = self._services.get(key)
        if service is None or key not in self._states:
            return ()
        return render.render_service(service, self._slices.get(key, ()), self.node).chains

    def _set_slice(self, service: str, key: str, endpoint_slice: SliceInfo | None) -> None:
        """Replace (or, with None, remove) the slice ``key`` among ``service``'s slices."""
        kept = tuple(s for s in self._slices.get(service, ()) if s.key != key)
        if endpoint_slice is not None:
            kept += (endpoint_slice,)
        if kept:
            self._slices[service] = kept
        else:
            self._slices.pop(service, None)

    @staticmethod
    def _derive(
        key: str, rules: ServiceRules
    ) -> tuple[dict[str, UdpTarget], tuple[int, HealthCheck] | None]:
        """UDP targets (for conntrack) and the health check of one Service, from the
        endpoint selections its rendering made."""
        targets: dict[str, UdpTarget] = {}
        check = None
        for port, selection in rules.selections:
            if port.protocol == "udp":
                targets[port.key] = UdpTarget.of(port, (ep.ip for ep in selection.reachable))
            if port.health_check_node_port and check is None:
                check = (port.health_check_node_port, HealthCheck(key, len(selection.local)))
        return targets, check

    def _render(
        self, keys: list[str], udp: _UdpChanges, node: NodeInfo
    ) -> Iterator[ServiceRules]:
        """Render ``keys`` one by one, lazily (the restore stream pulls them), updating the
        per-Service states as it goes and noting UDP endpoint changes for conntrack."""
        for key in keys:
            self._states.pop(key, None)
            udp.old.update(self._udp.pop(key, {}))
            self._health_checks.pop(key, None)
            service = self._services.get(key)
            if service is None:  # its slices stay until their own delete events
                continue
            rules = render.render_service(service, self._slices.get(key, ()), node)
            self._states[key] = rules.state
            targets, check = self._derive(key, rules)
            if targets:
                self._udp[key] = targets
                udp.new.update(targets)
            if check:
                self._health_checks[key] = check
            yield rules

    def _rendered_services(self) -> list[tuple[ServiceInfo, ServiceState]]:
        """Every rendered Service with its state, in key order (the top-level chains)."""
        return [
            (service, state)
            for key, state in sorted(self._states.items())  # keys are unique: states never compared
            if (service := self._services.get(key)) is not None
        ]

    async def _kernel_state(
        self, previous_chains: set[str]
    ) -> tuple[Collection[str], dict[str, list[str]] | None]:
        """Chains that may need deleting, and missing jump rules (None: not checked).

        The kernel is read (one iptables-save) only at start, after a failure, after new
        node facts, or when the canary chain is gone (someone flushed the tables);
        otherwise the only chains that can be stale are those the changed Services had
        before, which keeps a periodic full sync close to the cost of iptables-restore."""
        if self._kernel_known and await self.iptables.canary_present():
            return previous_chains, None
        saved = await self.iptables.save()
        jumps = {table: render.missing_jumps(table, saved[table]) for table in ("nat", "filter")}
        return render.chain_names(saved["nat"]), jumps

    async def sync(self) -> bool:
        """One run: render what changed (or everything) and apply it; False on failure."""
        started, wall_started = self._clock(), self._wall_clock()
        # One node for the whole sync: set_node may run while restore awaits.
        node = self.node
        changed, previous_chains = self._absorb()
        full = self._needs_full or started - self._last_full >= self.sync_period
        udp = _UdpChanges()
        summary = render.StreamSummary()
        try:
            if full:
                candidates, jumps = await self._kernel_state(previous_chains)
                keys = sorted(set(self._services) | set(self._states))
            else:
                candidates, jumps = previous_chains, None
                keys = sorted(changed)
            stream = render.stream_ruleset(
                self._render(keys, udp, node), self._rendered_services, node,
                delete_candidates=candidates, jumps=jumps, canary=jumps is not None,
                summary=summary,
            )  # fmt: skip
            await self.iptables.restore(stream)
        except (RestoreError, CommandError, OSError) as error:
            context = f" Failing input:\n{error.context}" if isinstance(error, RestoreError) else ""
            log.error("%s; falling back to a full sync.%s", error, context)
            if isinstance(error, RestoreError):
                self.metrics.restore_failures.inc()
            self._needs_full = True
            self._kernel_known = False  # what is in the kernel is uncertain: read it next time
            self._pending_flows.update(conntrack.stale_flows(udp.old, udp.new))
            return False
        except BaseException:  # a bug or a cancellation: trust nothing we think we know
            self._needs_full, self._kernel_known = True, False
            raise
        self._kernel_known = True
        self._pending_flows.update(conntrack.stale_flows(udp.old, udp.new))
        flows = sorted(self._pending_flows, key=StaleFlow.sort_key)
        if flows and await self._delete_flows(flows):
            self._pending_flows.clear()
        if self.health_servers is not None:
            await self.health_servers.sync(dict(self._health_checks.values()))
        self._record_success(full, started, wall_started, summary)
        if node != self.node:  # new node facts arrived during this sync: apply them next
            self._needs_full, self._kernel_known = True, False
        heap.release_free_memory()  # the restore input is garbage now (see proxy/heap.py)
        return True

    def _record_success(
        self, full: bool, started: float, wall_started: float, summary: render.StreamSummary
    ) -> None:
        now = self._wall_clock()
        duration = self._clock() - started
        self.metrics.sync_duration.observe(duration)
        (self.metrics.full_sync_duration if full else self.metrics.partial_sync_duration).observe(
            duration
        )
        for trigger in self._pending_triggers:
            self.metrics.network_programming_duration.observe(max(0.0, now - trigger))
        self._pending_triggers = []
        self.metrics.last_sync_timestamp.set(wall_started)
        self.metrics.iptables_rules.labels(table="nat").set(summary.nat_rules)
        self.metrics.iptables_rules.labels(table="filter").set(summary.filter_rules)
        self.metrics.service_changes_pending.set(self.service_changes.pending())
        self.metrics.endpoint_changes_pending.set(self.slice_changes.pending())
        self.health.synced()
        self._needs_full = False
        if full:
            self._last_full = started
        self.last_sync_was_full = full
        log.debug("%s sync took %.3f s", "full" if full else "partial", duration)
