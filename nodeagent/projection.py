"""What a secret, configMap, downwardAPI or projected volume holds, as pure functions.

Each builder turns API objects into a payload (relative path -> ``FileProjection``) that
``atomic_writer.write`` puts on disk; nothing here does I/O, so the rules are table-tested.
The rules and the messages are kubelet's (``secret.MakePayload``,
``configmap.MakePayload``, ``downwardapi.CollectData``, ``projected.collectData``):

- no ``items``: every key becomes a file named after it, with ``defaultMode`` (0644);
- ``items``: only the listed keys, each at its ``path`` with its own ``mode`` if given; a
  listed key that is missing is an error unless the source is ``optional``;
- a missing Secret or ConfigMap is an error (``secret "x" not found``) unless ``optional``,
  in which case the volume is there and empty;
- downwardAPI ``fieldRef`` of ``metadata.labels`` / ``metadata.annotations`` is every
  pair as ``key="value"`` lines in key order (kubelet's ``FormatMap``); ``resourceFieldRef``
  divides the container's request or limit by ``divisor`` rounding up, an unset limit being
  the node's allocatable amount.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from apiclient.quantity import parse_quantity
from nodeagent.atomic_writer import FileProjection, PayloadError, validate_path
from nodeagent.container_spec import ContainerConfigError, field_value
from nodeagent.container_spec import secret_data as spec_secret_data

DEFAULT_MODE = 0o644
Payload = dict[str, FileProjection]


class VolumeSetupError(ContainerConfigError):
    """A volume cannot be set up; ``str()`` is kubelet's FailedMount text."""

    def __init__(self, volume: str, reason: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {reason}')
        self.volume = volume
        self.reason = reason


class SourceError(Exception):
    """One volume source cannot be turned into files; the message is kubelet's."""


def not_found(kind: str, name: str) -> str:
    """kubelet's message for a missing object (its caches use the singular resource)."""
    return f'{kind} "{name}" not found'


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's ``data`` decoded from base64."""
    try:
        return spec_secret_data(secret)
    except ContainerConfigError as err:
        raise SourceError(str(err)) from None


def config_map_data(config_map: Mapping[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's ``data`` (text) and ``binaryData`` (base64) as bytes."""
    found = {key: str(value).encode() for key, value in (config_map.get("data") or {}).items()}
    for key, value in (config_map.get("binaryData") or {}).items():
        try:
            found[key] = base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError):
            raise SourceError(f"configmap binaryData key {key!r} is not valid base64") from None
    return found


def key_payload(
    data: Mapping[str, bytes],
    items: list[Mapping[str, Any]] | None,
    *,
    default_mode: int,
    optional: bool,
    missing_key: str,
) -> Payload:
    """Files for the keys of a Secret or ConfigMap; ``missing_key`` is the message prefix
    for a listed key that is not there."""
    if not items:
        return {key: FileProjection(value, default_mode) for key, value in data.items()}
    payload: Payload = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise SourceError(f"{missing_key}: {key}")
        mode = item.get("mode")
        payload[item["path"]] = FileProjection(data[key], default_mode if mode is None else mode)
    return payload


def secret_payload(
    source: Mapping[str, Any],
    secret: Mapping[str, Any] | None,
    *,
    name: str,
    default_mode: int,
) -> Payload:
    """A ``secret`` volume (``name`` = ``secretName``) or projected ``secret`` source."""
    optional = bool(source.get("optional"))
    if secret is None:
        if not optional:
            raise SourceError(not_found("secret", name))
        secret = {}
    return key_payload(
        secret_data(secret),
        source.get("items"),
        default_mode=default_mode,
        optional=optional,
        missing_key="references non-existent secret key",
    )


def config_map_payload(
    source: Mapping[str, Any], config_map: Mapping[str, Any] | None, *, default_mode: int
) -> Payload:
    """A ``configMap`` volume or projected ``configMap`` source."""
    optional = bool(source.get("optional"))
    if config_map is None:
        if not optional:
            raise SourceError(not_found("configmap", source["name"]))
        config_map = {}
    return key_payload(
        config_map_data(config_map),
        source.get("items"),
        default_mode=default_mode,
        optional=optional,
        missing_key="configmap references non-existent config key",
    )


def format_map(values: Mapping[str, str]) -> str:
    """kubelet's ``FormatMap``: ``key="value"`` lines sorted by key, no final newline."""
    return "\n".join(
        f"{key}={json.dumps(values[key], ensure_ascii=False)}" for key in sorted(values)
    )


def downward_field(pod: Mapping[str, Any], path: str) -> str:
    """A ``fieldRef`` as a downwardAPI volume file shows it."""
    meta = pod.get("metadata") or {}
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".", 1)[1]) or {})
    try:
        return field_value(pod, path, pod_ip=None, host_ip=None)
    except ContainerConfigError as err:
        raise SourceError(str(err)) from None


def _container_resources(pod: Mapping[str, Any], name: str | None) -> Mapping[str, Any]:
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    for container in containers:
        if name in (None, "", container["name"]):
            return container.get("resources") or {}
    raise SourceError(f"container {name!r} not found in the pod")


def resource_field_value(
    pod: Mapping[str, Any], ref: Mapping[str, Any], allocatable: Mapping[str, Decimal]
) -> str:
    """A ``resourceFieldRef``: ``limits.cpu``, ``requests.memory``, ... divided by
    ``divisor`` (default 1) and rounded up; an unset limit is the node's allocatable."""
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or resource not in ("cpu", "memory", "ephemeral-storage"):
        raise SourceError(f"unsupported container resource: {ref.get('resource')}")
    resources = _container_resources(pod, ref.get("containerName"))
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    try:
        if kind == "limits":
            value = (
                parse_quantity(limits[resource])
                if resource in limits
                else allocatable.get(resource, Decimal(0))
            )
        else:  # an unset request defaults to the limit, as the API server's defaulting does
            raw = requests.get(resource, limits.get(resource, 0))
            value = parse_quantity(raw)
        divisor = parse_quantity(ref.get("divisor") or "1")
    except ValueError as err:
        raise SourceError(str(err)) from None
    if divisor <= 0:
        raise SourceError(f"divisor {ref.get('divisor')!r} must be positive")
    if resource == "cpu":  # kubelet works in millicores for CPU
        return str(math.ceil(math.ceil(value * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(value / divisor))


def downward_payload(
    items: list[Mapping[str, Any]] | None,
    pod: Mapping[str, Any],
    *,
    default_mode: int,
    allocatable: Mapping[str, Decimal],
) -> Payload:
    """A ``downwardAPI`` volume or projected ``downwardAPI`` source."""
    payload: Payload = {}
    errors: list[str] = []
    for item in items or []:
        mode = item.get("mode")
        try:
            if item.get("fieldRef"):
                text = downward_field(pod, item["fieldRef"]["fieldPath"])
            elif item.get("resourceFieldRef"):
                text = resource_field_value(pod, item["resourceFieldRef"], allocatable)
            else:
                text = ""
        except SourceError as err:
            errors.append(str(err))
            continue
        payload[item["path"]] = FileProjection(
            text.encode(), default_mode if mode is None else mode
        )
    if errors:
        raise SourceError(aggregate(errors))
    return payload


def aggregate(errors: list[str]) -> str:
    """Several errors as one message, like ``utilerrors.NewAggregate``."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def check_paths(payload: Payload) -> None:
    for path in payload:
        try:
            validate_path(path)
        except PayloadError as err:
            raise SourceError(str(err)) from None
