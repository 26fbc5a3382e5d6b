"""What one pod worker pass should do, decided purely (kubelet's ``computePodActions``).

The pod worker reads the runtime once per pass into a ``PodView`` and hands it, with the
pod spec, to ``compute_pod_actions``; the ``PodActions`` it gets back say which sandbox to
(re)create or release, which containers to kill and why, which to start (init or app, with
which attempt number and why), and which must wait out their CrashLoopBackOff. No I/O
happens here, so every rule is a row in a table-driven unit test; the executors
(``sandbox``, ``containers``, ``termination``) carry the actions out.

The rules, in the order they are applied:

- a pod being terminated kills every running container (with its grace period) and
  removes every container and sandbox;
- a pod that finished (Succeeded/Failed) only releases its sandbox and IP, keeping its
  containers for logs;
- a pod without a running sandbox that has an IP gets a new one; the old sandboxes and
  the containers in them are killed first, and the pass ends there: the next pass (at
  once) decides about the containers from what the new sandbox left;
- init containers run one at a time in order: a running one is waited for, the first
  one not done successfully is started (restarted on failure unless restartPolicy is
  Never); app containers are only considered once every init container succeeded;
- an app container the liveness (or startup) probe condemned is killed, and the next
  pass restarts it like any container that exited; one running with an older spec (its
  hash label differs) is killed and replaced at once, without back-off;
- an exited container restarts when the restart policy says so: the first restart is
  immediate, later ones wait the back-off counted from when it finished, and one that ran
  for ``reset_after`` seconds starts over without back-off.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

from apiclient.meta import parse_time
from nodeagent.container_spec import spec_hash
from nodeagent.runtime.interface import (
    KIND_APP,
    KIND_INIT,
    LABEL_CONTAINER_HASH,
    LABEL_TYPE,
    TYPE_SANDBOX,
    ContainerInfo,
    ContainerState,
    newest_first,
)

DEFAULT_GRACE_SECONDS = 30


# -- what is ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PodView:
    """The runtime's picture of one pod, rebuilt from container labels on every pass."""

    sandboxes: tuple[ContainerInfo, ...] = ()  # newest first
    containers: Mapping[str, tuple[ContainerInfo, ...]] = field(default_factory=dict)
    sandbox_ip: str | None = None  # the running sandbox's pod IP, if it has one

    @classmethod
    def build(
        cls, infos: Iterable[ContainerInfo], *, address_of: Callable[[str], str | None]
    ) -> PodView:
        """Group inspected containers of one pod; ``address_of`` maps a sandbox to its IP."""
        infos = list(infos)
        sandboxes = tuple(
            sorted(
                (i for i in infos if i.labels.get(LABEL_TYPE) == TYPE_SANDBOX),
                key=lambda i: i.created_at,
                reverse=True,
            )
        )
        view = cls(sandboxes, _group(i for i in infos if i.container_name))
        running = view.running_sandbox
        return view.with_sandbox_ip(address_of(running.id) if running else None)

    def with_sandbox_ip(self, address: str | None) -> PodView:
        return PodView(self.sandboxes, self.containers, address)

    @property
    def running_sandbox(self) -> ContainerInfo | None:
        for sandbox in self.sandboxes:
            if sandbox.state is ContainerState.RUNNING:
                return sandbox
        return None

    def latest(self, name: str) -> ContainerInfo | None:
        instances = self.containers.get(name)
        return instances[0] if instances else None

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

    def updated(self, info: ContainerInfo) -> PodView:
        """The view after an executor changed (or made) one container, known by inspecting
        it: what status reports at the end of a pass without reading the whole pod again."""
        rest = [i for instances in self.containers.values() for i in instances if i.id != info.id]
        return PodView(self.sandboxes, _group([*rest, info]), self.sandbox_ip)

    def without(self, container_id: str) -> PodView:
        kept = [
            i for instances in self.containers.values() for i in instances if i.id != container_id
        ]
        return PodView(self.sandboxes, _group(kept), self.sandbox_ip)


def _group(infos: Iterable[ContainerInfo]) -> dict[str, tuple[ContainerInfo, ...]]:
    containers: dict[str, list[ContainerInfo]] = {}
    for info in newest_first(infos):
        containers.setdefault(info.container_name, []).append(info)
    return {name: tuple(instances) for name, instances in containers.items()}


class RestartBackoff(Protocol):
    """The read side of the restart back-off (``apiclient.backoff.KeyedBackoff``)."""

    reset_after: float

    def remaining(self, key: str, *, now: float, since: float | None = None) -> float: ...

    def current_delay(self, key: str) -> float: ...


