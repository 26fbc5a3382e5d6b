"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected.

Everything a pod owns lives under ``DATA_DIR/pods/<uid>/`` so termination removes it
without any other record and an agent restart finds it again. hostPath is checked against
its declared ``type`` before any container is created, so a bad path is a clear
``CreateContainerConfigError`` instead of a Docker error.

configMap, secret, downwardAPI and projected volumes are written with kubelet's atomic
writer (``atomic_writer``) on every pod worker pass, so a changed Secret or ConfigMap (or
a refreshed token) reaches running containers within a pass, all files at once; an
unchanged one writes nothing. Secret, downwardAPI and projected volumes sit on a tmpfs
(``mounts``) so their contents never touch the node's disk; ``remove_pod_dir`` unmounts
every mount under the pod directory before removing it, and refuses to remove it while
anything stays mounted there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil

from nodeagent import atomic_writer
from nodeagent.container_spec import ContainerConfigError, all_containers
from nodeagent.mounts import HostMounter, Mounter, MountError
from nodeagent.projection import (
    DEFAULT_MODE,
    Payload,
    SourceError,
    VolumeSetupError,
    aggregate,
    check_paths,
    config_map_payload,
    downward_payload,
    secret_payload,
)
from nodeagent.tokens import DEFAULT_EXPIRATION_SECONDS

MEMORY_BACKED = ("secret", "downwardAPI", "projected")  # on a tmpfs, as kubelet does
_DIR_NAMES = {
    "emptyDir": "empty-dir",
    "configMap": "configmap",
    "secret": "secret",
    "downwardAPI": "downward-api",
    "projected": "projected",
}
TokenSlot = tuple[str, int]  # (audience, or "" for the API server's; expirationSeconds)


def pod_dir(data_dir: str | os.PathLike[str], pod_uid: str) -> Path:
    return Path(data_dir) / "pods" / pod_uid


def node_allocatable() -> dict[str, Decimal]:
    """What an unset limit means to ``resourceFieldRef`` (the node's whole capacity)."""
    return {
        "cpu": Decimal(os.cpu_count() or 1),
        "memory": Decimal(psutil.virtual_memory().total),
    }


@dataclass(frozen=True)
class VolumeSources:
    """The API objects a pod's volumes are made from, fetched by the worker for one pass;
    a name missing from ``config_maps`` / ``secrets`` does not exist."""

    config_maps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tokens: Mapping[TokenSlot, str] = field(default_factory=dict)
    allocatable: Callable[[], Mapping[str, Decimal]] = node_allocatable


def _check_host_path(name: str, source: Mapping[str, Any]) -> str:
    path = source.get("path", "")
    kind = source.get("type") or ""
    if not path.startswith("/"):
        raise ContainerConfigError(f"volume {name!r}: hostPath {path!r} must be absolute")
    exists = os.path.exists(path)
    if kind == "DirectoryOrCreate" and not exists:
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif kind == "FileOrCreate" and not exists:
        Path(path).touch()
    elif kind == "Directory" and not os.path.isdir(path):
        raise ContainerConfigError(
            f"volume {name!r}: hostPath type check failed: {path} is not a directory"
        )
    elif kind == "File" and not os.path.isfile(path):
        raise ContainerConfigError(
            f"volume {name!r}: hostPath type check failed: {path} is not a file"
        )
    elif kind == "Socket" and not exists:
        raise ContainerConfigError(f"volume {name!r}: hostPath {path} does not exist")
    return path


def token_slot(source: Mapping[str, Any]) -> TokenSlot:
    """Which token a ``serviceAccountToken`` projection needs."""
    return (
        source.get("audience") or "",
        int(source.get("expirationSeconds") or DEFAULT_EXPIRATION_SECONDS),
    )


def _projected_source(
    source: Mapping[str, Any],
    pod: Mapping[str, Any],
    sources: VolumeSources,
    default_mode: int,
) -> Payload:
    if "secret" in source:
        secret = source["secret"]
        return secret_payload(
            secret,
            sources.secrets.get(secret["name"]),
            name=secret["name"],
            default_mode=default_mode,
        )
    if "configMap" in source:
        config_map = source["configMap"]
        return config_map_payload(
            config_map, sources.config_maps.get(config_map["name"]), default_mode=default_mode
        )
    if "downwardAPI" in source:
        return downward_payload(
            source["downwardAPI"].get("items"),
            pod,
            default_mode=default_mode,
            allocatable=sources.allocatable(),
        )
    if "serviceAccountToken" in source:
        projection = source["serviceAccountToken"]
        token = sources.tokens.get(token_slot(projection))
        if token is None:
            raise SourceError("failed to fetch token: no token was requested")
        return {projection["path"]: atomic_writer.FileProjection(token.encode(), default_mode)}
    kinds = sorted(source)
    raise SourceError(f"unsupported projected volume source {kinds}")


def projected_payload(
    volume: Mapping[str, Any], pod: Mapping[str, Any], sources: VolumeSources
) -> Payload:
    """Every source of a ``projected`` volume; errors of all sources reported together."""
    projected = volume["projected"]
    mode = projected.get("defaultMode", DEFAULT_MODE)
    payload: Payload = {}
    errors: list[str] = []
    for source in projected.get("sources") or []:
        try:
            payload.update(_projected_source(source, pod, sources, mode))
        except SourceError as err:
            errors.append(str(err))
    if errors:
        raise SourceError(aggregate(errors))
    return payload


