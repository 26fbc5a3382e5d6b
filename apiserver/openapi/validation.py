"""Strict field validation and JSON type checks against the built-in schemas.

Kubernetes decodes request bodies into Go structs; a field the struct does not have is an
"unknown field" (dropped, warned about, or rejected depending on `fieldValidation`), and a
JSON value of the wrong type is a decoding error. This module reproduces both as plain
functions over the generated schema so that the handler decides what to do with the result.

Paths are written the way Kubernetes reports them: `spec.containers[0].imagePullPolcy`,
`metadata.lables`. `null` is accepted anywhere (it means "unset", as in Go). IntOrString
and Quantity take an integer or a string (a Quantity also a float); free-form objects
(RawExtension, FieldsV1) take anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apiserver.openapi.schema import definition_for, is_free_form, ref_name, resolve

# Definitions served as `type: string` that Kubernetes also decodes from JSON numbers.
NUMERIC_STRING_DEFINITIONS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": ("integer", "string"),
    "io.k8s.apimachinery.pkg.api.resource.Quantity": ("integer", "number", "string"),
}


class _Findings:
    def __init__(self) -> None:
        self.unknown_fields: list[str] = []
        self.type_errors: list[tuple[str, str]] = []


def _json_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _accepted_types(node: Mapping[str, Any], schema: Mapping[str, Any]) -> tuple[str, ...]:
    """JSON types a value may have; () when the schema does not say."""
    name = ref_name(node)
    if name in NUMERIC_STRING_DEFINITIONS:
        return NUMERIC_STRING_DEFINITIONS[name]
    expected = schema.get("type")
    if expected is None:
        return ()
    return ("integer", "number") if expected == "number" else (expected,)


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _walk(node: Mapping[str, Any], value: Any, path: str, findings: _Findings) -> None:
    if value is None:
        return
    schema = resolve(node)
    accepted = _accepted_types(node, schema)
    actual = _json_type_name(value)
    if accepted and actual not in accepted:
        findings.type_errors.append((path, f"expected {' or '.join(accepted)}, got {actual}"))
        return
    if isinstance(value, list):
        items = schema.get("items")
        if items:
            for index, item in enumerate(value):
                _walk(items, item, f"{path}[{index}]", findings)
        return
    if not isinstance(value, Mapping) or is_free_form(schema):
        return
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    for field, field_value in value.items():
        field_path = _join(path, field)
        if properties is not None and field in properties:
            _walk(properties[field], field_value, field_path, findings)
        elif isinstance(additional, Mapping):
            _walk(additional, field_value, field_path, findings)
        elif properties is not None:
            findings.unknown_fields.append(field_path)


def _check(api_version: str, kind: str, obj: Mapping) -> _Findings:
    findings = _Findings()
    schema = definition_for(api_version, kind)
    if schema is not None:
        _walk(schema, obj, "", findings)
    return findings


def find_unknown_fields(api_version: str, kind: str, obj: Mapping) -> list[str]:
    """Dotted paths of fields the kind does not have; [] for unknown kinds."""
    return _check(api_version, kind, obj).unknown_fields


def find_type_errors(api_version: str, kind: str, obj: Mapping) -> list[tuple[str, str]]:
    """(path, message) for every value of the wrong JSON type; [] for unknown kinds."""
    return _check(api_version, kind, obj).type_errors
