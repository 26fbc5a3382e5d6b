"""The swagger 2.0 document in the protobuf encoding client-go asks for.

client-go fetches /openapi/v2 with `Accept: application/com.github.proto-openapi.spec.v2@v1.0
+protobuf` and only decodes protobuf (the `openapi.v2.Document` message of google/gnostic,
openapiv2/OpenAPIv2.proto); kubectl reads it for `explain --output=plaintext-openapiv2` and
as its fallback when a v3 document is missing. This module encodes our JSON document into
that message by hand (a few dozen field numbers, no protobuf dependency).

Only what the document uses is encoded. Vendor extensions and enum values travel, as in
gnostic, as `Any{yaml: ...}`; JSON is valid YAML, so they are JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# Wire types.
VARINT = 0
LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes(field: int, payload: bytes) -> bytes:
    return _key(field, LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _string(field: int, value: str | None) -> bytes:
    return _bytes(field, value.encode()) if value else b""


def _strings(field: int, values: Iterable[str]) -> bytes:
    return b"".join(_bytes(field, value.encode()) for value in values)


def _bool(field: int, value: bool) -> bytes:
    return _key(field, VARINT) + _varint(1) if value else b""


def _message(field: int, payload: bytes, *, always: bool = False) -> bytes:
    return _bytes(field, payload) if payload or always else b""


def _any(value: Any) -> bytes:
    """gnostic `Any`: the value as YAML (JSON) text in field 2."""
    return _string(2, json.dumps(value, separators=(",", ":")))


def _named(field: int, name: str, value: bytes) -> bytes:
    """The (name, value) pair messages gnostic uses for maps: name = 1, value = 2."""
    return _message(field, _string(1, name) + _bytes(2, value), always=True)


def _vendor_extensions(field: int, node: Mapping[str, Any]) -> bytes:
    return b"".join(
        _named(field, key, _any(value)) for key, value in node.items() if key.startswith("x-")
    )


def _schema(node: Mapping[str, Any]) -> bytes:
    parts = [
        _string(1, node.get("$ref")),
        _string(2, node.get("format")),
        _string(4, node.get("description")),
        _strings(19, node.get("required", ())),
        b"".join(_message(20, _any(item), always=True) for item in node.get("enum", ())),
    ]
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        parts.append(_message(21, _bytes(1, _schema(additional)), always=True))
    elif isinstance(additional, bool):
        parts.append(_message(21, _key(2, VARINT) + _varint(int(additional)), always=True))
    json_type = node.get("type")
    if json_type:
        types = json_type if isinstance(json_type, list) else [json_type]
        parts.append(_message(22, _strings(1, types), always=True))
    if "items" in node:
        parts.append(_message(23, _bytes(1, _schema(node["items"])), always=True))
    if "properties" in node:
        properties = b"".join(
            _named(1, name, _schema(value)) for name, value in node["properties"].items()
        )
        parts.append(_message(25, properties, always=True))
    parts.append(_vendor_extensions(31, node))
    return b"".join(parts)


def _parameter(node: Mapping[str, Any]) -> bytes:
    if "$ref" in node:
        return _message(2, _string(1, node["$ref"]), always=True)
    where = node.get("in")
    if where == "body":
        body = (
            _string(1, node.get("description"))
            + _string(2, node["name"])
            + _string(3, where)
            + _bool(4, node.get("required", False))
            + _message(5, _schema(node.get("schema", {})), always=True)
        )
        parameter = _message(1, body, always=True)
    else:
        common = (
            _bool(1, node.get("required", False))
            + _string(2, where)
            + _string(3, node.get("description"))
            + _string(4, node["name"])
        )
        if where == "path":
            sub_schema = common + _string(5, node.get("type")) + _bool(19, node.get("uniqueItems"))
            non_body = _message(4, sub_schema, always=True)
        else:
            sub_schema = common + _string(6, node.get("type")) + _bool(20, node.get("uniqueItems"))
            non_body = _message(3, sub_schema, always=True)
        parameter = _message(2, non_body, always=True)
    return _message(1, parameter, always=True)


def _parameters(field: int, nodes: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(_message(field, _parameter(node), always=True) for node in nodes)


def _responses(node: Mapping[str, Any]) -> bytes:
    codes = []
    for code, response in node.items():
        body = _string(1, response.get("description"))
        if "schema" in response:
            body += _message(2, _bytes(1, _schema(response["schema"])), always=True)
        codes.append(_named(1, code, _message(1, body, always=True)))
    return b"".join(codes)


def _operation(node: Mapping[str, Any]) -> bytes:
    return b"".join(
        [
            _strings(1, node.get("tags", ())),
            _string(3, node.get("description")),
            _string(5, node.get("operationId")),
            _strings(6, node.get("produces", ())),
            _strings(7, node.get("consumes", ())),
            _parameters(8, node.get("parameters", ())),
            _message(9, _responses(node.get("responses", {})), always=True),
            _strings(10, node.get("schemes", ())),
            _vendor_extensions(13, node),
        ]
    )


OPERATION_FIELDS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(node: Mapping[str, Any]) -> bytes:
    parts = [
        _message(OPERATION_FIELDS[verb], _operation(node[verb]), always=True)
        for verb in OPERATION_FIELDS
        if verb in node
    ]
    parts.append(_parameters(9, node.get("parameters", ())))
    return b"".join(parts)


def _security_definitions(node: Mapping[str, Any]) -> bytes:
    items = []
    for name, scheme in node.items():
        api_key = _string(1, scheme.get("type")) + _string(2, scheme.get("name"))
        api_key += _string(3, scheme.get("in"))
        items.append(_named(1, name, _message(2, api_key, always=True)))
    return b"".join(items)


def _security(requirements: Iterable[Mapping[str, list[str]]]) -> bytes:
    return b"".join(
        _message(
            12,
            b"".join(_named(1, name, _strings(1, scopes)) for name, scopes in item.items()),
            always=True,
        )
        for item in requirements
    )


def encode_document(document: Mapping[str, Any]) -> bytes:
    """A swagger 2.0 document (as JSON data) as an `openapi.v2.Document` message."""
    info = document.get("info", {})
    paths = b"".join(
        _named(2, path, _path_item(item)) for path, item in document.get("paths", {}).items()
    )
    definitions = b"".join(
        _named(1, name, _schema(schema)) for name, schema in document.get("definitions", {}).items()
    )
    return b"".join(
        [
            _string(1, document.get("swagger")),
            _message(2, _string(1, info.get("title")) + _string(2, info.get("version"))),
            _message(8, paths, always=True),
            _message(9, definitions, always=True),
            _security(document.get("security", ())),
            _message(13, _security_definitions(document.get("securityDefinitions", {}))),
        ]
    )