def volume_payload(
    volume: Mapping[str, Any], pod: Mapping[str, Any], sources: VolumeSources
) -> Payload:
    """The files of a configMap, secret, downwardAPI or projected volume."""
    if "configMap" in volume:
        source = volume["configMap"]
        return config_map_payload(
            source,
            sources.config_maps.get(source["name"]),
            default_mode=source.get("defaultMode", DEFAULT_MODE),
        )
    if "secret" in volume:
        source = volume["secret"]
        return secret_payload(
            source,
            sources.secrets.get(source["secretName"]),
            name=source["secretName"],
            default_mode=source.get("defaultMode", DEFAULT_MODE),
        )
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        return downward_payload(
            source.get("items"),
            pod,
            default_mode=source.get("defaultMode", DEFAULT_MODE),
            allocatable=sources.allocatable(),
        )
    return projected_payload(volume, pod, sources)


def _kind(volume: Mapping[str, Any]) -> str | None:
    return next((kind for kind in (*_DIR_NAMES, "hostPath") if kind in volume), None)


def _write_projection(
    volume: Mapping[str, Any],
    pod: Mapping[str, Any],
    target: Path,
    *,
    sources: VolumeSources,
    mounter: Mounter,
) -> None:
    name = volume["name"]
    try:
        payload = volume_payload(volume, pod, sources)
        check_paths(payload)
    except SourceError as err:
        raise VolumeSetupError(name, str(err)) from None
    if _kind(volume) in MEMORY_BACKED:
        try:
            mounter.ensure_tmpfs(str(target))
        except MountError as err:  # never fall back to the node's disk
            raise VolumeSetupError(name, str(err)) from None
    atomic_writer.write(target, payload)


def prepare_volumes(
    pod: Mapping[str, Any],
    *,
    data_dir: str | os.PathLike[str],
    config_maps: Mapping[str, Mapping[str, Any]],
    sources: VolumeSources | None = None,
    mounter: Mounter | None = None,
) -> dict[str, str]:
    """Create (or bring up to date) the pod's volume directories; return volume name ->
    host path. ``sources`` carries Secrets and tokens; ``config_maps`` is kept for the
    callers that have nothing else."""
    sources = sources or VolumeSources(config_maps=config_maps)
    mounter = mounter or HostMounter()
    base = pod_dir(data_dir, pod["metadata"]["uid"]) / "volumes"
    paths: dict[str, str] = {}
    for volume in pod.get("spec", {}).get("volumes") or []:
        name = volume["name"]
        kind = _kind(volume)
        if kind == "hostPath":
            paths[name] = _check_host_path(name, volume["hostPath"])
            continue
        if kind is None:
            kinds = sorted(k for k in volume if k != "name")
            raise ContainerConfigError(f"volume {name!r}: unsupported volume type {kinds}")
        target = base / _DIR_NAMES[kind] / name
        if kind == "emptyDir":
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)  # any runAsUser may write, as in Kubernetes
        else:
            _write_projection(volume, pod, target, sources=sources, mounter=mounter)
        paths[name] = str(target)
    return paths


def _projected_sources(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = []
    for volume in pod.get("spec", {}).get("volumes") or []:
        found.extend((volume.get("projected") or {}).get("sources") or [])
    return found


def _env_refs(pod: Mapping[str, Any], key_ref: str, from_ref: str) -> set[str]:
    names = set()
    for container in all_containers(pod):
        for item in container.get("env") or []:
            ref = (item.get("valueFrom") or {}).get(key_ref)
            if ref:
                names.add(ref["name"])
        for source in container.get("envFrom") or []:
            if source.get(from_ref):
                names.add(source[from_ref]["name"])
    return names


def config_map_names(pod: Mapping[str, Any]) -> set[str]:
    """Every ConfigMap the pod refers to (volumes, projected sources, env, envFrom)."""
    spec = pod.get("spec", {})
    names = {v["configMap"]["name"] for v in spec.get("volumes") or [] if "configMap" in v}
    names |= {s["configMap"]["name"] for s in _projected_sources(pod) if "configMap" in s}
    return names | _env_refs(pod, "configMapKeyRef", "configMapRef")


def secret_names(pod: Mapping[str, Any]) -> set[str]:
    """Every Secret the pod refers to (volumes, projected sources, env, envFrom)."""
    spec = pod.get("spec", {})
    names = {v["secret"]["secretName"] for v in spec.get("volumes") or [] if "secret" in v}
    names |= {s["secret"]["name"] for s in _projected_sources(pod) if "secret" in s}
    return names | _env_refs(pod, "secretKeyRef", "secretRef")


def token_slots(pod: Mapping[str, Any]) -> dict[TokenSlot, str]:
    """The tokens the pod's projected volumes need -> the first volume needing each."""
    slots: dict[TokenSlot, str] = {}
    for volume in pod.get("spec", {}).get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in source:
                slots.setdefault(token_slot(source["serviceAccountToken"]), volume["name"])
    return slots


def remove_pod_dir(
    data_dir: str | os.PathLike[str], pod_uid: str, *, mounter: Mounter | None = None
) -> None:
    """Unmount everything under the pod's directory, then remove it. MountError (and
    nothing removed) when a mount stays: never delete through a live mount."""
    root = pod_dir(data_dir, pod_uid)
    (mounter or HostMounter()).unmount_all_under(str(root))
    shutil.rmtree(root, ignore_errors=True)


def pod_dir_uids(data_dir: str | os.PathLike[str]) -> set[str]:
    """The pod UIDs that have a directory on this node."""
    try:
        return {entry.name for entry in (Path(data_dir) / "pods").iterdir() if entry.is_dir()}
    except FileNotFoundError:
        return set()
