"""The schema of the built-in types, loaded once from the generated definitions.json.

definitions.json (written by tools/gen_openapi.py from the upstream Kubernetes definitions)
is the single source of truth for strategic merge patch metadata, strict field validation,
type checks and the OpenAPI documents. Everything here is read-only: callers get shared
dicts and must not mutate them.

Definitions are keyed by their Kubernetes names (`io.k8s.api.core.v1.Pod`); refs inside them
have the swagger 2.0 form `#/definitions/<name>`.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFINITIONS_FILE = Path(__file__).with_name("definitions.json")
REF_PREFIX = "#/definitions/"


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    return json.loads(DEFINITIONS_FILE.read_text())["definitions"]


def split_api_version(api_version: str) -> tuple[str, str]:
    """'apps/v1' -> ('apps', 'v1'); 'v1' -> ('', 'v1')."""
    group, _, version = api_version.rpartition("/")
    return group, version


@functools.cache
def _definition_names_by_gvk() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, definition in definitions().items():
        for gvk in definition.get("x-kubernetes-group-version-kind", ()):
            # Shared meta kinds (DeleteOptions, WatchEvent) are listed under every group; the
            # first definition to claim a GVK wins, which keeps the lookup deterministic.
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


def definition_name_for(api_version: str, kind: str) -> str | None:
    group, version = split_api_version(api_version)
    return _definition_names_by_gvk().get((group, version, kind))


def definition_for(api_version: str, kind: str) -> Mapping[str, Any] | None:
    """The shared (read-only) definition of a served kind; None for kinds keelson lacks."""
    name = definition_name_for(api_version, kind)
    return definitions()[name] if name else None


def schema_for(api_version: str, kind: str) -> dict | None:
    """A copy of the definition of a served kind (refs unexpanded), or None when unknown."""
    definition = definition_for(api_version, kind)
    return copy.deepcopy(dict(definition)) if definition is not None else None


def ref_name(node: Mapping[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref[len(REF_PREFIX) :] if ref else None


def resolve(node: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Follow a `$ref` to its definition; other nodes are returned unchanged."""
    if node is None:
        return None
    name = ref_name(node)
    return definitions()[name] if name else node


def field_schema(schema: Mapping[str, Any] | None, field: str) -> Mapping[str, Any] | None:
    """The (unresolved) schema of one field of an object schema, or None when unknown."""
    if schema is None:
        return None
    properties = schema.get("properties")
    if properties is not None:
        return properties.get(field)
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, dict) else None


def is_free_form(schema: Mapping[str, Any]) -> bool:
    """Objects without declared fields (RawExtension, FieldsV1, Patch) accept anything."""
    return (
        schema.get("type") == "object"
        and "properties" not in schema
        and "additionalProperties" not in schema
    )
