"""The Node object and its Lease: how the control plane learns this node exists and lives.

Two signals, as in Kubernetes: the Lease in ``kube-node-lease`` is renewed every quarter of
its 40 s duration (a cheap write the node lifecycle controller watches), while the full Node
status is sent only when it changed or every 5 minutes. "Changed" is judged against the
server's copy of the Node, not only against what we last sent: while the agent was silent
the node lifecycle controller may have set our conditions to Unknown, and the first report
after that must put them back (as kubelet compares with the Node it fetched). The lease
duration has no flag; ``KEELSON_NODE_LEASE_DURATION_SECONDS`` shortens it so end-to-end
tests can run the controller with a grace period of seconds. Building the status is a pure
function of a ``NodeFacts`` snapshot (psutil, pyroute2, the runtime version) so thresholds
and conditions are unit-tested without a machine. Condition messages carry no live numbers,
so an idle node does not look "changed" on every heartbeat. Pressure thresholds are
kubelet's hard eviction defaults: memory.available < 100Mi, nodefs.available < 10%, pid use > 90%.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from pyroute2 import IPRoute

from apiclient.backoff import Backoff
from apiclient.client import ApiClient
from apiclient.errors import AlreadyExistsError, ApiError, NotFoundError, TransportError
from apiclient.labels import ARCH_LABEL, HOSTNAME_LABEL, OS_LABEL
from apiclient.meta import utc_now, utc_now_micro
from apiclient.resources import LEASES, NODES

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
LEASE_RENEW_FRACTION = 0.25  # kubelet renews its lease every quarter of its duration
STATUS_REPORT_SECONDS = 300.0
MEMORY_AVAILABLE_MIN_BYTES = 100 * 2**20
DISK_AVAILABLE_MIN_RATIO = 0.10
PID_USE_MAX_RATIO = 0.90
KEELSON_VERSION = "v0.1.0"


@dataclass(frozen=True)
class NodeFacts:
    """Everything the Node status is computed from, measured once per report."""

    cpu_count: int
    memory_total: int
    memory_available: int
    disk_total: int
    disk_available: int
    pids_in_use: int
    pid_max: int
    internal_ip: str | None
    hostname: str
    kernel: str
    os_image: str
    architecture: str
    machine_id: str
    boot_id: str
    runtime_version: str


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _architecture() -> str:
    """The machine in Kubernetes' (Go's) architecture names."""
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def default_route_address() -> str | None:
    """IPv4 address of the interface holding the default route (no packet is sent)."""
    with IPRoute() as ipr:
        for route in ipr.get_default_routes(family=socket.AF_INET):
            index = route.get_attr("RTA_OIF")
            for address in ipr.get_addr(index=index, family=socket.AF_INET):
                return str(address.get_attr("IFA_ADDRESS"))
    return None


def gather_facts(*, data_dir: str, runtime_version: str) -> NodeFacts:
    memory = psutil.virtual_memory()
    disk_path = data_dir if os.path.exists(data_dir) else "/"
    disk = psutil.disk_usage(disk_path)
    return NodeFacts(
        cpu_count=psutil.cpu_count() or 1,
        memory_total=memory.total,
        memory_available=memory.available,
        disk_total=disk.total,
        disk_available=disk.free,
        pids_in_use=len(psutil.pids()),
        pid_max=int(_read("/proc/sys/kernel/pid_max") or 32768),
        internal_ip=default_route_address(),
        hostname=socket.gethostname().lower(),
        kernel=platform.release(),
        os_image=_os_image(),
        architecture=_architecture(),
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        runtime_version=runtime_version,
    )


def _condition(
    kind: str,
    ok_value: bool,
    reason: str,
    message: str,
    *,
    now: str,
    previous: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    status = "True" if ok_value else "False"
    before = previous.get(kind) or {}
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": since or now,
    }


def node_conditions(
    facts: NodeFacts,
    *,
    runtime_healthy: bool,
    now: str,
    previous: list[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    old = {c["type"]: c for c in previous or []}
    memory_low = facts.memory_available < MEMORY_AVAILABLE_MIN_BYTES
    disk_low = facts.disk_available < DISK_AVAILABLE_MIN_RATIO * facts.disk_total
    pids_high = facts.pids_in_use > PID_USE_MAX_RATIO * facts.pid_max
    return [
        _condition(
            "MemoryPressure",
            memory_low,
            "KubeletHasInsufficientMemory" if memory_low else "KubeletHasSufficientMemory",
            f"kubelet has {'insufficient' if memory_low else 'sufficient'} memory available",
            now=now,
            previous=old,
        ),
        _condition(
            "DiskPressure",
            disk_low,
            "KubeletHasDiskPressure" if disk_low else "KubeletHasNoDiskPressure",
            f"kubelet has {'' if disk_low else 'no '}disk pressure",
            now=now,
            previous=old,
        ),
        _condition(
            "PIDPressure",
            pids_high,
            "KubeletHasInsufficientPID" if pids_high else "KubeletHasSufficientPID",
            f"kubelet has {'insufficient' if pids_high else 'sufficient'} PID available",
            now=now,
            previous=old,
        ),
        _condition(
            "Ready",
            runtime_healthy,
            "KubeletReady" if runtime_healthy else "KubeletNotReady",
            "kubelet is posting ready status"
            if runtime_healthy
            else "container runtime is down or PLEG is not healthy",
            now=now,
            previous=old,
        ),
    ]


def node_status(
    facts: NodeFacts,
    *,
    max_pods: int,
    kubelet_port: int,
    runtime_healthy: bool,
    now: str,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    capacity = {
        "cpu": str(facts.cpu_count),
        "memory": f"{facts.memory_total // 1024}Ki",
        "ephemeral-storage": f"{facts.disk_total // 1024}Ki",
        "pods": str(max_pods),
    }
    addresses = [{"type": "Hostname", "address": facts.hostname}]
    if facts.internal_ip:
        addresses.insert(0, {"type": "InternalIP", "address": facts.internal_ip})
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": node_conditions(
            facts,
            runtime_healthy=runtime_healthy,
            now=now,
            previous=(previous or {}).get("conditions"),
        ),
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.machine_id,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel,
            "osImage": facts.os_image,
            "containerRuntimeVersion": f"docker://{facts.runtime_version}",
            "kubeletVersion": KEELSON_VERSION,
            "kubeProxyVersion": KEELSON_VERSION,
            "operatingSystem": "linux",
            "architecture": facts.architecture,
        },
    }


def lease_duration_seconds() -> int:
    """The Lease's duration: 40 s, or ``KEELSON_NODE_LEASE_DURATION_SECONDS`` if set."""
    value = os.environ.get("KEELSON_NODE_LEASE_DURATION_SECONDS", "")
    try:
        seconds = int(value) if value else LEASE_DURATION_SECONDS
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise ValueError(f"KEELSON_NODE_LEASE_DURATION_SECONDS={value!r}: "
                         "must be a whole number of seconds, at least 1")
    return seconds


