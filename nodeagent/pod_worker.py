"""One asyncio worker per pod UID: make the runtime match the pod spec, then report status.

Shape taken from kubelet's ``pod_workers.go``: the informer only hands the newest pod
object to ``PodWorkers.update_pod``; the worker keeps just that latest version and a wake-up
flag, so a burst of updates collapses into one pass that reads the newest spec. Each worker
moves through explicit states, never backwards:

    SYNCING      make sandbox, network and containers match the spec; PATCH status only
                 when it changed. A pod that reached Succeeded/Failed stays here with its
                 sandbox stopped and its IP released.
    TERMINATING  deletionTimestamp set (or the pod vanished from the API): preStop, stop
                 with the grace period, remove containers, sandbox, veth, IP, volumes, then
                 delete the pod object with grace 0.
    TERMINATED   the worker is gone from the table; a new pod with the same UID is refused.

Every pass is "decide purely, then act" (kubelet's ``SyncPod``): read the pod's containers
from the runtime once (``read_pod_view``; labels carry everything, so an agent restart
adopts running containers as they are), let ``actions.compute_pod_actions`` decide, and
have the executors (``sandbox``, ``containers``, ``images``, ``termination``) carry it
out. Status at the end of the pass is computed from that one view, updated with what the
executors changed. A pass that replaces the sandbox or kills a container for its
liveness probe ends early and the next one follows at once, reading what it left.

A slow pod never holds up others: each worker is its own task and every runtime call has a
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiclient.backoff import KeyedBackoff
from apiclient.errors import ApiError, TransportError
from apiclient.meta import utc_now
from apiclient.pods import TERMINAL_PHASES
from nodeagent.actions import PodActions, PodView, SandboxReason, compute_pod_actions
from nodeagent.api import PodApi, PodRecord
from nodeagent.container_spec import ContainerConfigError
from nodeagent.containers import CONFIG_ERROR_RETRY_SECONDS, ContainerStarter
from nodeagent.images import ImagePuller
from nodeagent.metrics import AgentMetrics
from nodeagent.mounts import HostMounter, Mounter
from nodeagent.network.manager import PodNetworkManager
from nodeagent.prober import ProberManager
from nodeagent.projection import VolumeSetupError
from nodeagent.runtime.interface import (
    LABEL_POD_UID,
    ContainerNotFoundError,
    ContainerRuntime,
    ContainerRuntimeError,
)
from nodeagent.sandbox import SandboxManager
from nodeagent.service_env import ServiceLister
from nodeagent.status import StatusInput, compute_pod_status, status_changed
from nodeagent.termination import Terminator
from nodeagent.tokens import TokenManager

log = logging.getLogger(__name__)

RESYNC_SECONDS = 60.0  # safety net; PLEG and informer events normally wake a worker
RETRY_SECONDS = 2.0  # after a failed sync step (runtime or API trouble)
RESYNC_NOW = 0.0  # a pass returning this is followed by the next one at once
MIN_REFRESH_WAIT_SECONDS = 1.0  # a token due for a refresh: the soonest next pass
MAX_PASSES_AT_ONCE = 3  # then wait: a sandbox that dies at once must not spin

# Container restarts (CrashLoopBackOff) and image pulls back off like kubelet's.
BACKOFF_INITIAL_SECONDS = 10.0
BACKOFF_MAXIMUM_SECONDS = 300.0
BACKOFF_RESET_SECONDS = 600.0  # a container that ran this long starts over without back-off


def kubelet_backoff() -> KeyedBackoff:
    return KeyedBackoff(
        initial=BACKOFF_INITIAL_SECONDS,
        maximum=BACKOFF_MAXIMUM_SECONDS,
        reset_after=BACKOFF_RESET_SECONDS,
    )


class WorkerState(enum.StrEnum):
    SYNCING = "syncing"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


@dataclass
class NodeContext:
    """What every pod worker shares: the node's runtime, network, API, settings, and the
    executors built on them. ``mounter`` makes the tmpfs of secret volumes (tests give a
    fake); ``services`` feeds service env vars (None: no Services, none set)."""

    runtime: ContainerRuntime
    network: PodNetworkManager
    api: PodApi
    node_name: str
    host_ip: str | None
    pod_infra_image: str
    data_dir: Path
    metrics: AgentMetrics
    restart_backoff: KeyedBackoff = field(default_factory=kubelet_backoff)
    pull_backoff: KeyedBackoff = field(default_factory=kubelet_backoff)
    clock: Callable[[], float] = time.time
    mounter: Mounter = field(default_factory=HostMounter)
    services: ServiceLister | None = None
    tokens: TokenManager | None = None  # None: one asking the API through ``api``
    sandboxes: SandboxManager = field(init=False)
    containers: ContainerStarter = field(init=False)
    terminator: Terminator = field(init=False)

    def __post_init__(self) -> None:
        if self.tokens is None:
            self.tokens = TokenManager(self.api.request_token, clock=self.clock)
        self.sandboxes = SandboxManager(
            self.runtime, self.network, infra_image=self.pod_infra_image, clock=self.clock
        )
        self.containers = ContainerStarter(
            self.runtime,
            api=self.api,
            images=ImagePuller(self.runtime, backoff=self.pull_backoff, clock=self.clock),
            backoff=self.restart_backoff,
            host_ip=self.host_ip,
            data_dir=self.data_dir,
            clock=self.clock,
            tokens=self.tokens,
            mounter=self.mounter,
            services=self.services,
        )
        self.terminator = Terminator(
            self.runtime, self.network, data_dir=self.data_dir, mounter=self.mounter
        )


def _pod_uid(pod: dict) -> str:
    return str(pod["metadata"]["uid"])


async def read_pod_view(
    runtime: ContainerRuntime, network: PodNetworkManager, pod_uid: str
) -> PodView:
    """Everything the runtime has of one pod: one list, one inspect per container.

    Only a container removed between list and inspect is left out; any other runtime
    error (a timeout, dockerd restarting) fails the pass, which is retried: a view that
    silently missed a running container would start a duplicate of it."""
    infos = []
    for summary in await runtime.list_containers(labels={LABEL_POD_UID: pod_uid}):
        with contextlib.suppress(ContainerNotFoundError):
            infos.append(await runtime.inspect_container(summary.id))
    return PodView.build(infos, address_of=network.address_of)


class PodWorker:
    def __init__(
        self, pod: dict, context: NodeContext, *, on_terminated: Callable[[str], None]
    ) -> None:
        self.uid = _pod_uid(pod)
        self.ctx = context
        self.record = PodRecord(pod, context.api)
        self.state = WorkerState.SYNCING
        self.api_gone = False  # the pod object no longer exists: do not delete it again
        self.probers = ProberManager(
            context.runtime,
            on_change=self.wake,
            on_failure=lambda kind, message: self.record.event(
                "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}"
            ),
        )
        self.pod_ip: str | None = None
        self.terminal_phase: str | None = None
        self.last_status: dict[str, Any] | None = None
        self.first_seen = time.monotonic()
        self.running_reported = False
        self._on_terminated = on_terminated
        self._wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL_PHASES:
            self.terminal_phase = phase
        if pod["metadata"].get("deletionTimestamp"):
            self.state = WorkerState.TERMINATING

    @property
    def pod(self) -> dict:
        return self.record.pod

    # -- inputs -------------------------------------------------------------------------
    def update(self, pod: dict) -> None:
        self.record.pod = pod
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
            self.probers.stop()

    async def _loop(self) -> None:
        at_once = 0
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
            if delay == RESYNC_NOW:
                at_once += 1
                if at_once <= MAX_PASSES_AT_ONCE:
                    continue
                delay = RETRY_SECONDS * 5
            at_once = 0
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

    def _actions(self, view: PodView) -> PodActions:
        return compute_pod_actions(
            self.pod,
            view,
            backoff=self.ctx.restart_backoff,
            now=self.ctx.clock(),
            unhealthy=self.probers.unhealthy,
            finished=self.terminal_phase is not None,
            terminating=self.state is not WorkerState.SYNCING,
        )

    # -- syncing ------------------------------------------------------------------------
    async def _sync_once(self) -> float | None:
        """One pass towards the desired state; returns seconds until the next pass needed."""
        view = await read_pod_view(self.ctx.runtime, self.ctx.network, self.uid)
        actions = self._actions(view)
        if actions.release_sandbox:
            await self.ctx.sandboxes.release(self.uid, view.sandboxes)
            await self._report(view)
            return None
        if actions.create_sandbox is not None:
            return await self._replace_sandbox(view, actions)
        self.pod_ip = view.sandbox_ip
        view, next_wake = await self._sync_containers(view, actions)
        if actions.resync:
            return RESYNC_NOW
        self.probers.sync(self.pod, view, pod_ip=self.pod_ip)
        status = await self._report(view)
        if status["phase"] in TERMINAL_PHASES:
            self.terminal_phase = status["phase"]
            self.probers.stop()
            self.record.waiting.clear()  # nothing will start again: show how containers ended
            await self.ctx.sandboxes.release(self.uid, view.sandboxes)
            await self._report(view)
            return None
        return next_wake

    async def _replace_sandbox(self, view: PodView, actions: PodActions) -> float | None:
        if actions.create_sandbox is SandboxReason.NO_IP:
            sandbox = view.running_sandbox
            assert sandbox is not None
            log.warning("pod %s: sandbox %s has no IP; replacing it", self.key, sandbox.id[:12])
        for kill in actions.containers_to_kill:
            await self.ctx.terminator.kill_container(
                self.record, kill, grace=actions.grace_seconds
            )
        await self.ctx.sandboxes.remove(self.uid, actions.sandboxes_to_remove)
        if await self.ctx.sandboxes.create(self.record) is None:
            await self._report(view)
            return RETRY_SECONDS * 2
        return RESYNC_NOW  # the next pass starts containers in the new sandbox

    async def _sync_containers(
        self, view: PodView, actions: PodActions
    ) -> tuple[PodView, float | None]:
        """Carry out the container actions; the view as they left it, and when to wake."""
        sandbox = view.running_sandbox
        assert sandbox is not None
        try:
            env = await self.ctx.containers.prepare(
                self.record, sandbox=sandbox, pod_ip=self.pod_ip
            )
        except ContainerConfigError as err:
            if isinstance(err, VolumeSetupError):
                self.record.event("Warning", "FailedMount", str(err))
            running = {info.container_name for info in view.running_containers()}
            self.record.wait_all("CreateContainerConfigError", str(err), running=running)
            return view, CONFIG_ERROR_RETRY_SECONDS
        waits: list[float] = []
        if env.refresh_at is not None:  # rewrite a token before it is due, not a resync late
            until = env.refresh_at - self.ctx.clock()
            if until < RESYNC_SECONDS:
                waits.append(max(until, MIN_REFRESH_WAIT_SECONDS))
        for kill in actions.containers_to_kill:
            self.probers.killed(kill.container_id)
            info = await self.ctx.terminator.kill_container(
                self.record, kill, grace=actions.grace_seconds
            )
            view = view.updated(info) if info is not None else view.without(kill.container_id)
        for name in actions.settled:
            self.record.clear(name)
        for back_off in actions.back_offs:
            self.ctx.containers.back_off(self.record, back_off)
            waits.append(back_off.remaining)
        for start in actions.containers_to_start:
            if start.remove_first is not None:
                view = view.without(start.remove_first)
            outcome = await self.ctx.containers.start(self.record, start, env)
            if outcome.info is not None:
                view = view.updated(outcome.info)
            if outcome.wait:
                waits.append(outcome.wait)
        return view, min(waits) if waits else None

    async def _report(self, view: PodView) -> dict[str, Any]:
        previous = self.last_status or self.pod.get("status") or {}
        pod_for_status = {**self.pod, "status": previous}
        status = compute_pod_status(
            StatusInput(
                pod=pod_for_status,
                instances=view.containers,
                waiting=self.record.waiting,
                ready=self.probers.ready,
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
            self.ctx.metrics.pod_start_sli_duration.observe(
                max(0.0, took - self.record.pull_seconds)
            )
        return status

    # -- terminating --------------------------------------------------------------------
    async def _terminate_once(self) -> float | None:
        """Stop everything of the pod; None when done (retry delay otherwise)."""
        self.probers.stop()
        view = await read_pod_view(self.ctx.runtime, self.ctx.network, self.uid)
        actions = self._actions(view)
        await self.ctx.terminator.kill_pod(self.record, view, actions, pod_ip=self.pod_ip)
        self.ctx.restart_backoff.forget_prefix(self.uid + "/")
        self.ctx.pull_backoff.forget_prefix(self.uid + "/")
        assert self.ctx.tokens is not None
        self.ctx.tokens.forget_pod(self.uid)
        if not self.api_gone:
            await self.ctx.api.delete_pod(self.pod)
        self.ctx.api.forget_pod(self.uid)
        return None


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
        """Remove containers, networking and directories (unmounting their tmpfs) of pods
        the API does not know (any more); returns the pods whose containers went."""
        summaries = await self.ctx.runtime.list_containers()
        orphans = sorted({s.pod_uid for s in summaries} - known_uids - set(self.workers))
        for uid in orphans:
            remains = [s for s in summaries if s.pod_uid == uid]
            await self.ctx.terminator.remove_orphan(uid, remains)
            log.info("removed containers of pod %s, which no longer exists", uid)
        await self.ctx.terminator.remove_orphan_dirs(
            lambda uid: uid in known_uids or uid in self.workers
        )
        return orphans

    async def stop(self) -> None:
        """Cancel every worker; pods keep running (kubelet leaves them on shutdown)."""
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
