"""Translate a pod's container spec into a runtime ``ContainerConfig`` (pure functions).

The rules are kubelet's: ``command`` replaces the image entrypoint and ``args`` its cmd;
``$(VAR)`` in command, args and env values expands from the container's own env (``$$``
escapes); ``fieldRef`` env reads pod fields; cpu requests become cpu shares (2 when none,
like kubelet's minimum), cpu limits a CFS quota over a 100 ms period, memory limits a hard
limit. Anything the spec asks for that cannot be honoured raises ``ContainerConfigError``,
which the pod worker reports as ``CreateContainerConfigError`` without touching Docker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections import ChainMap
from collections.abc import Mapping
from typing import Any

from apiclient.quantity import cpu_millis, memory_bytes
from nodeagent.runtime.interface import (
    KIND_APP,
    KIND_INIT,
    LABEL_CONTAINER_HASH,
    LABEL_CONTAINER_KIND,
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_RESTART_COUNT,
    LABEL_TYPE,
    TYPE_CONTAINER,
    TYPE_SANDBOX,
    ContainerConfig,
    Mount,
)

CPU_PERIOD_US = 100_000
MIN_CPU_SHARES = 2
MIN_CPU_QUOTA_US = 1_000
_VAR_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")  # validation.IsEnvVarName


class ContainerConfigError(Exception):
    """The container spec cannot be run as written; the message says which field and why."""


def spec_hash(container: Mapping[str, Any]) -> str:
    """Stable hash of a container spec (kubelet's HashContainer), kept as a label."""
    canonical = json.dumps(container, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def all_containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Init containers, then app containers."""
    spec = pod.get("spec", {})
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def find_container(
    pod: Mapping[str, Any], name: str, *, kind: str = KIND_APP
) -> Mapping[str, Any] | None:
    """The spec of container ``name`` among the pod's init (KIND_INIT) or app containers."""
    field = "initContainers" if kind == KIND_INIT else "containers"
    return next((c for c in pod.get("spec", {}).get(field) or [] if c["name"] == name), None)


def pod_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    meta = pod["metadata"]
    return {
        LABEL_POD_UID: meta["uid"],
        LABEL_POD_NAMESPACE: meta.get("namespace", "default"),
        LABEL_POD_NAME: meta["name"],
    }


def sandbox_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    return {**pod_labels(pod), LABEL_TYPE: TYPE_SANDBOX}


def sandbox_name(pod: Mapping[str, Any], attempt: str) -> str:
    meta = pod["metadata"]
    return f"keel_POD_{meta['name']}_{meta.get('namespace', 'default')}_{meta['uid']}_{attempt}"


def container_name(pod: Mapping[str, Any], name: str, restart_count: int) -> str:
    meta = pod["metadata"]
    return (
        f"keel_{name}_{meta['name']}_{meta.get('namespace', 'default')}_{meta['uid']}_"
        f"{restart_count}"
    )


def field_value(
    pod: Mapping[str, Any], path: str, *, pod_ip: str | None, host_ip: str | None
) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
    }
    if path in simple:
        return simple[path] or ""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match[1]) or {}).get(match[2], "")
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _VAR_REFERENCE.sub(replace, text)