def condition_states(status: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each condition's (status, reason): what differs when someone else rewrote them."""
    return {c.get("type"): (c.get("status"), c.get("reason"))
            for c in status.get("conditions") or []}


def _without_heartbeats(status: Mapping[str, Any]) -> dict[str, Any]:
    """Status minus the fields that change on every report, to decide "changed"."""
    result = dict(status)
    result["conditions"] = [
        {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
        for c in status.get("conditions") or []
    ]
    return result


class NodeReporter:
    """Registers the Node, keeps its Lease fresh and reports status on change."""

    def __init__(
        self,
        client: ApiClient,
        *,
        node_name: str,
        max_pods: int,
        kubelet_port: int,
        data_dir: str,
        runtime_version: Callable[[], str],
        runtime_healthy: Callable[[], bool],
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.max_pods = max_pods
        self.kubelet_port = kubelet_port
        self.data_dir = data_dir
        self._runtime_version = runtime_version
        self._runtime_healthy = runtime_healthy
        self.lease_duration_seconds = lease_duration_seconds()
        self.node: dict[str, Any] | None = None
        self._last_sent: dict[str, Any] | None = None
        self._last_sent_at = 0.0

    def _status(self) -> dict[str, Any]:
        facts = gather_facts(data_dir=self.data_dir, runtime_version=self._runtime_version())
        previous = (self.node or {}).get("status")
        return node_status(
            facts,
            max_pods=self.max_pods,
            kubelet_port=self.kubelet_port,
            runtime_healthy=self._runtime_healthy(),
            now=utc_now(),
            previous=previous,
        )

    async def register(self) -> dict[str, Any]:
        """Create (or adopt) the Node object and send a first full status."""
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    HOSTNAME_LABEL: self.node_name,
                    OS_LABEL: "linux",
                    ARCH_LABEL: _architecture(),
                },
            },
            "spec": {},
        }
        try:
            self.node = await self.client.create(NODES, body)
        except AlreadyExistsError:
            self.node = await self.client.get(NODES, self.node_name)
        await self.report_status(force=True)
        assert self.node is not None
        return self.node

    @property
    def pod_cidr(self) -> str | None:
        return ((self.node or {}).get("spec") or {}).get("podCIDR")

    async def report_status(self, *, force: bool = False) -> bool:
        """Patch the Node status if it changed, if the server's conditions differ from
        ours, if ``force`` or every 5 minutes; True if a patch was sent."""
        if not force:  # register() has just fetched the Node
            self.node = await self.client.get(NODES, self.node_name)
        status = await asyncio.to_thread(self._status)
        loop_time = asyncio.get_running_loop().time()
        on_server = (self.node or {}).get("status") or {}
        changed = (
            self._last_sent is None
            or _without_heartbeats(status) != _without_heartbeats(self._last_sent)
            or condition_states(status) != condition_states(on_server)
        )
        if not (force or changed or loop_time - self._last_sent_at >= STATUS_REPORT_SECONDS):
            return False
        self.node = await self.client.patch(
            NODES, self.node_name, {"status": status}, subresource="status", patch_type="merge"
        )
        self._last_sent, self._last_sent_at = status, loop_time
        return True

    async def renew_lease(self) -> dict[str, Any]:
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "renewTime": utc_now_micro(),
        }
        try:
            lease = await self.client.get(LEASES, self.node_name, namespace=LEASE_NAMESPACE)
        except NotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE},
                "spec": {**spec, "acquireTime": spec["renewTime"]},
            }
            return await self.client.create(LEASES, body, namespace=LEASE_NAMESPACE)
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        return await self.client.replace(LEASES, lease, namespace=LEASE_NAMESPACE)

    async def run(self, *, _iterations: int | None = None) -> None:
        """Renew the lease every quarter of its duration (retry 200 ms doubling to 7 s)
        and report status."""
        renew_seconds = self.lease_duration_seconds * LEASE_RENEW_FRACTION
        backoff = Backoff(initial=0.2, maximum=7.0, jitter=0.1)
        done = 0
        while _iterations is None or done < _iterations:
            done += 1
            try:
                await self.renew_lease()
                try:
                    await self.report_status()
                except (ApiError, TransportError, OSError) as err:
                    log.warning("node status report failed; next try in %.0fs: %s",
                                renew_seconds, err)
                backoff.reset()
                await asyncio.sleep(renew_seconds)
            except (ApiError, TransportError, OSError) as err:
                delay = backoff.next_delay()
                log.warning("lease renewal failed, retrying in %.1fs: %s", delay, err)
                await asyncio.sleep(delay)
