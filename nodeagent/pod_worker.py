"""One asyncio worker per pod UID: make Docker match the pod spec, then report status.

Shape taken from kubelet's ``pod_workers.go``: the informer only hands the newest pod
object to ``PodWorkers.update_pod``; the worker keeps just that latest version and a wake-up
flag, so a burst of updates collapses into one sync that reads the newest spec. Each worker
moves through explicit states, never backwards:

    SYNCING      create sandbox + network, run init containers in order, then app
                 containers; restart per restartPolicy with CrashLoopBackOff; PATCH status
                 only when it changed. A pod that reached Succeeded/Failed stays here with
                 its sandbox stopped and its IP released.
    TERMINATING  deletionTimestamp set (or the pod vanished from the API): preStop, stop
                 with the grace period, remove containers, sandbox, veth, IP, volumes, then
                 delete the pod object with grace 0.
    TERMINATED   the worker is gone from the table; a new pod with the same UID is refused.

A slow pod never holds up others: each worker is its own task and every runtime call has a
timeout. All state a sync needs is re-read from the runtime (labels) on every pass, so an
agent restart adopts running containers as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from apiclient.errors import ApiError, TransportError
from apiclient.meta import parse_time, utc_now
from nodeagent import volumes
from nodeagent.api import PodApi
from nodeagent.backoff import Backoff
from nodeagent.container_spec import (
    ContainerConfigError,
    build_container_config,
    default_pull_policy,
    hosts_file_content,
    sandbox_labels,
    sandbox_name,
    spec_hash,
)
from nodeagent.metrics import AgentMetrics
from nodeagent.network.manager import PodNetworkManager
from nodeagent.probes import LIVENESS, READINESS, STARTUP, ContainerProber, probes_of
from nodeagent.runtime.interface import (
    KIND_APP,
    KIND_INIT,
    LABEL_CONTAINER_HASH,
    LABEL_POD_UID,
    ContainerCreateError,
    ContainerInfo,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerStartError,
    ContainerState,
    ImageNotFoundError,
    ImagePullError,
    RuntimeUnavailableError,
    SandboxConfig,
)
from nodeagent.status import StatusInput, Waiting, compute_pod_status, status_changed

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 30
RESYNC_SECONDS = 60.0  # safety net; PLEG and informer events normally wake a worker
RETRY_SECONDS = 2.0  # after a failed sync step (runtime or API trouble)
TERMINAL_PHASES = ("Succeeded", "Failed")


class WorkerState(enum.StrEnum):
    SYNCING = "syncing"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


@dataclass
class NodeContext:
    """What every pod worker shares: the node's runtime, network, API and settings."""

    runtime: ContainerRuntime
    network: PodNetworkManager
    api: PodApi
    node_name: str
    host_ip: str | None
    pod_infra_image: str
    data_dir: Path
    metrics: AgentMetrics
    restart_backoff: Backoff = field(default_factory=Backoff)
    pull_backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.time


def _pod_uid(pod: Mapping[str, Any]) -> str:
    return str(pod["metadata"]["uid"])


def _grace_seconds(pod: Mapping[str, Any]) -> int:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    for value in (
        meta.get("deletionGracePeriodSeconds"),
        spec.get("terminationGracePeriodSeconds"),
    ):
        if value is not None:
            return max(0, int(value))
    return DEFAULT_GRACE_SECONDS


def _epoch(rfc3339: str) -> float:
    return parse_time(rfc3339).timestamp() if rfc3339 else 0.0


def _should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


@dataclass
class PodView:
    """The runtime's picture of one pod, rebuilt from labels on every sync."""

    sandboxes: list[ContainerInfo]  # newest first
    containers: dict[str, list[ContainerInfo]]  # container name -> instances, newest first

    @property
    def running_sandbox(self) -> ContainerInfo | None:
        for sandbox in self.sandboxes:
            if sandbox.state is ContainerState.RUNNING:
                return sandbox
        return None

    def running_containers(self) -> list[ContainerInfo]:
        return [
            info
            for instances in self.containers.values()
            for info in instances
            if info.state is ContainerState.RUNNING
        ]

    def all_ids(self) -> list[str]:
        ids = [i.id for instances in self.containers.values() for i in instances]
        return ids + [s.id for s in self.sandboxes]


