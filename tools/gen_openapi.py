"""Generate apiserver/openapi/definitions.json, the schema of keelson's built-in types.

Run at dev time; its output is committed and the runtime never needs this script or its
source package:

    pip download kubernetes-validate --no-deps -d /tmp/kv && unzip -o /tmp/kv/*.whl -d /tmp/kv
    .venv/bin/python tools/gen_openapi.py \
        /tmp/kv/kubernetes_validate/kubernetes-json-schema/v1.37.0-local

The source is the `kubernetes-validate` package, which ships the upstream Kubernetes
definitions converted to JSON schema and keeps the extensions that matter to us:
`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`, `x-kubernetes-list-type`,
`x-kubernetes-list-map-keys` and `x-kubernetes-group-version-kind`. That one file is then the
single source of truth for strategic merge patch, strict field validation, type checks and the
OpenAPI documents, so they can never disagree.

The conversion undoes what the JSON-schema flavour added, giving back the shape Kubernetes
serves: `type: [T, "null"]` becomes `type: T`; the injected `enum` on apiVersion/kind goes;
refs point at `#/definitions/<name>`; IntOrString and Quantity become the strings with the
formats Kubernetes uses. Descriptions are dropped except a short one per definition (what
`kubectl explain` prints first), and only definitions reachable from the served kinds are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "apiserver" / "openapi" / "definitions.json"

# The served kinds: every definition reachable from these is kept.
ROOT_DEFINITIONS = [
    *(
        f"io.k8s.api.core.v1.{kind}{suffix}"
        for kind in ("Namespace", "Node", "Pod", "Service", "Endpoints", "Event", "ConfigMap",
                     "Secret", "ServiceAccount")
        for suffix in ("", "List")
    ),
    "io.k8s.api.core.v1.Binding",
    "io.k8s.api.authentication.v1.TokenRequest",
    "io.k8s.api.authentication.v1.TokenReview",
    "io.k8s.api.authentication.v1.SelfSubjectReview",
    *(
        f"io.k8s.api.rbac.v1.{kind}{suffix}"
        for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
        for suffix in ("", "List")
    ),
    *(
        f"io.k8s.api.authorization.v1.{kind}"
        for kind in ("SelfSubjectAccessReview", "SelfSubjectRulesReview", "SubjectAccessReview",
                     "LocalSubjectAccessReview")
    ),
    "io.k8s.api.discovery.v1.EndpointSlice",
    "io.k8s.api.discovery.v1.EndpointSliceList",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.DeploymentList",
    "io.k8s.api.apps.v1.ReplicaSet",
    "io.k8s.api.apps.v1.ReplicaSetList",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.api.coordination.v1.Lease",
    "io.k8s.api.coordination.v1.LeaseList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
]

# Group/versions keelson serves; GVK lists on shared meta kinds are cut down to these.
SERVED_GROUP_VERSIONS = {
    ("", "v1"),
    ("apps", "v1"),
    ("authentication.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
    ("rbac.authorization.k8s.io", "v1"),
    ("autoscaling", "v1"),
    ("coordination.k8s.io", "v1"),
    ("discovery.k8s.io", "v1"),
}

# Kubernetes serves these as plain strings with a format; validators treat them specially.
REPLACED_DEFINITIONS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "type": "string",
        "format": "int-or-string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
}

KEPT_KEYS = {
    "type",
    "format",
    "items",
    "properties",
    "additionalProperties",
    "required",
    "$ref",
    "enum",
}


def _plain_type(value: Any) -> Any:
    if isinstance(value, list):
        non_null = [item for item in value if item != "null"]
        return non_null[0] if len(non_null) == 1 else non_null
    return value


def _short_description(text: str) -> str:
    first = text.split("\n")[0].split(". ")[0].strip()
    return first if first.endswith(".") else first + "."


def _convert(node: Any) -> Any:
    """One schema node in Kubernetes' served shape (recursive)."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        # Patch extensions sit next to a ref (DeploymentSpec.strategy: retainKeys); keep them.
        ref = {"$ref": node["$ref"].replace("#/$defs/", "#/definitions/")}
        return ref | {key: value for key, value in node.items() if key.startswith("x-kubernetes-")}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            out[key] = _plain_type(value)
        elif key == "properties":
            out[key] = {name: _convert(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value)
        elif key == "enum":
            out[key] = [item for item in value if item is not None]
        elif key.startswith("x-kubernetes-") or key in KEPT_KEYS:
            out[key] = value
    return out


def _convert_definition(name: str, definition: dict[str, Any]) -> dict[str, Any]:
    if name in REPLACED_DEFINITIONS:
        converted = dict(REPLACED_DEFINITIONS[name])
    else:
        converted = _convert(definition)
        for field in ("apiVersion", "kind"):
            converted.get("properties", {}).get(field, {}).pop("enum", None)
    gvks = converted.get("x-kubernetes-group-version-kind")
    if gvks:
        converted["x-kubernetes-group-version-kind"] = [
            gvk for gvk in gvks if (gvk["group"], gvk["version"]) in SERVED_GROUP_VERSIONS
        ]
    if definition.get("description"):
        converted["description"] = _short_description(definition["description"])
    return converted


def _references(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if "$ref" in node:
            found.add(node["$ref"].rsplit("/", 1)[-1])
        for value in node.values():
            found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def reachable_definitions(source: dict[str, Any]) -> dict[str, Any]:
    pending = list(ROOT_DEFINITIONS)
    kept: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if name in kept:
            continue
        if name not in source:
            raise SystemExit(f"definition {name} is missing from the source schemas")
        kept[name] = _convert_definition(name, source[name])
        pending.extend(_references(kept[name]) - kept.keys())
    return dict(sorted(kept.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schema_dir", type=Path, help="a kubernetes-json-schema version folder")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    source = json.loads((args.schema_dir / "_definitions.json").read_text())["$defs"]
    definitions = reachable_definitions(source)
    document = {"source": args.schema_dir.name, "definitions": definitions}
    args.output.write_text(json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {len(definitions)} definitions to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
