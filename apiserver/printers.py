"""Cell getters for ``kubectl get`` Table columns.

They follow kubectl's server-side printers (kubernetes pkg/printers/internalversion/
printers.go) so that the columns read exactly as users know them: the pod STATUS
reason logic, ``N (5m ago)`` restarts, ``80:30080/TCP`` ports, ``<none>`` placeholders
and the ``HumanDuration`` age format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apiclient.labels import LEGACY_ROLE_LABEL, NODE_ROLE_LABEL_PREFIX
from apiclient.meta import parse_time
from apiclient.pods import is_ready, ready_condition

Obj = dict[str, Any]
NONE = "<none>"


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def since(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = parse_time(timestamp)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - then).total_seconds())


def name(obj: Obj) -> str:
    return obj.get("metadata", {}).get("name", "")


def age(obj: Obj) -> str:
    return since(obj.get("metadata", {}).get("creationTimestamp"))


# --- pods ---------------------------------------------------------------------------

def _terminated_reason(state: Obj, prefix: str = "") -> str:
    if state.get("reason"):
        return prefix + state["reason"]
    if state.get("signal"):
        return f"{prefix}Signal:{state['signal']}"
    return f"{prefix}ExitCode:{state.get('exitCode', 0)}"


def _pod_summary(pod: Obj) -> tuple[str, int, int, str | None]:
    """(status reason, ready containers, restarts, last restart time) as kubectl's printPod."""
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    reason = status.get("reason") or status.get("phase") or ""
    restarts = 0
    ready = 0
    last_restart: str | None = None
    initializing = False

    def note_restart(cs: Obj) -> None:
        nonlocal last_restart
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and (last_restart is None or finished > last_restart):
            last_restart = finished

    init_specs = spec.get("initContainers") or []
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        note_restart(cs)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode", 0) == 0:
            continue
        if terminated:
            reason = _terminated_reason(terminated, "Init:")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing:
        restarts = 0
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            note_restart(cs)
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated:
                reason = _terminated_reason(terminated)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if is_ready(pod) else "NotReady"

    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason, ready, restarts, last_restart


def pod_status(pod: Obj) -> str:
    return _pod_summary(pod)[0]


def pod_ready(pod: Obj) -> str:
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{_pod_summary(pod)[1]}/{total}"


def pod_restarts(pod: Obj) -> str:
    _, _, restarts, last = _pod_summary(pod)
    return f"{restarts} ({since(last)} ago)" if restarts and last else str(restarts)


def pod_ip(pod: Obj) -> str:
    return (pod.get("status") or {}).get("podIP") or NONE


def pod_node(pod: Obj) -> str:
    return (pod.get("spec") or {}).get("nodeName") or NONE


def pod_nominated_node(pod: Obj) -> str:
    return (pod.get("status") or {}).get("nominatedNodeName") or NONE


def pod_readiness_gates(pod: Obj) -> str:
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return NONE
    conditions = {c.get("type"): c.get("status")
                  for c in (pod.get("status") or {}).get("conditions") or []}
    ready = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{ready}/{len(gates)}"


# --- nodes --------------------------------------------------------------------------

