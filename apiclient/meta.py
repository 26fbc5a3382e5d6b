"""Object metadata helpers shared by the apiserver, controllers and the node agent.

Time formats follow Kubernetes exactly, because clients (kubectl, client-go, the Python
client) parse them: `metav1.Time` is RFC 3339 in UTC with whole seconds
("2026-11-24T23:07:35Z"); `metav1.MicroTime` (leases, events) has six fractional digits.
Every datetime returned here is timezone-aware UTC; naive datetimes never leave this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = [
    "format_time",
    "format_time_micro",
    "object_key",
    "owner_reference",
    "parse_time",
    "split_key",
    "utc_now",
    "utc_now_micro",
]


def format_time(moment: datetime) -> str:
    """metav1.Time text: RFC 3339, UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_time_micro(moment: datetime) -> str:
    """metav1.MicroTime text: RFC 3339, UTC, microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    return format_time(datetime.now(UTC))


def utc_now_micro() -> str:
    return format_time_micro(datetime.now(UTC))


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any offset, optional fraction) into aware UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; RFC 3339 needs 'Z' or an offset")
    return moment.astimezone(UTC)


def object_key(obj: Mapping) -> str:
    """The cache key "namespace/name", or "name" for cluster-scoped objects."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or ""
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of object_key: (namespace or None, name)."""
    namespace, slash, name = key.partition("/")
    return (namespace, name) if slash else (None, key)


def owner_reference(
    owner: Mapping, *, controller: bool = True, block_owner_deletion: bool = True
) -> dict:
    """An ownerReferences entry pointing at `owner` (needs apiVersion, kind, name, uid)."""
    metadata = owner.get("metadata") or {}
    missing = [
        field
        for field, value in (
            ("apiVersion", owner.get("apiVersion")),
            ("kind", owner.get("kind")),
            ("metadata.name", metadata.get("name")),
            ("metadata.uid", metadata.get("uid")),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"cannot reference owner {object_key(owner)!r}: missing {missing}")
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }
