"""Pod status as pure functions of what the runtime shows and what the worker decided.

Nothing here does I/O, so phase, conditions and container statuses are unit-tested
exhaustively. The rules follow kubelet (``getPhase``, ``generateAPIPodStatus``): a
container waiting with a previous termination counts as stopped, not as waiting, so a
crash-looping pod under ``restartPolicy: Always`` stays ``Running``. Condition transition
times are carried over from the previous status while a condition keeps its value, so an
unchanged pod produces an identical status and no PATCH is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apiclient.pods import TERMINAL_PHASES, qos_class
from nodeagent.runtime.interface import ContainerInfo, ContainerState

CONTAINER_ID_PREFIX = "docker://"


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class StatusInput:
    """Everything status depends on for one pod, gathered by the pod worker."""

    pod: Mapping[str, Any]
    instances: Mapping[str, Sequence[ContainerInfo]]  # container name -> newest first
    waiting: Mapping[str, Waiting]  # worker decisions: CrashLoopBackOff, ErrImagePull...
    ready: Mapping[str, bool]  # readiness probe results; absent = no probe
    pod_ip: str | None
    host_ip: str | None
    now: str  # RFC 3339
    terminal_phase: str | None = None  # the worker decided the pod is done


def _terminated(info: ContainerInfo) -> dict[str, Any]:
    code = info.exit_code if info.exit_code is not None else -1
    if info.oom_killed:
        reason = "OOMKilled"
    elif info.error and not info.started_at:
        reason = "StartError"
    elif code == 0:
        reason = "Completed"
    else:
        reason = "Error"
    state: dict[str, Any] = {
        "exitCode": code,
        "reason": reason,
        "startedAt": info.started_at or None,
        "finishedAt": info.finished_at or None,
        "containerID": CONTAINER_ID_PREFIX + info.id,
    }
    if info.error:
        state["message"] = info.error
    return {"terminated": state}


def _state_of(info: ContainerInfo) -> dict[str, Any]:
    if info.state is ContainerState.RUNNING:
        return {"running": {"startedAt": info.started_at or None}}
    if info.state is ContainerState.EXITED:
        return _terminated(info)
    return {"waiting": {"reason": "ContainerCreating"}}


def container_status(
    spec: Mapping[str, Any],
    instances: Sequence[ContainerInfo],
    *,
    waiting: Waiting | None,
    ready: bool | None,
) -> dict[str, Any]:
    """One entry of ``containerStatuses`` (instances newest first)."""
    status: dict[str, Any] = {
        "name": spec["name"],
        "image": spec.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {},
        "lastState": {},
    }
    latest = instances[0] if instances else None
    if latest is not None:
        status["imageID"] = CONTAINER_ID_PREFIX + latest.image_id
        status["containerID"] = CONTAINER_ID_PREFIX + latest.id
        status["restartCount"] = latest.restart_count
    if waiting is not None:
        status["state"] = {"waiting": _waiting_dict(waiting)}
        if latest is not None and latest.state is ContainerState.EXITED:
            status["lastState"] = _terminated(latest)
        elif len(instances) > 1:
            status["lastState"] = _terminated(instances[1])
        return status
    if latest is None:
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        return status
    status["state"] = _state_of(latest)
    if len(instances) > 1:
        status["lastState"] = _terminated(instances[1])
    running = latest.state is ContainerState.RUNNING
    status["started"] = running
    status["ready"] = running and (ready if ready is not None else True)
    return status


def _waiting_dict(waiting: Waiting) -> dict[str, str]:
    result = {"reason": waiting.reason}
    if waiting.message:
        result["message"] = waiting.message
    return result


def pod_phase(
    pod: Mapping[str, Any],
    init_statuses: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]],
) -> str:
    """kubelet getPhase: Pending, Running, Succeeded or Failed."""
    policy = pod.get("spec", {}).get("restartPolicy", "Always")
    for init in init_statuses:
        terminated = init["state"].get("terminated")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if policy == "Never" and (
            (terminated and terminated.get("exitCode") != 0)
            or init["lastState"].get("terminated", {}).get("exitCode", 0) != 0
        ):
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for status in statuses:
        state, last = status["state"], status["lastState"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
                succeeded += last["terminated"].get("exitCode") == 0
            else:
                waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped == 0:
        return "Pending"
    if policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Running" if policy == "OnFailure" else "Failed"


def _condition(
    kind: str,
    ok: bool,
    previous: Mapping[str, Mapping[str, Any]],
    now: str,
    *,
    reason: str = "",
    message: str = "",
) -> dict[str, Any]:
    value = "True" if ok else "False"
    before = previous.get(kind)
    since = before.get("lastTransitionTime") if before and before.get("status") == value else None
    condition: dict[str, Any] = {
        "type": kind,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": since or now,
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def compute_pod_status(data: StatusInput) -> dict[str, Any]:
    """The whole ``status`` the pod should have now."""
    pod = data.pod
    spec = pod.get("spec", {})
    previous = pod.get("status") or {}

    def statuses(specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [
            container_status(
                c,
                data.instances.get(c["name"], ()),
                waiting=data.waiting.get(c["name"]),
                ready=data.ready.get(c["name"]),
            )
            for c in specs
        ]

    init_statuses = statuses(spec.get("initContainers") or [])
    app_statuses = statuses(spec.get("containers") or [])
    for init in init_statuses:  # an init container that finished is "ready" in Kubernetes
        init["ready"] = "terminated" in init["state"] and (
            init["state"]["terminated"]["exitCode"] == 0
        )
    phase = data.terminal_phase or pod_phase(pod, init_statuses, app_statuses)

    old_conditions = {c["type"]: c for c in previous.get("conditions") or []}
    pending_init = [s["name"] for s in init_statuses if not s["ready"]]
    unready = [s["name"] for s in app_statuses if not s["ready"]]
    done = phase in TERMINAL_PHASES
    ready = not unready and not done
    not_ready_reason = "PodCompleted" if done else "ContainersNotReady"
    not_ready_message = "" if done else f"containers with unready status: [{' '.join(unready)}]"
    conditions = [
        _condition(
            "Initialized",
            not pending_init,
            old_conditions,
            data.now,
            reason="" if not pending_init else "ContainersNotInitialized",
            message=""
            if not pending_init
            else f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        *(
            _condition(
                kind,
                ready,
                old_conditions,
                data.now,
                reason="" if ready else not_ready_reason,
                message="" if not unready else not_ready_message,
            )
            for kind in ("Ready", "ContainersReady")
        ),
        _condition("PodScheduled", True, old_conditions, data.now),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": data.host_ip,
        "startTime": previous.get("startTime") or data.now,
        "containerStatuses": app_statuses,
        "qosClass": qos_class(spec),
    }
    if data.host_ip:
        status["hostIPs"] = [{"ip": data.host_ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    if data.pod_ip:
        status["podIP"] = data.pod_ip
        status["podIPs"] = [{"ip": data.pod_ip}]
    else:
        status["podIP"] = None
        status["podIPs"] = None
    return status


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a PATCH is needed; only fields this agent owns are compared."""
    old = old or {}
    return any(old.get(key) != value for key, value in new.items())