# -- what to do ------------------------------------------------------------------------
class SandboxReason(enum.StrEnum):
    NEW = "the pod has no sandbox yet"
    NOT_RUNNING = "the pod sandbox is not running"
    NO_IP = "the pod sandbox has no IP"


class StartReason(enum.StrEnum):
    FIRST = "first start"
    RESTART = "restart after exit"
    SPEC_CHANGED = "container definition changed"
    INTERRUPTED = "an earlier attempt was created but never started"
    UNKNOWN_STATE = "the runtime reports an unknown state"


class KillReason(enum.StrEnum):
    LIVENESS = "Container failed liveness probe"
    SPEC_CHANGED = "Container definition changed"
    SANDBOX_CHANGED = "Pod sandbox changed"
    POD_TERMINATING = "Pod is terminating"

    @property
    def restarts(self) -> bool:
        """Whether the container is killed to be started again (its event says so)."""
        return self in (KillReason.LIVENESS, KillReason.SPEC_CHANGED)


@dataclass(frozen=True)
class ContainerToStart:
    name: str
    kind: str  # KIND_INIT or KIND_APP
    restart_count: int  # the attempt number the new container carries
    reason: StartReason
    remove_first: str | None = None  # a created-but-never-started attempt to remove
    reset_backoff: bool = False  # the last run was long enough to forget the back-off


@dataclass(frozen=True)
class ContainerToKill:
    container_id: str
    name: str
    reason: KillReason


@dataclass(frozen=True)
class BackOff:
    """A container that should restart but must wait (CrashLoopBackOff)."""

    name: str
    remaining: float  # seconds until it may start
    delay: float  # the current back-off step, for the message


@dataclass(frozen=True)
class PodActions:
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    kill_pod: bool = False  # terminating: kill everything, then remove it all
    release_sandbox: bool = False  # finished: stop the sandbox, free the IP, keep containers
    create_sandbox: SandboxReason | None = None
    sandboxes_to_remove: tuple[str, ...] = ()
    containers_to_kill: tuple[ContainerToKill, ...] = ()
    containers_to_start: tuple[ContainerToStart, ...] = ()
    back_offs: tuple[BackOff, ...] = ()
    settled: tuple[str, ...] = ()  # running, or finished for good: no waiting reason
    resync: bool = False  # another pass should follow at once (it decides what this one left)


# -- the rules -------------------------------------------------------------------------
def grace_seconds(pod: Mapping[str, Any]) -> int:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    for value in (
        meta.get("deletionGracePeriodSeconds"),
        spec.get("terminationGracePeriodSeconds"),
    ):
        if value is not None:
            return max(0, int(value))
    return DEFAULT_GRACE_SECONDS


def should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def backoff_key(pod_uid: str, name: str) -> str:
    return f"{pod_uid}/{name}"


def spec_changed(container: Mapping[str, Any], info: ContainerInfo) -> bool:
    """A running container made from an older spec (only the image may change in place)."""
    recorded = info.labels.get(LABEL_CONTAINER_HASH)
    return (
        info.state is ContainerState.RUNNING
        and recorded is not None
        and recorded != spec_hash(container)
    )


def _epoch(rfc3339: str) -> float:
    return parse_time(rfc3339).timestamp() if rfc3339 else 0.0


class _Plan:
    """The container part of PodActions while it is being decided."""

    def __init__(self, pod: Mapping[str, Any], backoff: RestartBackoff, now: float) -> None:
        self.uid = str(pod["metadata"]["uid"])
        self.backoff = backoff
        self.now = now
        self.kill: list[ContainerToKill] = []
        self.start: list[ContainerToStart] = []
        self.back_offs: list[BackOff] = []
        self.settled: list[str] = []

    def start_or_wait(
        self, container: Mapping[str, Any], latest: ContainerInfo | None, kind: str, policy: str
    ) -> None:
        """Start (or restart) one container that is not running, if the policy allows."""
        name = container["name"]
        if latest is None:
            self.start.append(ContainerToStart(name, kind, 0, StartReason.FIRST))
        elif latest.state is ContainerState.EXITED:
            self._restart_exited(name, latest, kind, policy)
        elif latest.state is ContainerState.CREATED:
            self.start.append(
                ContainerToStart(
                    name,
                    kind,
                    latest.restart_count,
                    StartReason.INTERRUPTED,
                    remove_first=latest.id,
                )
            )
        else:
            self.start.append(
                ContainerToStart(name, kind, latest.restart_count + 1, StartReason.UNKNOWN_STATE)
            )

    def _restart_exited(self, name: str, latest: ContainerInfo, kind: str, policy: str) -> None:
        if not should_restart(policy, latest.exit_code):
            self.settled.append(name)
            return
        key = backoff_key(self.uid, name)
        finished = _epoch(latest.finished_at) or _epoch(latest.created_at) or self.now
        started = _epoch(latest.started_at) or finished
        long_run = finished - started >= self.backoff.reset_after
        remaining = 0.0 if long_run else self.backoff.remaining(key, since=finished, now=self.now)
        if remaining > 0:
            self.back_offs.append(BackOff(name, remaining, self.backoff.current_delay(key)))
            return
        self.start.append(
            ContainerToStart(
                name, kind, latest.restart_count + 1, StartReason.RESTART, reset_backoff=long_run
            )
        )

    def actions(self, grace: int) -> PodActions:
        return PodActions(
            grace_seconds=grace,
            containers_to_kill=tuple(self.kill),
            containers_to_start=tuple(self.start),
            back_offs=tuple(self.back_offs),
            settled=tuple(self.settled),
            resync=any(k.reason is KillReason.LIVENESS for k in self.kill),
        )


