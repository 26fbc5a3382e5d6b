"""Pod volumes on the node: emptyDir and configMap directories under the data dir, hostPath.

Everything a pod owns lives under ``DATA_DIR/pods/<uid>/`` so termination removes it with
one ``rmtree`` and an agent restart finds it again without any other record. hostPath is
checked against its declared ``type`` before any container is created, so a bad path is a
clear ``CreateContainerConfigError`` instead of a Docker error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodeagent.container_spec import ContainerConfigError


def pod_dir(data_dir: str | os.PathLike[str], pod_uid: str) -> Path:
    return Path(data_dir) / "pods" / pod_uid


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


def _write_config_map(
    target: Path, data: Mapping[str, Any], items: list[Mapping[str, Any]] | None
) -> None:
    target.mkdir(parents=True, exist_ok=True)
    wanted = {item["key"]: item["path"] for item in items} if items else {k: k for k in data}
    for key, relative in wanted.items():
        if key not in data:
            raise ContainerConfigError(f"configMap key {key!r} not found")
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = destination.with_name(destination.name + ".keelson-tmp")
        tmp.write_text(str(data[key]))
        tmp.replace(destination)


def prepare_volumes(
    pod: Mapping[str, Any],
    *,
    data_dir: str | os.PathLike[str],
    config_maps: Mapping[str, Mapping[str, Any]],
) -> dict[str, str]:
    """Create the pod's volume directories; return volume name -> host path."""
    uid = pod["metadata"]["uid"]
    base = pod_dir(data_dir, uid) / "volumes"
    paths: dict[str, str] = {}
    for volume in pod.get("spec", {}).get("volumes") or []:
        name = volume["name"]
        if "emptyDir" in volume:
            target = base / "empty-dir" / name
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)  # any runAsUser may write, as in Kubernetes
            paths[name] = str(target)
        elif "hostPath" in volume:
            paths[name] = _check_host_path(name, volume["hostPath"])
        elif "configMap" in volume:
            source = volume["configMap"]
            found = config_maps.get(source["name"])
            if found is None:
                if source.get("optional"):
                    continue
                raise ContainerConfigError(
                    f"volume {name!r}: configmap {source['name']!r} not found"
                )
            target = base / "configmap" / name
            _write_config_map(target, found.get("data") or {}, source.get("items"))
            paths[name] = str(target)
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise ContainerConfigError(f"volume {name!r}: unsupported volume type {kinds}")
    return paths


def config_map_names(pod: Mapping[str, Any]) -> set[str]:
    """Every ConfigMap the pod refers to (volumes, env, envFrom) so the worker can fetch them."""
    spec = pod.get("spec", {})
    names = {v["configMap"]["name"] for v in spec.get("volumes") or [] if "configMap" in v}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for item in container.get("env") or []:
            ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                names.add(ref["name"])
        for source in container.get("envFrom") or []:
            if source.get("configMapRef"):
                names.add(source["configMapRef"]["name"])
    return names


def remove_pod_dir(data_dir: str | os.PathLike[str], pod_uid: str) -> None:
    shutil.rmtree(pod_dir(data_dir, pod_uid), ignore_errors=True)