def resolve_env(
    container: Mapping[str, Any],
    pod: Mapping[str, Any],
    *,
    pod_ip: str | None,
    host_ip: str | None,
    config_maps: Mapping[str, Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, Any]] | None = None,
    service_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment, as kubelet's ``makeEnvironmentVariables``: ``envFrom``
    first, then ``env`` in order (``$(VAR)`` sees the variables so far, then the service
    variables), then the service variables the container did not set itself."""
    secrets = secrets or {}
    service_env = service_env or {}
    namespace = pod.get("metadata", {}).get("namespace", "default")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        env.update(_env_from(source, config_maps, secrets))
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), ChainMap(env, service_env))
            continue
        value_from = item.get("valueFrom") or {}
        if "fieldRef" in value_from:
            env[name] = field_value(
                pod, value_from["fieldRef"]["fieldPath"], pod_ip=pod_ip, host_ip=host_ip
            )
        elif "configMapKeyRef" in value_from:
            value = _config_map_key(config_maps, value_from["configMapKeyRef"], name)
            if value is not None:
                env[name] = value
        elif "secretKeyRef" in value_from:
            value = _secret_key(secrets, value_from["secretKeyRef"], namespace)
            if value is not None:
                env[name] = value
        else:
            env[name] = ""
    return {**service_env, **env}


def _env_from(
    source: Mapping[str, Any],
    config_maps: Mapping[str, Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, Any]],
) -> dict[str, str]:
    prefix = source.get("prefix", "")
    if source.get("configMapRef") is not None:
        data = _config_map(config_maps, source["configMapRef"], "envFrom") or {}
        values = {k: str(v) for k, v in data.items()}
    elif source.get("secretRef") is not None:
        ref = source["secretRef"]
        found = secrets.get(ref["name"])
        if found is None:
            if ref.get("optional"):
                return {}
            raise ContainerConfigError(f'secret "{ref["name"]}" not found')
        values = {k: _text(v) for k, v in secret_data(found).items()}
    else:
        return {}
    # kubelet skips keys that are not valid variable names (it says so in an Event).
    return {prefix + k: v for k, v in values.items() if _ENV_NAME.fullmatch(prefix + k)}


def _config_map_key(
    config_maps: Mapping[str, Mapping[str, Any]], ref: Mapping[str, Any], name: str
) -> str | None:
    data = _config_map(config_maps, ref, f"env {name}")
    if data is None:
        return None
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(
            f"couldn't find key {ref['key']} in ConfigMap {ref['name']} (env {name})"
        )
    return str(data[ref["key"]])


def _secret_key(
    secrets: Mapping[str, Mapping[str, Any]], ref: Mapping[str, Any], namespace: str
) -> str | None:
    found = secrets.get(ref["name"])
    optional = bool(ref.get("optional"))
    if found is None:
        if optional:
            return None
        raise ContainerConfigError(f'secret "{ref["name"]}" not found')
    data = secret_data(found)
    if ref["key"] not in data:
        if optional:
            return None
        raise ContainerConfigError(
            f"couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}"
        )
    return _text(data[ref["key"]])


def _config_map(
    config_maps: Mapping[str, Mapping[str, Any]], ref: Mapping[str, Any], where: str
) -> Mapping[str, Any] | None:
    found = config_maps.get(ref["name"])
    if found is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"configmap {ref['name']!r} not found ({where})")
    return found.get("data") or {}


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's ``data`` decoded from base64."""
    decoded = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError):
            name = (secret.get("metadata") or {}).get("name")
            raise ContainerConfigError(f"secret {name!r} key {key!r} is not valid base64") from None
    return decoded


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def cpu_and_memory(container: Mapping[str, Any]) -> dict[str, int | None]:
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    try:
        request_millis = cpu_millis(requests.get("cpu", limits.get("cpu", 0)))
        shares = max(MIN_CPU_SHARES, request_millis * 1024 // 1000)
        quota = None
        if "cpu" in limits:
            quota = max(MIN_CPU_QUOTA_US, cpu_millis(limits["cpu"]) * CPU_PERIOD_US // 1000)
        memory = memory_bytes(limits["memory"]) if "memory" in limits else None
    except ValueError as err:
        raise ContainerConfigError(f"container {container['name']}: {err}") from err
    return {
        "cpu_shares": shares,
        "cpu_quota": quota,
        "cpu_period": CPU_PERIOD_US if quota else None,
        "memory_limit": memory,
    }


def run_as_user(container: Mapping[str, Any], pod: Mapping[str, Any]) -> str | None:
    for context in (container.get("securityContext"), pod.get("spec", {}).get("securityContext")):
        if context and context.get("runAsUser") is not None:
            user = str(context["runAsUser"])
            group = context.get("runAsGroup")
            return f"{user}:{group}" if group is not None else user
    return None


def mounts_for(container: Mapping[str, Any], volume_paths: Mapping[str, str]) -> tuple[Mount, ...]:
    mounts = []
    for mount in container.get("volumeMounts") or []:
        name = mount["name"]
        if name not in volume_paths:
            raise ContainerConfigError(
                f"container {container['name']}: volumeMount {name!r} names no volume of the pod"
            )
        host_path = volume_paths[name]
        if mount.get("subPath"):
            host_path = f"{host_path}/{mount['subPath']}"
        mounts.append(Mount(host_path, mount["mountPath"], bool(mount.get("readOnly"))))
    return tuple(mounts)


def build_container_config(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    sandbox_id: str,
    restart_count: int,
    kind: str = KIND_APP,
    pod_ip: str | None,
    host_ip: str | None,
    volume_paths: Mapping[str, str],
    config_maps: Mapping[str, Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, Any]] | None = None,
    service_env: Mapping[str, str] | None = None,
    hosts_file: str | None = None,
) -> ContainerConfig:
    env = resolve_env(
        container,
        pod,
        pod_ip=pod_ip,
        host_ip=host_ip,
        config_maps=config_maps,
        secrets=secrets,
        service_env=service_env,
    )
    mounts = mounts_for(container, volume_paths)
    if hosts_file is not None and not any(m.container_path == "/etc/hosts" for m in mounts):
        mounts += (Mount(hosts_file, "/etc/hosts"),)
    command = container.get("command")
    args = container.get("args")
    return ContainerConfig(
        name=container_name(pod, container["name"], restart_count),
        image=container["image"],
        labels={
            **pod_labels(pod),
            LABEL_TYPE: TYPE_CONTAINER,
            LABEL_CONTAINER_NAME: container["name"],
            LABEL_CONTAINER_KIND: kind,
            LABEL_RESTART_COUNT: str(restart_count),
            LABEL_CONTAINER_HASH: spec_hash(container),
        },
        sandbox_id=sandbox_id,
        hostname=pod["metadata"]["name"],
        entrypoint=[expand(c, env) for c in command] if command else None,
        args=[expand(a, env) for a in args] if args else None,
        env=env,
        working_dir=container.get("workingDir") or None,
        user=run_as_user(container, pod),
        mounts=mounts,
        **cpu_and_memory(container),
    )


def hosts_file_content(*, pod_ip: str | None, hostname: str) -> str:
    lines = [
        "# Kubernetes-managed hosts file (keelson).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    if pod_ip:
        lines.append(f"{pod_ip}\t{hostname}")
    return "\n".join(lines) + "\n"


def default_pull_policy(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return "IfNotPresent"
    tag = name.split(":", 1)[1] if ":" in name else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"
