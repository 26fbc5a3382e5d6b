"""Validation: what makes an object Invalid (422), with Kubernetes' field paths and wording.

Each validator takes ``(new, old)`` (``old`` is ``None`` on create) and returns a list of
causes ``{"reason", "message", "field"}``; the handler turns a non-empty list into one
``Invalid`` Status. Only rules a user would hit are checked — names, labels, required
fields, ranges, resource quantities, owner references, selectors (well-formed and
matching templates) and immutable fields — and the messages
match Kubernetes' so that errors look familiar (e.g. ``spec.containers[0].name:
Required value``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from apiclient.quantity import parse_quantity
from apiclient.selectors import (
    SelectorError,
    label_key_problem,
    label_selector_from_spec,
    label_value_problem,
)
from apiserver.status import field_cause

Obj = dict[str, Any]
Cause = dict[str, str]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_MAX_ANNOTATIONS_BYTES = 256 * 1024
_PROTOCOLS = ("TCP", "UDP", "SCTP")


def required(field: str) -> Cause:
    return field_cause(field, "Required value", reason="FieldValueRequired")


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    return field_cause(field, f"Invalid value: {_quote(value)}: {detail}")


def unsupported(field: str, value: Any, allowed: tuple[str, ...]) -> Cause:
    supported = ", ".join(f'"{a}"' for a in allowed)
    return field_cause(field, f"Unsupported value: {_quote(value)}: supported values: {supported}",
                       reason="FieldValueNotSupported")


def duplicate(field: str, value: Any) -> Cause:
    return field_cause(field, f"Duplicate value: {_quote(value)}", reason="FieldValueDuplicate")


def forbidden(field: str, detail: str) -> Cause:
    return field_cause(field, f"Forbidden: {detail}", reason="FieldValueForbidden")


def immutable(field: str, value: Any) -> Cause:
    return field_cause(field, f"Invalid value: {_quote(value)}: field is immutable")


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


# --- names, labels, metadata --------------------------------------------------------

def _name_errors(value: str, *, max_length: int, pattern: re.Pattern[str],
                 explanation: str) -> list[str]:
    errors = []
    if len(value) > max_length:
        errors.append(f"must be no more than {max_length} characters")
    if not pattern.match(value):
        errors.append(explanation)
    return errors


def dns1123_label_errors(value: str) -> list[str]:
    return _name_errors(
        value, max_length=63, pattern=_DNS1123_LABEL,
        explanation="a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric "
                    "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def dns1123_subdomain_errors(value: str) -> list[str]:
    return _name_errors(
        value, max_length=253, pattern=_DNS1123_SUBDOMAIN,
        explanation="a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def label_key_errors(key: str) -> list[str]:
    problem = label_key_problem(key)
    return [problem] if problem else []


def label_value_errors(value: Any) -> list[str]:
    if not isinstance(value, str):
        return ["must be a string"]
    problem = label_value_problem(value)
    return [problem] if problem else []


def labels_causes(labels: Any, field: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [invalid_value(field, labels, "must be a map of string keys to string values")]
    causes = []
    for key, value in labels.items():
        causes += [invalid_value(field, key, e) for e in label_key_errors(key)]
        causes += [invalid_value(f"{field}", value, e) for e in label_value_errors(value)]
    return causes


NameCheck = Callable[[str], list[str]]


def metadata_causes(obj: Obj, *, name_check: NameCheck = dns1123_subdomain_errors,
                    namespaced: bool = True) -> list[Cause]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [required("metadata")]
    causes: list[Cause] = []
    name = meta.get("name")
    if not name:
        causes.append(field_cause("metadata.name",
                                  "Required value: name or generateName is required",
                                  reason="FieldValueRequired"))
    elif not isinstance(name, str):
        causes.append(invalid_value("metadata.name", name, "must be a string"))
    else:
        causes += [invalid_value("metadata.name", name, e) for e in name_check(name)]
    causes += labels_causes(meta.get("labels"), "metadata.labels")
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
                isinstance(v, str) for v in annotations.values()):
            causes.append(invalid_value("metadata.annotations", "",
                                        "must be a map of string keys to string values"))
        else:
            size = sum(len(k) + len(v) for k, v in annotations.items())
            if size > _MAX_ANNOTATIONS_BYTES:
                causes.append(field_cause("metadata.annotations",
                                          f"Too long: must have at most {_MAX_ANNOTATIONS_BYTES}"
                                          " bytes", reason="FieldValueTooLong"))
            for key in annotations:
                causes += [invalid_value("metadata.annotations", key, e)
                           for e in label_key_errors(key)]
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(key):
                causes.append(required(f"metadata.ownerReferences[{i}].{key}"))
    finalizers = meta.get("finalizers")
    if finalizers is not None and (not isinstance(finalizers, list)
                                   or not all(isinstance(f, str) for f in finalizers)):
        causes.append(invalid_value("metadata.finalizers", "", "must be a list of strings"))
    return causes


# --- pods ---------------------------------------------------------------------------

def _port_causes(port: Any, field: str) -> list[Cause]:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return [invalid_value(field, port, "must be between 1 and 65535, inclusive")]
    return []


def _container_causes(c: Any, field: str, volume_names: set[str]) -> list[Cause]:
    if not isinstance(c, dict):
        return [invalid_value(field, c, "must be an object")]
    causes: list[Cause] = []
    name = c.get("name")
    if not name:
        causes.append(required(f"{field}.name"))
    else:
        causes += [invalid_value(f"{field}.name", name, e) for e in dns1123_label_errors(name)]
    if not c.get("image"):
        causes.append(required(f"{field}.image"))
    policy = c.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        causes.append(unsupported(f"{field}.imagePullPolicy", policy,
                                  ("Always", "IfNotPresent", "Never")))
    causes += _container_ports_causes(c.get("ports") or [], field)
    causes += _volume_mounts_causes(c.get("volumeMounts") or [], field, volume_names)
    for i, env in enumerate(c.get("env") or []):
        if not isinstance(env, dict) or not env.get("name"):
            causes.append(required(f"{field}.env[{i}].name"))
    causes += _resources_causes(c.get("resources"), f"{field}.resources")
    return causes


def _protocol_port_causes(port: Obj, pfield: str, number_key: str,
                          seen: set[tuple[Any, Any]]) -> list[Cause]:
    """A port number, its protocol, and no other port with both the same (containers and
    Services alike); ``seen`` collects the pairs of one list."""
    causes = _port_causes(port.get(number_key), f"{pfield}.{number_key}")
    protocol = port.get("protocol", "TCP")
    if protocol not in _PROTOCOLS:
        causes.append(unsupported(f"{pfield}.protocol", protocol, _PROTOCOLS))
    if (port.get(number_key), protocol) in seen:
        causes.append(duplicate(pfield, f"{port.get(number_key)}/{protocol}"))
    seen.add((port.get(number_key), protocol))
    return causes


def _container_ports_causes(ports: list[Any], field: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        pfield = f"{field}.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(invalid_value(pfield, port, "must be an object"))
            continue
        causes += _protocol_port_causes(port, pfield, "containerPort", seen)
        if port.get("hostPort"):
            causes += _port_causes(port["hostPort"], f"{pfield}.hostPort")
    return causes


def _volume_mounts_causes(mounts: list[Any], field: str, volume_names: set[str]
                          ) -> list[Cause]:
    causes: list[Cause] = []
    for i, mount in enumerate(mounts):
        mfield = f"{field}.volumeMounts[{i}]"
        if not isinstance(mount, dict):
            causes.append(invalid_value(mfield, mount, "must be an object"))
            continue
        if not mount.get("name"):
            causes.append(required(f"{mfield}.name"))
        elif mount["name"] not in volume_names:
            causes.append(field_cause(f"{mfield}.name",
                                      f'Not found: "{mount["name"]}"', reason="FieldValueNotFound"))
        if not mount.get("mountPath"):
            causes.append(required(f"{mfield}.mountPath"))
    return causes


def _resources_causes(resources: Any, field: str) -> list[Cause]:
    """Requests and limits must be quantities, and a request may not exceed its limit."""
    if not isinstance(resources, dict):
        return []
    causes: list[Cause] = []
    parsed: dict[str, dict[str, Any]] = {"requests": {}, "limits": {}}
    for kind in ("requests", "limits"):
        for name, value in (resources.get(kind) or {}).items():
            try:
                quantity = parse_quantity(value)
            except ValueError as error:
                causes.append(invalid_value(f"{field}.{kind}.{name}", value, str(error)))
                continue
            if quantity < 0:
                causes.append(invalid_value(f"{field}.{kind}.{name}", value,
                                            "must be greater than or equal to 0"))
            parsed[kind][name] = quantity
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            causes.append(invalid_value(f"{field}.requests", resources["requests"][name],
                                        f"must be less than or equal to {name} limit of "
                                        f"{resources['limits'][name]}"))
    return causes


_VOLUME_SOURCES = ("emptyDir", "hostPath", "configMap", "secret", "projected", "downwardAPI",
                   "persistentVolumeClaim", "nfs")


def _volumes_causes(volumes: list[Any], field: str, volume_names: set[str]) -> list[Cause]:
    """Causes of ``spec.volumes``; their names are added to ``volume_names``."""
    causes: list[Cause] = []
    for i, volume in enumerate(volumes):
        vfield = f"{field}.volumes[{i}]"
        if not isinstance(volume, dict) or not volume.get("name"):
            causes.append(required(f"{vfield}.name"))
            continue
        vname = volume["name"]
        causes += [invalid_value(f"{vfield}.name", vname, e) for e in dns1123_label_errors(vname)]
        if vname in volume_names:
            causes.append(duplicate(f"{vfield}.name", vname))
        volume_names.add(vname)
        sources = [s for s in volume if s != "name"]
        if not sources:
            causes.append(required(f"{vfield}: must specify a volume type"))
        elif len(sources) > 1:
            causes.append(forbidden(f"{vfield}.{sources[1]}",
                                    "may not specify more than 1 volume type"))
        host_path = volume.get("hostPath")
        if isinstance(host_path, dict) and not host_path.get("path"):
            causes.append(required(f"{vfield}.hostPath.path"))
    return causes


def pod_spec_causes(spec: Any, field: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(field)]
    volume_names: set[str] = set()
    causes = _volumes_causes(spec.get("volumes") or [], field, volume_names)
    containers = spec.get("containers")
    if not containers:
        causes.append(required(f"{field}.containers"))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        items = spec.get(key) or []
        if not isinstance(items, list):
            causes.append(invalid_value(f"{field}.{key}", items, "must be a list"))
            continue
        for i, c in enumerate(items):
            cfield = f"{field}.{key}[{i}]"
            causes += _container_causes(c, cfield, volume_names)
            if isinstance(c, dict) and c.get("name"):
                if c["name"] in names:
                    causes.append(duplicate(f"{cfield}.name", c["name"]))
                names.add(c["name"])
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in ("Always", "OnFailure", "Never"):
        causes.append(unsupported(f"{field}.restartPolicy", policy,
                                  ("Always", "OnFailure", "Never")))
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.append(invalid_value(f"{field}.terminationGracePeriodSeconds", grace,
                                    "must be greater than or equal to 0"))
    return causes


# Fields a pod update may change (Kubernetes ValidatePodUpdate).
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _pod_spec_for_compare(spec: Obj) -> Obj:
    spec = dict(spec)
    for key in _POD_MUTABLE:
        spec.pop(key, None)
    spec.pop("serviceAccount", None)  # the deprecated alias, defaulted from the name
    for key in ("containers", "initContainers"):
        spec[key] = [{k: v for k, v in c.items() if k != "image"} for c in spec.get(key) or []
                     if isinstance(c, dict)]
    return spec


def pod(new: Obj, old: Obj | None) -> list[Cause]:
    causes = metadata_causes(new)
    causes += pod_spec_causes(new.get("spec"), "spec")
    if old is not None and not causes:
        new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        # spec.nodeName is set once by the binding; the scheduler fields stay too.
        if _pod_spec_for_compare(new_spec) != _pod_spec_for_compare(old_spec):
            causes.append(forbidden(
                "spec", "pod updates may not change fields other than `spec.containers[*].image`,"
                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                "`spec.tolerations` (only additions to existing tolerations),"
                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                "previously negative)"))
    return causes


# --- services and endpoints ---------------------------------------------------------

_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def _ip_errors(value: Any) -> list[str]:
    try:
        ipaddress.ip_address(value)
    except (ValueError, TypeError):
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def service(new: Obj, old: Obj | None) -> list[Cause]:
    causes = metadata_causes(new, name_check=dns1123_label_errors)
    spec = new.get("spec")
    if not isinstance(spec, dict):
        return [*causes, required("spec")]
    kind = spec.get("type", "ClusterIP")
    if kind not in _SERVICE_TYPES:
        causes.append(unsupported("spec.type", kind, _SERVICE_TYPES))
        return causes
    ports = spec.get("ports") or []
    if kind == "ExternalName":
        if not spec.get("externalName"):
            causes.append(required("spec.externalName"))
    elif not ports and spec.get("clusterIP") != "None":
        causes.append(required("spec.ports"))
    if not isinstance(ports, list):
        return [*causes, invalid_value("spec.ports", ports, "must be a list")]
    causes += _service_ports_causes(ports, kind)
    causes += _service_ips_causes(spec)
    affinity = spec.get("sessionAffinity", "None")
    if affinity not in ("None", "ClientIP"):
        causes.append(unsupported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    for key in ("externalTrafficPolicy", "internalTrafficPolicy"):
        value = spec.get(key)
        if value is not None and value not in ("Cluster", "Local"):
            causes.append(unsupported(f"spec.{key}", value, ("Cluster", "Local")))
    causes += labels_causes(spec.get("selector"), "spec.selector")
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        cluster_ip = spec.get("clusterIP")
        if old_ip and cluster_ip not in (None, "") and cluster_ip != old_ip \
                and kind != "ExternalName":
            causes.append(immutable("spec.clusterIP", cluster_ip))
    return causes


def _service_ports_causes(ports: list[Any], kind: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        pfield = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(invalid_value(pfield, port, "must be an object"))
            continue
        pname = port.get("name", "")
        if len(ports) > 1 and not pname:
            causes.append(required(f"{pfield}.name"))
        if pname:
            if pname in names:
                causes.append(duplicate(f"{pfield}.name", pname))
            names.add(pname)
            causes += [invalid_value(f"{pfield}.name", pname, e)
                       for e in dns1123_label_errors(pname)]
        causes += _protocol_port_causes(port, pfield, "port", seen)
        causes += _target_port_causes(port.get("targetPort"), f"{pfield}.targetPort")
        if port.get("nodePort") and kind not in ("NodePort", "LoadBalancer"):
            causes.append(forbidden(f"{pfield}.nodePort",
                                    "may not be used when `type` is 'ClusterIP'"))
    return causes


def _target_port_causes(target: Any, field: str) -> list[Cause]:
    if isinstance(target, int) and not isinstance(target, bool):
        return _port_causes(target, field)
    if isinstance(target, str) and (len(target) > 15 or not _IANA_SVC_NAME.match(target)):
        return [invalid_value(field, target, "must be a valid port name or number")]
    return []


def _service_ips_causes(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    cluster_ip = spec.get("clusterIP")
    if cluster_ip not in (None, "", "None"):
        causes += [invalid_value("spec.clusterIP", cluster_ip, e) for e in _ip_errors(cluster_ip)]
    for i, ip in enumerate(spec.get("externalIPs") or []):
        causes += [invalid_value(f"spec.externalIPs[{i}]", ip, e) for e in _ip_errors(ip)]
    return causes


def endpoints(new: Obj, old: Obj | None) -> list[Cause]:
    causes = metadata_causes(new)
    for i, subset in enumerate(new.get("subsets") or []):
        for j, address in enumerate(subset.get("addresses") or []):
            ip = address.get("ip") if isinstance(address, dict) else address
            causes += [invalid_value(f"subsets[{i}].addresses[{j}].ip", ip, e)
                       for e in _ip_errors(ip)]
        for j, port in enumerate(subset.get("ports") or []):
            causes += _port_causes((port or {}).get("port"), f"subsets[{i}].ports[{j}].port")
    return causes


def endpointslice(new: Obj, old: Obj | None) -> list[Cause]:
    causes = metadata_causes(new)
    kind = new.get("addressType")
    if kind not in ("IPv4", "IPv6", "FQDN"):
        causes.append(unsupported("addressType", kind, ("FQDN", "IPv4", "IPv6")))
    for i, endpoint in enumerate(new.get("endpoints") or []):
        addresses = (endpoint or {}).get("addresses")
        if not addresses:
            causes.append(required(f"endpoints[{i}].addresses"))
        elif kind in ("IPv4", "IPv6"):
            for j, ip in enumerate(addresses):
                causes += [invalid_value(f"endpoints[{i}].addresses[{j}]", ip, e)
                           for e in _ip_errors(ip)]
    if old is not None and old.get("addressType") != kind:
        causes.append(immutable("addressType", kind))
    return causes


# --- workloads ----------------------------------------------------------------------

def _workload(new: Obj, old: Obj | None) -> list[Cause]:
    causes = metadata_causes(new)
    spec = new.get("spec")
    if not isinstance(spec, dict):
        return [*causes, required("spec")]
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(invalid_value("spec.replicas", replicas,
                                    "must be greater than or equal to 0"))
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(required("spec.selector"))
    else:
        causes += labels_causes(selector.get("matchLabels"), "spec.selector.matchLabels")
        try:
            parsed = label_selector_from_spec(selector)
        except SelectorError as error:
            causes.append(invalid_value("spec.selector", selector, str(error)))
        else:
            if isinstance(labels, dict) and not parsed.matches(labels):
                causes.append(invalid_value("spec.template.metadata.labels", labels,
                                            "`selector` does not match template `labels`"))
    causes += labels_causes(labels, "spec.template.metadata.labels")
    causes += pod_spec_causes(template.get("spec"), "spec.template.spec")
    restart = (template.get("spec") or {}).get("restartPolicy", "Always")
    if restart != "Always":
        causes.append(unsupported("spec.template.spec.restartPolicy", restart, ("Always",)))
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        causes.append(immutable("spec.selector", selector))
    return causes


def deployment(new: Obj, old: Obj | None) -> list[Cause]:
    causes = _workload(new, old)
    strategy = (new.get("spec") or {}).get("strategy") or {}
    kind = strategy.get("type", "RollingUpdate")
    if kind not in ("RollingUpdate", "Recreate"):
        causes.append(unsupported("spec.strategy.type", kind, ("Recreate", "RollingUpdate")))
    elif kind == "Recreate" and strategy.get("rollingUpdate"):
        causes.append(forbidden("spec.strategy.rollingUpdate",
                                "may not be specified when strategy `type` is 'Recreate'"))
    return causes


def replicaset(new: Obj, old: Obj | None) -> list[Cause]:
    return _workload(new, old)


# --- everything else ----------------------------------------------------------------

def namespace(new: Obj, old: Obj | None) -> list[Cause]:
    return metadata_causes(new, name_check=dns1123_label_errors, namespaced=False)


def node(new: Obj, old: Obj | None) -> list[Cause]:
    return metadata_causes(new, namespaced=False)


def configmap(new: Obj, old: Obj | None) -> list[Cause]:
    causes = metadata_causes(new)
    total = 0
    for section in ("data", "binaryData"):
        values = new.get(section) or {}
        if not isinstance(values, dict):
            causes.append(invalid_value(section, values, "must be a map"))
            continue
        for key, value in values.items():
            if len(key) > 253 or not _CONFIG_KEY.match(key):
                causes.append(invalid_value(f"{section}[{key}]", key,
                                            "a valid config key must consist of alphanumeric "
                                            "characters, '-', '_' or '.'"))
            total += len(key) + len(value if isinstance(value, str) else str(value))
    if total > 1024 * 1024:
        causes.append(field_cause("", "Too long: must have at most 1048576 bytes",
                                  reason="FieldValueTooLong"))
    return causes


def event(new: Obj, old: Obj | None) -> list[Cause]:
    causes = metadata_causes(new)
    if not isinstance(new.get("involvedObject"), dict):
        causes.append(required("involvedObject"))
    if new.get("type") not in ("Normal", "Warning"):
        causes.append(unsupported("type", new.get("type"), ("Normal", "Warning")))
    return causes


def lease(new: Obj, old: Obj | None) -> list[Cause]:
    causes = metadata_causes(new)
    duration = (new.get("spec") or {}).get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        causes.append(invalid_value("spec.leaseDurationSeconds", duration,
                                    "must be greater than 0"))
    return causes