async def read_pod_view(runtime: ContainerRuntime, pod_uid: str) -> PodView:
    summaries = await runtime.list_containers(labels={LABEL_POD_UID: pod_uid})
    infos: list[ContainerInfo] = []
    for summary in summaries:
        with contextlib.suppress(ContainerRuntimeError):  # removed between list and inspect
            infos.append(await runtime.inspect_container(summary.id))

    def newest(i: ContainerInfo) -> tuple[int, str]:
        return (i.restart_count, i.created_at)

    sandboxes = sorted(
        (i for i in infos if i.labels.get("io.keelson.type") == "sandbox"),
        key=lambda i: i.created_at,
        reverse=True,
    )
    containers: dict[str, list[ContainerInfo]] = {}
    for info in sorted((i for i in infos if i.container_name), key=newest, reverse=True):
        containers.setdefault(info.container_name, []).append(info)
    return PodView(sandboxes, containers)


class PodWorker:
    def __init__(
        self, pod: dict, context: NodeContext, *, on_terminated: Callable[[str], None]
    ) -> None:
        self.uid = _pod_uid(pod)
        self.pod = pod
        self.ctx = context
        self.state = WorkerState.SYNCING
        self.api_gone = False  # the pod object no longer exists: do not delete it again
        self.waiting: dict[str, Waiting] = {}
        self.ready: dict[str, bool] = {}  # readiness probe results by container name
        self.unhealthy: set[str] = set()  # container ids the liveness probe condemned
        self.pod_ip: str | None = None
        self.terminal_phase: str | None = None
        self.last_status: dict[str, Any] | None = None
        self.first_seen = time.monotonic()
        self.pull_seconds = 0.0  # image pulls are excluded from the start-up SLI
        self.running_reported = False
        self._on_terminated = on_terminated
        self._wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.probers: dict[str, asyncio.Task] = {}  # container id -> its prober
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL_PHASES:
            self.terminal_phase = phase
        if pod["metadata"].get("deletionTimestamp"):
            self.state = WorkerState.TERMINATING

    # -- inputs -------------------------------------------------------------------------
    def update(self, pod: dict) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp") and self.state is WorkerState.SYNCING:
            self.state = WorkerState.TERMINATING
        self.wake()

    def pod_removed(self) -> None:
        self.api_gone = True
        if self.state is WorkerState.SYNCING:
            self.state = WorkerState.TERMINATING
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> asyncio.Task:
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"pod-{self.uid}")
        return self.task

    @property
    def key(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta.get('namespace')}/{meta['name']}"

    # -- loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            self._stop_probers(keep=set())

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            if self.state is WorkerState.SYNCING:
                delay = await self._timed(self._sync_once, "sync")
            else:
                delay = await self._timed(self._terminate_once, "terminate")
                if delay is None:
                    self.state = WorkerState.TERMINATED
                    self._on_terminated(self.uid)
                    return
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay if delay else RESYNC_SECONDS):
                    await self._wake.wait()

    async def _timed(self, step: Callable[[], Any], kind: str) -> float | None:
        started = time.monotonic()
        try:
            return await step()
        except (ContainerRuntimeError, ApiError, TransportError, OSError) as err:
            log.warning("pod %s: %s failed, retrying: %s", self.key, kind, err)
            return RETRY_SECONDS
        except Exception:  # a bug must stall one pod for a while, never kill its worker
            log.exception("pod %s: unexpected error during %s; retrying", self.key, kind)
            return RETRY_SECONDS * 5
        finally:
            self.ctx.metrics.pod_worker_duration.labels(operation_type=kind).observe(
                time.monotonic() - started
            )

    # -- syncing ------------------------------------------------------------------------
    async def _sync_once(self) -> float | None:
        """One pass towards the desired state; returns seconds until the next pass needed."""
        pod = self.pod
        view = await read_pod_view(self.ctx.runtime, self.uid)
        if self.terminal_phase is not None:
            await self._release_sandbox(view)
            await self._report(view)
            return None
        sandbox = view.running_sandbox
        if sandbox is not None and self.ctx.network.address_of(sandbox.id) is None:
            log.warning("pod %s: sandbox %s has no IP; replacing it", self.key, sandbox.id[:12])
            await self._kill_sandbox(view, sandbox)
            sandbox = None
        if sandbox is None:
            sandbox = await self._create_sandbox(view)
            if sandbox is None:
                await self._report(view)
                return RETRY_SECONDS * 2
            view = await read_pod_view(self.ctx.runtime, self.uid)
        self.pod_ip = self.ctx.network.address_of(sandbox.id)
        next_wake = await self._sync_containers(pod, view, sandbox)
        view = await read_pod_view(self.ctx.runtime, self.uid)
        self._sync_probers(view)
        status = await self._report(view)
        if status["phase"] in TERMINAL_PHASES:
            self.terminal_phase = status["phase"]
            self._stop_probers(keep=set())
            self.waiting.clear()  # nothing will start again: show how containers ended
            await self._release_sandbox(view)
            await self._report(view)
            return None
        return next_wake

    async def _create_sandbox(self, view: PodView) -> ContainerInfo | None:
        pod = self.pod
        for old in view.sandboxes:  # a dead sandbox takes its containers' namespaces with it
            await self._kill_sandbox(view, old)
        try:
            if not await self.ctx.runtime.image_present(self.ctx.pod_infra_image):
                await self.ctx.runtime.pull_image(self.ctx.pod_infra_image)
            sandbox_id = await self.ctx.runtime.run_sandbox(
                SandboxConfig(
                    name=sandbox_name(pod, f"{int(self.ctx.clock() * 1000) % 10**9}"),
                    image=self.ctx.pod_infra_image,
                    labels=sandbox_labels(pod),
                    hostname=pod["metadata"]["name"],
                )
            )
        except RuntimeUnavailableError:
            raise
        except ContainerRuntimeError as err:
            self._sandbox_failed(f"failed to create pod sandbox: {err}")
            return None
        info = await self.ctx.runtime.inspect_container(sandbox_id)
        try:
            await self.ctx.network.setup(
                pod_uid=self.uid, sandbox_id=sandbox_id, sandbox_pid=info.pid
            )
        except Exception as err:
            log.warning("pod %s: network set-up failed: %s", self.key, err)
            await self.ctx.runtime.remove_container(sandbox_id)
            self._sandbox_failed(f"failed to set up pod network: {err}")
            return None
        return info

    def _sandbox_failed(self, message: str) -> None:
        self.ctx.api.record_event(self.pod, "Warning", "FailedCreatePodSandBox", message)
        for spec in self._all_specs():
            self.waiting[spec["name"]] = Waiting("ContainerCreating", message)

    def _all_specs(self) -> list[dict]:
        spec = self.pod.get("spec", {})
        return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])

    async def _kill_sandbox(self, view: PodView, sandbox: ContainerInfo) -> None:
        for info in view.running_containers():
            await self.ctx.runtime.stop_container(info.id, timeout=_grace_seconds(self.pod))
        await self.ctx.runtime.stop_container(sandbox.id, timeout=0)
        await self.ctx.network.teardown(pod_uid=self.uid, sandbox_ids=[sandbox.id])
        await self.ctx.runtime.remove_container(sandbox.id)

    async def _release_sandbox(self, view: PodView) -> None:
        """A finished pod keeps its containers (for logs) but not its sandbox or IP."""
        for sandbox in view.sandboxes:
            if sandbox.state is ContainerState.RUNNING:
                await self.ctx.runtime.stop_container(sandbox.id, timeout=0)
        if view.sandboxes:
            await self.ctx.network.teardown(
                pod_uid=self.uid, sandbox_ids=[s.id for s in view.sandboxes]
            )

    async def _sync_containers(
        self, pod: dict, view: PodView, sandbox: ContainerInfo
    ) -> float | None:
        spec = pod.get("spec", {})
        policy = spec.get("restartPolicy", "Always")
        config_maps = await self.ctx.api.config_maps(
            pod["metadata"]["namespace"], volumes.config_map_names(pod)
        )
        try:
            volume_paths = await asyncio.to_thread(
                volumes.prepare_volumes, pod, data_dir=self.ctx.data_dir, config_maps=config_maps
            )
        except ContainerConfigError as err:
            for container in self._all_specs():
                self.waiting[container["name"]] = Waiting("CreateContainerConfigError", str(err))
            return RETRY_SECONDS * 5
        hosts_file = await asyncio.to_thread(self._write_hosts_file)
        environment = {
            "sandbox": sandbox,
            "volume_paths": volume_paths,
            "config_maps": config_maps,
            "hosts_file": hosts_file,
        }
        waits: list[float] = []

        for container in spec.get("initContainers") or []:
            instances = view.containers.get(container["name"], [])
            latest = instances[0] if instances else None
            if (
                latest is not None
                and latest.state is ContainerState.EXITED
                and latest.exit_code == 0
            ):
                continue
            if latest is not None and latest.state is ContainerState.RUNNING:
                return None  # wait for it to finish; PLEG wakes us
            # init containers of an OnFailure/Always pod restart on failure; Never fails the pod
            init_policy = "Never" if policy == "Never" else "OnFailure"
            wait = await self._ensure_started(
                container, latest, KIND_INIT, init_policy, **environment
            )
            return wait

        for container in spec.get("containers") or []:
            instances = view.containers.get(container["name"], [])
            latest = instances[0] if instances else None
            if latest is not None and latest.id in self.unhealthy:
                await self._kill_unhealthy(container, latest)
                latest = await self.ctx.runtime.inspect_container(latest.id)
            if latest is not None and self._spec_changed(container, latest):
                await self._kill(container, latest, "Container definition changed")
                wait = await self._start(
                    container, KIND_APP, latest.restart_count + 1, **environment
                )
                if wait:
                    waits.append(wait)
                continue
            if latest is not None and latest.state is ContainerState.RUNNING:
                self.waiting.pop(container["name"], None)
                continue
            wait = await self._ensure_started(container, latest, KIND_APP, policy, **environment)
            if wait:
                waits.append(wait)
        return min(waits) if waits else None

    async def _kill_unhealthy(self, container: Mapping[str, Any], info: ContainerInfo) -> None:
        self.unhealthy.discard(info.id)
        await self._kill(container, info, "Container failed liveness probe")

    async def _kill(self, container: Mapping[str, Any], info: ContainerInfo, why: str) -> None:
        self.ctx.api.record_event(
            self.pod,
            "Normal",
            "Killing",
            f"{why}, container {container['name']} will be restarted",
        )
        await self.ctx.runtime.stop_container(info.id, timeout=_grace_seconds(self.pod))

    @staticmethod
    def _spec_changed(container: Mapping[str, Any], info: ContainerInfo) -> bool:
        """A running container made from an older spec (only the image may change in place)."""
        recorded = info.labels.get(LABEL_CONTAINER_HASH)
        return (
            info.state is ContainerState.RUNNING
            and recorded is not None
            and recorded != spec_hash(container)
        )

    async def _ensure_started(
        self,
        container: Mapping[str, Any],
        latest: ContainerInfo | None,
        kind: str,
        policy: str,
        **environment: Any,
    ) -> float | None:
        """Start (or restart) one container if the policy allows; returns a wake-up delay."""
        name = container["name"]
        restart_count = 0
        if latest is not None:
            restart_count = latest.restart_count + 1
            if latest.state is ContainerState.EXITED:
                if not _should_restart(policy, latest.exit_code):
                    self.waiting.pop(name, None)
                    return None
                key = f"{self.uid}/{name}"
                finished = (
                    _epoch(latest.finished_at) or _epoch(latest.created_at) or self.ctx.clock()
                )
                started = _epoch(latest.started_at) or finished
                self.ctx.restart_backoff.ran_for(key, finished - started)
                remaining = self.ctx.restart_backoff.remaining(
                    key, since=finished, now=self.ctx.clock()
                )
                if remaining > 0:
                    self._back_off(name, remaining)
                    return remaining
            elif latest.state is ContainerState.CREATED:
                await self.ctx.runtime.remove_container(latest.id)  # an interrupted attempt
                restart_count = latest.restart_count
        return await self._start(container, kind, restart_count, **environment)

    def _back_off(self, name: str, remaining: float) -> None:
        delay = self.ctx.restart_backoff.current_delay(f"{self.uid}/{name}")
        meta = self.pod["metadata"]
        message = (
            f"back-off {delay:.0f}s restarting failed container={name} "
            f"pod={meta['name']}_{meta['namespace']}({self.uid})"
        )
        if self.waiting.get(name, Waiting("")).reason != "CrashLoopBackOff":
            self.ctx.api.record_event(
                self.pod, "Warning", "BackOff", "Back-off restarting failed container " + name
            )
        self.waiting[name] = Waiting("CrashLoopBackOff", message)

    async def _start(
        self,
        container: Mapping[str, Any],
        kind: str,
        restart_count: int,
        *,
        sandbox: ContainerInfo,
        volume_paths: dict[str, str],
        config_maps: dict[str, dict],
        hosts_file: str,
    ) -> float | None:
        name = container["name"]
        pull_wait = await self._ensure_image(container)
        if pull_wait is not None:
            return pull_wait
        try:
            config = build_container_config(
                self.pod,
                container,
                sandbox_id=sandbox.id,
                restart_count=restart_count,
                kind=kind,
                pod_ip=self.pod_ip,
                host_ip=self.ctx.host_ip,
                volume_paths=volume_paths,
                config_maps=config_maps,
                hosts_file=hosts_file if kind == KIND_APP else None,
            )
        except ContainerConfigError as err:
            self._failed(name, "CreateContainerConfigError", str(err))
            return RETRY_SECONDS * 5
        key = f"{self.uid}/{name}"
        try:
            container_id = await self.ctx.runtime.create_container(config)
        except ContainerCreateError as err:
            self._failed(name, "CreateContainerError", str(err))
            return RETRY_SECONDS * 5
        except ImageNotFoundError as err:  # removed between the check and the create
            self._failed(name, "ErrImagePull", str(err))
            return RETRY_SECONDS
        self.ctx.api.record_event(self.pod, "Normal", "Created", f"Created container {name}")
        if restart_count > 0:
            self.ctx.restart_backoff.attempted(key, now=self.ctx.clock())
        try:
            await self.ctx.runtime.start_container(container_id)
        except ContainerStartError as err:
            self._failed(name, "RunContainerError", str(err))
            self.ctx.restart_backoff.attempted(key, now=self.ctx.clock())
            return None
        self.waiting.pop(name, None)
        self.ctx.api.record_event(self.pod, "Normal", "Started", f"Started container {name}")
        return None

    def _failed(self, name: str, reason: str, message: str) -> None:
        self.waiting[name] = Waiting(reason, message)
        self.ctx.api.record_event(self.pod, "Warning", "Failed", f"Error: {message}")

    async def _ensure_image(self, container: Mapping[str, Any]) -> float | None:
        """Make the image present per imagePullPolicy; a delay means "not yet, back off"."""
        image = container["image"]
        name = container["name"]
        policy = container.get("imagePullPolicy") or default_pull_policy(image)
        present = await self.ctx.runtime.image_present(image)
        if policy == "Never":
            if present:
                return None
            self._failed(
                name,
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never',
            )
            return RETRY_SECONDS * 5
        if present and policy == "IfNotPresent":
            return None
        key = f"{self.uid}/pull/{image}"
        remaining = self.ctx.pull_backoff.remaining(key, now=self.ctx.clock())
        if remaining > 0:
            if self.waiting.get(name, Waiting("")).reason != "ImagePullBackOff":
                self.ctx.api.record_event(
                    self.pod, "Normal", "BackOff", f'Back-off pulling image "{image}"'
                )
            self.waiting[name] = Waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
            return remaining
        self.ctx.api.record_event(self.pod, "Normal", "Pulling", f'Pulling image "{image}"')
        started = time.monotonic()
        try:
            await self.ctx.runtime.pull_image(image)
        except ImagePullError as err:
            self.pull_seconds += time.monotonic() - started
            self.ctx.pull_backoff.attempted(key, now=self.ctx.clock())
            self._failed(name, "ErrImagePull", str(err))
            return self.ctx.pull_backoff.current_delay(key)
        self.ctx.pull_backoff.reset(key)
        self.pull_seconds += time.monotonic() - started
        self.ctx.api.record_event(
            self.pod,
            "Normal",
            "Pulled",
            f'Successfully pulled image "{image}" in {time.monotonic() - started:.3f}s',
        )
        return None

    def _write_hosts_file(self) -> str:
        path = volumes.pod_dir(self.ctx.data_dir, self.uid) / "etc-hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        content = hosts_file_content(pod_ip=self.pod_ip, hostname=self.pod["metadata"]["name"])
        if not path.exists() or path.read_text() != content:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(content)
            tmp.replace(path)
        return str(path)

    async def _report(self, view: PodView) -> dict[str, Any]:
        previous = self.last_status or self.pod.get("status") or {}
        pod_for_status = {**self.pod, "status": previous}
        status = compute_pod_status(
            StatusInput(
                pod=pod_for_status,
                instances=view.containers,
                waiting=self.waiting,
                ready=self.ready,
                pod_ip=self.pod_ip,
                host_ip=self.ctx.host_ip,
                now=utc_now(),
                terminal_phase=self.terminal_phase,
            )
        )
        # Like kubelet's status manager, reconcile with the server's copy too: someone else
        # (the node lifecycle controller marking pods not ready) may have changed it. A
        # repeated identical patch costs nothing: the apiserver does not write no-op updates.
        if status_changed(previous, status) or status_changed(self.pod.get("status"), status):
            await self.ctx.api.patch_status(self.pod, status)
            self.last_status = status
        elif self.last_status is None:
            self.last_status = status
        if status["phase"] == "Running" and not self.running_reported and self.pod_ip:
            self.running_reported = True
            took = time.monotonic() - self.first_seen
            self.ctx.metrics.pod_start_duration.observe(took)
            self.ctx.metrics.pod_start_sli_duration.observe(max(0.0, took - self.pull_seconds))
        return status

    # -- probes -------------------------------------------------------------------------
    def _sync_probers(self, view: PodView) -> None:
        """One prober per running app container that declares probes; none for the rest."""
        wanted: dict[str, Mapping[str, Any]] = {}
        for container in self.pod.get("spec", {}).get("containers") or []:
            instances = view.containers.get(container["name"], [])
            if instances and instances[0].state is ContainerState.RUNNING and probes_of(container):
                wanted[instances[0].id] = container
        self._stop_probers(keep=set(wanted))
        for container_id, container in wanted.items():
            if container_id in self.probers:
                continue
            name = container["name"]
            if STARTUP in probes_of(container) or READINESS in probes_of(container):
                self.ready[name] = False
            prober = ContainerProber(
                container,
                container_id,
                runtime=self.ctx.runtime,
                pod_ip=self.pod_ip,
                on_change=lambda kind, ok, message, c=container, cid=container_id: (
                    self._probe_changed(c, cid, kind, ok, message)
                ),
                on_failure=lambda kind, message, c=container: self.ctx.api.record_event(
                    self.pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}"
                ),
            )
            self.probers[container_id] = asyncio.get_running_loop().create_task(
                prober.run(), name=f"probe-{container_id[:12]}"
            )

    def _probe_changed(
        self, container: Mapping[str, Any], container_id: str, kind: str, ok: bool, message: str
    ) -> None:
        name = container["name"]
        if kind == READINESS:
            self.ready[name] = ok
        elif kind == STARTUP and ok and READINESS not in probes_of(container):
            self.ready[name] = True
        elif kind in (LIVENESS, STARTUP) and not ok:
            self.unhealthy.add(container_id)
        self.wake()

    def _stop_probers(self, *, keep: set[str]) -> None:
        for container_id in [c for c in self.probers if c not in keep]:
            self.probers.pop(container_id).cancel()

    # -- terminating --------------------------------------------------------------------
    async def _terminate_once(self) -> float | None:
        """Stop everything of the pod; None when done (retry delay otherwise)."""
        pod = self.pod
        self._stop_probers(keep=set())
        grace = _grace_seconds(pod)
        view = await read_pod_view(self.ctx.runtime, self.uid)
        running = view.running_containers()
        for info in running:
            self.ctx.api.record_event(
                pod, "Normal", "Killing", f"Stopping container {info.container_name}"
            )
        deadline = time.monotonic() + grace
        await asyncio.gather(*(self._pre_stop(info, grace) for info in running))
        remaining = max(0.0, deadline - time.monotonic())
        await asyncio.gather(
            *(self.ctx.runtime.stop_container(info.id, timeout=remaining) for info in running)
        )
        for sandbox in view.sandboxes:
            await self.ctx.runtime.stop_container(sandbox.id, timeout=0)
        for container_id in view.all_ids():
            await self.ctx.runtime.remove_container(container_id)
        await self.ctx.network.teardown(
            pod_uid=self.uid, sandbox_ids=[s.id for s in view.sandboxes]
        )
        await asyncio.to_thread(volumes.remove_pod_dir, self.ctx.data_dir, self.uid)
        self.ctx.restart_backoff.forget_prefix(self.uid + "/")
        self.ctx.pull_backoff.forget_prefix(self.uid + "/")
        if not self.api_gone:
            await self.ctx.api.delete_pod(pod)
        self.ctx.api.forget_pod(self.uid)
        return None

    async def _pre_stop(self, info: ContainerInfo, grace: int) -> None:
        spec = next(
            (
                c
                for c in self.pod.get("spec", {}).get("containers") or []
                if c["name"] == info.container_name
            ),
            None,
        )
        hook = ((spec or {}).get("lifecycle") or {}).get("preStop")
        if not hook or grace <= 0:
            return
        try:
            if "exec" in hook:
                await self.ctx.runtime.exec_in_container(
                    info.id, list(hook["exec"]["command"]), timeout=grace
                )
            elif "httpGet" in hook and self.pod_ip:
                get = hook["httpGet"]
                url = f"http://{get.get('host') or self.pod_ip}:{get['port']}{get.get('path', '/')}"
                timeout = aiohttp.ClientTimeout(total=grace)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(url) as response,
                ):
                    await response.read()
        except (ContainerRuntimeError, aiohttp.ClientError, TimeoutError) as err:
            self.ctx.api.record_event(
                self.pod, "Warning", "FailedPreStopHook", f"PreStopHook failed: {err}"
            )


