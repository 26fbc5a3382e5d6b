"""``meta.k8s.io/v1`` Table output: what ``kubectl get`` prints.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints
the server's columns as they come, so the printed output is decided here, from the
registry's column definitions. Rows carry the object's metadata as a
PartialObjectMetadata (``includeObject=Metadata``, kubectl's default) which kubectl
uses for names, namespaces and ``--show-labels``.
"""

from __future__ import annotations

from typing import Any

from apiserver.registry import ResourceType

Obj = dict[str, Any]


def wants_table(accept: str) -> bool:
    """True when the first acceptable media type is a meta.k8s.io Table."""
    for media in accept.split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[1].strip()
                  for p in media.split(";")[1:] if "=" in p}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v") in ("v1", "v1beta1")
        if media.strip().split(";")[0] in ("application/json", "*/*", "application/*"):
            return False
    return False


def column_definitions(rt: ResourceType) -> list[Obj]:
    return [{"name": c.name, "type": c.type, "format": c.format,
             "description": c.description, "priority": c.priority} for c in rt.columns]


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def row(rt: ResourceType, obj: Obj, *, include: str = "Metadata") -> Obj:
    cells = []
    for column in rt.columns:
        try:
            value = column.getter(obj)
        except (AttributeError, TypeError, ValueError, KeyError):
            value = ""  # a malformed stored object must not break `kubectl get`
        cells.append(value)
    result: Obj = {"cells": cells}
    embedded = _row_object(obj, include)
    if embedded is not None:
        result["object"] = embedded
    return result


def table(rt: ResourceType, objects: list[Obj], *, resource_version: str = "",
          continue_token: str = "", include: str = "Metadata", headers: bool = True) -> Obj:
    meta: Obj = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(rt) if headers else [],
        "rows": [row(rt, obj, include=include) for obj in objects],
    }