def node_status(node: Obj) -> str:
    ready = ready_condition(node)
    parts = ["Unknown" if ready is None else ("Ready" if ready.get("status") == "True"
                                               else "NotReady")]
    if (node.get("spec") or {}).get("unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(node: Obj) -> str:
    roles = set()
    for key, value in ((node.get("metadata") or {}).get("labels") or {}).items():
        if key.startswith(NODE_ROLE_LABEL_PREFIX):
            roles.add(key.removeprefix(NODE_ROLE_LABEL_PREFIX))
        elif key == LEGACY_ROLE_LABEL and value:
            roles.add(value)
    return ",".join(sorted(r for r in roles if r)) or NONE


def _node_address(node: Obj, kind: str) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == kind:
            return address.get("address", NONE)
    return NONE


def node_internal_ip(node: Obj) -> str:
    return _node_address(node, "InternalIP")


def node_external_ip(node: Obj) -> str:
    return _node_address(node, "ExternalIP")


# --- services and endpoints ---------------------------------------------------------

def service_external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    external = list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return spec.get("externalName", NONE)
    if kind == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = [i.get("ip") or i.get("hostname") for i in ingress]
        ips = [ip for ip in ips if ip] + external
        return ",".join(ips) if ips else "<pending>"
    return ",".join(external) if external else NONE


def service_ports(svc: Obj) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    cells = []
    for p in ports:
        text = str(p.get("port", ""))
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        cells.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(cells) if cells else NONE


def _selector_text(selector: Obj | None) -> str:
    if not selector:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def service_selector(svc: Obj) -> str:
    return _selector_text((svc.get("spec") or {}).get("selector"))


def _first_three(items: list[str]) -> str:
    if not items:
        return NONE
    text = ",".join(items[:3])
    return text + f" + {len(items) - 3} more..." if len(items) > 3 else text


def endpoints_summary(ep: Obj) -> str:
    cells = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for address in subset.get("addresses") or []:
            for port in ports:
                ip = address.get("ip", "")
                cells.append(f"{ip}:{port['port']}" if "port" in port else ip)
    return _first_three(cells)


def endpointslice_ports(slice_: Obj) -> str:
    ports = [str(p["port"]) for p in slice_.get("ports") or [] if p.get("port") is not None]
    return ",".join(ports) if ports else "<unset>"


def endpointslice_endpoints(slice_: Obj) -> str:
    addresses = [a for ep in slice_.get("endpoints") or [] for a in ep.get("addresses") or []]
    return _first_three(addresses) if addresses else "<unset>"


def configmap_data(cm: Obj) -> int:
    return len(cm.get("data") or {}) + len(cm.get("binaryData") or {})


def secret_data(secret: Obj) -> int:
    return len(secret.get("data") or {})


def serviceaccount_secrets(sa: Obj) -> int:
    return len(sa.get("secrets") or [])


# --- events -------------------------------------------------------------------------

def event_last_seen(ev: Obj) -> str:
    series = ev.get("series") or {}
    return since(series.get("lastObservedTime") or ev.get("lastTimestamp")
                 or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp"))


def event_first_seen(ev: Obj) -> str:
    return since(ev.get("firstTimestamp") or ev.get("eventTime")
                 or (ev.get("metadata") or {}).get("creationTimestamp"))


def event_object(ev: Obj) -> str:
    involved = ev.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def event_source(ev: Obj) -> str:
    source = ev.get("source") or {}
    parts = [p for p in (source.get("component"), source.get("host")) if p]
    return ", ".join(parts) or ev.get("reportingComponent") or ""


def event_count(ev: Obj) -> int:
    return int((ev.get("series") or {}).get("count") or ev.get("count") or 1)


# --- workloads ----------------------------------------------------------------------

def deployment_ready(d: Obj) -> str:
    status = d.get("status") or {}
    return f"{status.get('readyReplicas', 0)}/{(d.get('spec') or {}).get('replicas', 0)}"


def replicaset_current(rs: Obj) -> int:
    return int((rs.get("status") or {}).get("replicas") or 0)


def replicaset_ready(rs: Obj) -> int:
    return int((rs.get("status") or {}).get("readyReplicas") or 0)


def _template_containers(obj: Obj) -> list[Obj]:
    template = (obj.get("spec") or {}).get("template") or {}
    return (template.get("spec") or {}).get("containers") or []


def template_containers(obj: Obj) -> str:
    return ",".join(c.get("name", "") for c in _template_containers(obj))


def template_images(obj: Obj) -> str:
    return ",".join(c.get("image", "") for c in _template_containers(obj))


def spec_selector(obj: Obj) -> str:
    selector = (obj.get("spec") or {}).get("selector") or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or NONE


def created_at(obj: Obj) -> str:
    """Roles' ``CREATED AT``: the creation time in RFC 3339, UTC (kube ``printRole``)."""
    return (obj.get("metadata") or {}).get("creationTimestamp") or ""


def binding_role(binding: Obj) -> str:
    ref = binding.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _subjects(binding: Obj, kind: str) -> str:
    """kube ``SubjectsStrings``: names of one subject kind (ServiceAccounts as ns/name)."""
    names = []
    for subject in binding.get("subjects") or ():
        if isinstance(subject, dict) and subject.get("kind") == kind:
            name = subject.get("name", "")
            names.append(f"{subject.get('namespace', '')}/{name}"
                         if kind == "ServiceAccount" else name)
    return ", ".join(names)


def binding_users(binding: Obj) -> str:
    return _subjects(binding, "User")


def binding_groups(binding: Obj) -> str:
    return _subjects(binding, "Group")


def binding_service_accounts(binding: Obj) -> str:
    return _subjects(binding, "ServiceAccount")