class PodWorkers:
    """The table of pod workers, keyed by UID; informer and PLEG callbacks land here."""

    def __init__(self, context: NodeContext) -> None:
        self.ctx = context
        self.workers: dict[str, PodWorker] = {}
        self.terminated: set[str] = set()

    def update_pod(self, pod: dict) -> None:
        uid = _pod_uid(pod)
        if uid in self.terminated:
            return
        worker = self.workers.get(uid)
        if worker is None:
            worker = PodWorker(pod, self.ctx, on_terminated=self._terminated)
            self.workers[uid] = worker
            worker.start()
        else:
            worker.update(pod)

    def remove_pod(self, pod: dict) -> None:
        worker = self.workers.get(_pod_uid(pod))
        if worker is not None:
            worker.pod_removed()

    def wake(self, pod_uid: str) -> None:
        worker = self.workers.get(pod_uid)
        if worker is not None:
            worker.wake()

    def _terminated(self, uid: str) -> None:
        self.workers.pop(uid, None)
        self.terminated.add(uid)

    async def cleanup_orphans(self, known_uids: set[str]) -> list[str]:
        """Remove containers and networking of pods the API does not know (any more)."""
        summaries = await self.ctx.runtime.list_containers()
        orphans = sorted({s.pod_uid for s in summaries} - known_uids - set(self.workers))
        for uid in orphans:
            sandboxes = [s.id for s in summaries if s.pod_uid == uid and s.is_sandbox]
            for summary in summaries:
                if summary.pod_uid == uid and summary.state is ContainerState.RUNNING:
                    await self.ctx.runtime.stop_container(summary.id, timeout=2)
            for summary in summaries:
                if summary.pod_uid == uid:
                    await self.ctx.runtime.remove_container(summary.id)
            await self.ctx.network.teardown(pod_uid=uid, sandbox_ids=sandboxes)
            await asyncio.to_thread(volumes.remove_pod_dir, self.ctx.data_dir, uid)
            log.info("removed containers of pod %s, which no longer exists", uid)
        return orphans

    async def stop(self) -> None:
        """Cancel every worker; pods keep running (kubelet leaves them on shutdown)."""
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