def _init_containers(plan: _Plan, pod: Mapping[str, Any], view: PodView, policy: str) -> bool:
    """Plan the init containers; True once all of them succeeded (apps may go on)."""
    # init containers of an OnFailure/Always pod restart on failure; Never fails the pod
    init_policy = "Never" if policy == "Never" else "OnFailure"
    for container in pod.get("spec", {}).get("initContainers") or []:
        latest = view.latest(container["name"])
        if latest is not None and latest.state is ContainerState.EXITED and latest.exit_code == 0:
            continue
        if latest is None or latest.state is not ContainerState.RUNNING:
            plan.start_or_wait(container, latest, KIND_INIT, init_policy)
        return False  # one at a time: a running one is waited for (PLEG wakes the worker)
    return True


def _app_containers(
    plan: _Plan, pod: Mapping[str, Any], view: PodView, policy: str, unhealthy: Set[str]
) -> None:
    for container in pod.get("spec", {}).get("containers") or []:
        name = container["name"]
        latest = view.latest(name)
        if latest is not None and latest.id in unhealthy:
            plan.kill.append(ContainerToKill(latest.id, name, KillReason.LIVENESS))
        elif latest is not None and spec_changed(container, latest):
            plan.kill.append(ContainerToKill(latest.id, name, KillReason.SPEC_CHANGED))
            plan.start.append(
                ContainerToStart(
                    name, KIND_APP, latest.restart_count + 1, StartReason.SPEC_CHANGED
                )
            )
        elif latest is not None and latest.state is ContainerState.RUNNING:
            plan.settled.append(name)
        else:
            plan.start_or_wait(container, latest, KIND_APP, policy)


def _sandbox_reason(view: PodView) -> SandboxReason | None:
    if view.running_sandbox is not None:
        return SandboxReason.NO_IP if view.sandbox_ip is None else None
    return SandboxReason.NOT_RUNNING if view.sandboxes else SandboxReason.NEW


def compute_pod_actions(
    pod: Mapping[str, Any],
    view: PodView,
    *,
    backoff: RestartBackoff,
    now: float,
    unhealthy: Set[str] = frozenset(),
    finished: bool = False,
    terminating: bool = False,
) -> PodActions:
    """What to do about ``pod`` given ``view``; pure.

    ``unhealthy`` holds the ids of containers the liveness or startup probe condemned;
    ``finished`` says the worker already decided the pod is Succeeded or Failed;
    ``terminating`` that the pod is being deleted (or vanished from the API).
    """
    grace = grace_seconds(pod)
    if terminating:
        return PodActions(
            grace_seconds=grace,
            kill_pod=True,
            containers_to_kill=tuple(
                ContainerToKill(i.id, i.container_name, KillReason.POD_TERMINATING)
                for i in view.running_containers()
            ),
            sandboxes_to_remove=tuple(s.id for s in view.sandboxes),
        )
    if finished:
        return PodActions(grace_seconds=grace, release_sandbox=True)
    reason = _sandbox_reason(view)
    if reason is not None:  # a dead sandbox takes its containers' namespaces with it
        return PodActions(
            grace_seconds=grace,
            create_sandbox=reason,
            sandboxes_to_remove=tuple(s.id for s in view.sandboxes),
            containers_to_kill=tuple(
                ContainerToKill(i.id, i.container_name, KillReason.SANDBOX_CHANGED)
                for i in view.running_containers()
            ),
            resync=True,
        )
    policy = pod.get("spec", {}).get("restartPolicy", "Always")
    plan = _Plan(pod, backoff, now)
    if _init_containers(plan, pod, view, policy):
        _app_containers(plan, pod, view, policy, unhealthy)
    return plan.actions(grace)
