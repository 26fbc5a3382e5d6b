"""Generate apiserver/protobuf/fields.json, the field table the protobuf request decoder walks.

Run at dev time; its output is committed and the runtime needs neither this script nor the
.proto files:

    .venv/bin/python tools/gen_protobuf.py /tmp/k8s-proto/*.proto

Inputs are the upstream `generated.proto` files of the served groups: kubernetes/api
`core/v1`, `apps/v1`, `discovery/v1`, `coordination/v1`, `autoscaling/v1` and
kubernetes/apimachinery `pkg/apis/meta/v1`, `pkg/runtime`, `pkg/util/intstr`,
`pkg/api/resource` (in the kubernetes/kubernetes tree under `staging/src/k8s.io/`). Prefer a
recent release: field numbers never change once released, so a newer file only adds fields.
Copies with the prose comments removed work as well, as long as each field keeps its
`+optional` marker (on a comment line above it or as a trailing comment).

The committed table was generated from such copies of kubernetes/kubernetes
`staging/src/k8s.io/...` at these commits: api/core/v1 0032f46b (v1.36 development),
api/apps/v1 0122c43a, api/discovery/v1 025f2834, api/coordination/v1 1672e6d6,
api/autoscaling/v1 c9323ab5, apimachinery runtime 203d8ac8, util/intstr 009a4a8b,
api/resource 0f9f0907, and apis/meta/v1 from liggitt/kubernetes 6e27d818 (older: the two
fields added since are in EXTRA_FIELDS). Checked against kubectl v1.37.1: the bodies its
`create` and `debug --copy-to` commands send decode to its own JSON (tests/unit/test_protobuf.py).
core/v1 Secret and ServiceAccount and authentication/v1 TokenRequest (with its spec, status and
BoundObjectReference) were added later with `--extend`, from copies of just those messages
(kubernetes/api v0.26.0; released field numbers never change), for kubectl's `create secret`,
`create serviceaccount` and `create token`.
rbac/v1 (Role, ClusterRole, their bindings), authorization/v1 (the access and rules reviews)
and authentication/v1 SelfSubjectReview were added the same way, from copies of those
messages in kubernetes/kubernetes `staging/src/k8s.io/api` (rbac 081ac6b5, authorization
06120030, authentication 07ef5fd7), for kubectl's `create role|clusterrole|rolebinding|
clusterrolebinding` and `auth can-i|whoami`. The `extra` maps (SubjectAccessReviewSpec,
UserInfo) are left out: their ExtraValue is a bare list in JSON, which the table cannot say,
and kubectl never sends them (a body that does is refused, never misread).

What the .proto text cannot say comes from the Go types (`types.go`) and is written down here:
which scalar fields are Go pointers (an explicit zero is kept in JSON), which fields are
embedded inline in JSON, which fields are `omitempty` although their comment lacks
`+optional`, which use Go's `omitzero`, and fields newer than the .proto copies used
(EXTRA_FIELDS). In these files a
proto field name is the JSON name.

Table format (one entry per message reachable from the served kinds):
    messages[name][field number] = [json name, type, label, flags]
    type  = a scalar proto type ("string", "int32", ...) or a message name
    label = "" (single), "repeated" or "map" (map<string, type>)
    flags = "p" Go pointer (emit even when zero), "r" required (no omitempty: emit zero),
            "i" inline (merge the message's fields into the parent),
            "z" omitzero (a zero Time is left out instead of being null)
Message names drop the `k8s.io.api.` / `k8s.io.apimachinery.pkg.` prefixes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "apiserver" / "protobuf" / "fields.json"

# apiVersion/kind as sent in the envelope -> root message; "*" matches any apiVersion
# (DeleteOptions is registered in every group version).
KINDS = {
    **{f"v1/{kind}": f"core.v1.{kind}" for kind in (
        "Namespace", "Node", "Pod", "Service", "Endpoints", "Event", "ConfigMap", "Binding",
        "Secret", "ServiceAccount")},
    "authentication.k8s.io/v1/TokenRequest": "authentication.v1.TokenRequest",
    "authentication.k8s.io/v1/SelfSubjectReview": "authentication.v1.SelfSubjectReview",
    **{f"rbac.authorization.k8s.io/v1/{kind}": f"rbac.v1.{kind}" for kind in (
        "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")},
    **{f"authorization.k8s.io/v1/{kind}": f"authorization.v1.{kind}" for kind in (
        "SelfSubjectAccessReview", "SelfSubjectRulesReview", "SubjectAccessReview",
        "LocalSubjectAccessReview")},
    "discovery.k8s.io/v1/EndpointSlice": "discovery.v1.EndpointSlice",
    "apps/v1/Deployment": "apps.v1.Deployment",
    "apps/v1/ReplicaSet": "apps.v1.ReplicaSet",
    "coordination.k8s.io/v1/Lease": "coordination.v1.Lease",
    "autoscaling/v1/Scale": "autoscaling.v1.Scale",
    "*/DeleteOptions": "apis.meta.v1.DeleteOptions",
}

# Messages with their own JSON form; the decoder converts them, so their fields are not listed.
SPECIAL = {
    "apis.meta.v1.Time", "apis.meta.v1.MicroTime", "apis.meta.v1.Duration",
    "apis.meta.v1.FieldsV1", "runtime.RawExtension", "util.intstr.IntOrString",
    "api.resource.Quantity",
}

SCALARS = {
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
}

# Scalar fields that are Go pointers: present on the wire means set, even to zero.
POINTER_FIELDS = {
    "core.v1.AzureDiskVolumeSource": "cachingMode fsType readOnly kind",
    "core.v1.CSIVolumeSource": "readOnly fsType",
    "core.v1.ClientIPConfig": "timeoutSeconds",
    "core.v1.ClusterTrustBundleProjection": "name signerName optional",
    "core.v1.ConfigMap": "immutable",
    "core.v1.ConfigMapEnvSource": "optional",
    "core.v1.ConfigMapKeySelector": "optional",
    "core.v1.ConfigMapProjection": "optional",
    "core.v1.ConfigMapVolumeSource": "defaultMode optional",
    "core.v1.Container": "restartPolicy",
    "core.v1.EphemeralContainerCommon": "restartPolicy",
    "core.v1.ContainerStatus": "started stopSignal",
    "core.v1.DownwardAPIVolumeFile": "mode",
    "core.v1.DownwardAPIVolumeSource": "defaultMode",
    "core.v1.EndpointAddress": "nodeName",
    "core.v1.EndpointPort": "appProtocol",
    "core.v1.FCVolumeSource": "lun",
    "core.v1.FileKeySelector": "optional",
    "core.v1.GRPCAction": "service",
    "core.v1.HostPathVolumeSource": "type",
    "core.v1.ISCSIVolumeSource": "initiatorName",
    "core.v1.KeyToPath": "mode",
    "core.v1.Lifecycle": "stopSignal",
    "core.v1.LoadBalancerIngress": "ipMode",
    "core.v1.NodeFeatures": "supplementalGroupsPolicy containerUlimits",
    "core.v1.NodeRuntimeHandlerFeatures": "recursiveReadOnlyMounts userNamespaces",
    "core.v1.NodeSwapStatus": "capacity",
    "core.v1.PersistentVolumeClaimSpec": "storageClassName volumeMode volumeAttributesClassName",
    "core.v1.PodCertificateProjection": "maxExpirationSeconds",
    "core.v1.PodDNSConfigOption": "value",
    "core.v1.PodResourceClaim": "resourceClaimName resourceClaimTemplateName",
    "core.v1.PodResourceClaimStatus": "resourceClaimName",
    "core.v1.PodSecurityContext": "runAsUser runAsGroup runAsNonRoot fsGroup "
                                  "fsGroupChangePolicy supplementalGroupsPolicy "
                                  "seLinuxChangePolicy",
    "core.v1.PodSpec": "terminationGracePeriodSeconds activeDeadlineSeconds "
                       "automountServiceAccountToken shareProcessNamespace priority "
                       "enableServiceLinks preemptionPolicy setHostnameAsFQDN hostUsers "
                       "runtimeClassName hostnameOverride",
    "core.v1.PortStatus": "error",
    "core.v1.Probe": "terminationGracePeriodSeconds",
    "core.v1.ProjectedVolumeSource": "defaultMode",
    "core.v1.ResourceHealth": "message",
    "core.v1.AppArmorProfile": "localhostProfile",
    "core.v1.SeccompProfile": "localhostProfile",
    "core.v1.SecretEnvSource": "optional",
    "core.v1.SecretKeySelector": "optional",
    "core.v1.Secret": "immutable",
    "core.v1.SecretProjection": "optional",
    "core.v1.SecretVolumeSource": "defaultMode optional",
    "core.v1.SecurityContext": "privileged runAsUser runAsGroup runAsNonRoot "
                               "readOnlyRootFilesystem allowPrivilegeEscalation procMount",
    "core.v1.ServiceAccount": "automountServiceAccountToken",
    "core.v1.ServiceAccountTokenProjection": "expirationSeconds",
    "core.v1.ServicePort": "appProtocol",
    "core.v1.ServiceSpec": "ipFamilyPolicy allocateLoadBalancerNodePorts loadBalancerClass "
                           "internalTrafficPolicy trafficDistribution",
    "core.v1.Toleration": "tolerationSeconds",
    "core.v1.TopologySpreadConstraint": "minDomains nodeAffinityPolicy nodeTaintsPolicy",
    "core.v1.TypedLocalObjectReference": "apiGroup",
    "core.v1.TypedObjectReference": "apiGroup namespace",
    "core.v1.VolumeMount": "mountPropagation recursiveReadOnly",
    "core.v1.VolumeMountStatus": "recursiveReadOnly",
    "core.v1.WindowsSecurityContextOptions": "gmsaCredentialSpecName gmsaCredentialSpec "
                                             "runAsUserName hostProcess",
    "apps.v1.DeploymentSpec": "replicas revisionHistoryLimit progressDeadlineSeconds "
                              "podReplacementPolicy",
    "apps.v1.DeploymentStatus": "collisionCount terminatingReplicas",
    "apps.v1.ReplicaSetSpec": "replicas",
    "apps.v1.ReplicaSetStatus": "terminatingReplicas",
    "discovery.v1.Endpoint": "hostname nodeName zone",
    "discovery.v1.EndpointConditions": "ready serving terminating",
    "discovery.v1.EndpointPort": "name protocol port appProtocol",
    "coordination.v1.LeaseSpec": "holderIdentity leaseDurationSeconds leaseTransitions "
                                 "strategy preferredHolder",
    "apis.meta.v1.ObjectMeta": "deletionGracePeriodSeconds",
    "apis.meta.v1.OwnerReference": "controller blockOwnerDeletion",
    "apis.meta.v1.DeleteOptions": "gracePeriodSeconds orphanDependents propagationPolicy "
                                  "ignoreStoreReadErrorWithClusterBreakingPotential",
    "apis.meta.v1.Preconditions": "uid resourceVersion",
    "authentication.v1.TokenRequestSpec": "expirationSeconds",
}

# Fields whose proto name is not their JSON name (Go's `json:` tag differs from `name=`).
JSON_NAMES = {"authentication.v1.BoundObjectReference": {"uID": "uid"}}

# Embedded Go structs (`json:",inline"`): their fields appear directly in the parent object.
INLINE_FIELDS = {
    **{f"core.v1.{message}": "localObjectReference" for message in (
        "ConfigMapEnvSource", "ConfigMapKeySelector", "ConfigMapProjection",
        "ConfigMapVolumeSource", "SecretEnvSource", "SecretKeySelector", "SecretProjection")},
    "core.v1.Volume": "volumeSource",
    "core.v1.Probe": "handler",
    "core.v1.EphemeralContainer": "ephemeralContainerCommon",
}

# `omitempty` in Go although the .proto comment has no `+optional`.
OMITEMPTY_FIELDS = {
    "apis.meta.v1.ManagedFieldsEntry": "manager operation apiVersion fieldsType subresource",
    "apps.v1.DeploymentCondition": "reason message",
    "core.v1.EphemeralContainerCommon": "image",
    "core.v1.EventSeries": "count",
    "core.v1.AzureDiskVolumeSource": "kind",
    "core.v1.PhotonPersistentDiskVolumeSource": "fsType",
    "core.v1.PortworxVolumeSource": "fsType",
}

# `omitzero` in Go: the zero value is left out (checked against kubectl 1.37's own JSON, which
# has no `creationTimestamp: null` any more).
OMITZERO_FIELDS = {"apis.meta.v1.ObjectMeta": "creationTimestamp"}

# Fields newer than the .proto copies used: (message, number, json name, type, label, optional)
EXTRA_FIELDS = [
    ("apis.meta.v1.DeleteOptions", 6, "ignoreStoreReadErrorWithClusterBreakingPotential",
     "bool", "", True),
    ("discovery.v1.EndpointHints", 2, "forNodes", "discovery.v1.ForNode", "repeated", True),
]
EXTRA_MESSAGES = {"discovery.v1.ForNode": [(1, "name", "string", "", False)]}

PREFIXES = ("k8s.io.api.", "k8s.io.apimachinery.pkg.")

FIELD_RE = re.compile(
    r"^(?:(?P<label>optional|repeated|required)\s+(?P<type>[\w.]+)"
    r"|map<\s*(?P<key>\w+)\s*,\s*(?P<value>[\w.]+)\s*>)"
    r"\s+(?P<name>\w+)\s*=\s*(?P<number>\d+)\s*;\s*(?://(?P<trailing>.*))?$")


@dataclass
class Field:
    number: int
    name: str
    type: str
    label: str
    optional: bool


def short_name(full: str) -> str:
    full = full.lstrip(".")
    for prefix in PREFIXES:
        if full.startswith(prefix):
            return full[len(prefix):]
    return full


def parse_proto(text: str) -> dict[str, list[Field]]:
    """Messages of one generated.proto (k8s style: flat, no nesting, no enums or oneofs)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    package = ""
    messages: dict[str, list[Field]] = {}
    current: list[Field] | None = None
    comment: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("//"):
            comment.append(line)
            continue
        if not line or re.match(r"^(syntax|import|option)\b", line):
            comment = []
            continue
        if match := re.match(r"^package\s+([\w.]+)\s*;$", line):
            package = match.group(1)
        elif match := re.match(r"^message\s+(\w+)\s*\{\s*(\})?$", line):
            current = messages.setdefault(short_name(f"{package}.{match.group(1)}"), [])
            if match.group(2):
                current = None
        elif line == "}":
            current = None
        elif current is not None and (match := FIELD_RE.match(line)):
            current.append(_field(match, package, comment))
        else:
            raise ValueError(f"line {number}: cannot parse {raw!r}")
        comment = []
    return messages


def _field(match: re.Match[str], package: str, comment: list[str]) -> Field:
    notes = " ".join([*comment, match.group("trailing") or ""])
    if match.group("key"):
        if match.group("key") != "string":
            raise ValueError(f"map key type {match.group('key')} is not supported")
        label, type_name = "map", match.group("value")
    else:
        label = "repeated" if match.group("label") == "repeated" else ""
        type_name = match.group("type")
    if type_name not in SCALARS:
        type_name = short_name(type_name if "." in type_name else f"{package}.{type_name}")
    return Field(int(match.group("number")), match.group("name"), type_name, label,
                 "+optional" in notes)


def build_table(messages: dict[str, list[Field]], *,
                existing: dict[str, dict[str, list[str]]] | None = None
                ) -> dict[str, dict[str, list[str]]]:
    """The table of every message reachable from KINDS; with ``existing`` (``--extend``),
    messages already in it are kept as they are and only new ones come from the inputs."""
    for message, number, name, type_name, label, optional in EXTRA_FIELDS:
        if existing is None or message in messages:
            messages[message].append(Field(number, name, type_name, label, optional))
    for message, fields in EXTRA_MESSAGES.items():
        messages[message] = [Field(*field) for field in fields]
    missing = SPECIAL - messages.keys()
    if missing and existing is None:
        raise ValueError(f"special messages missing from the inputs: {sorted(missing)}")
    table: dict[str, dict[str, list[str]]] = {}
    queue = deque(KINDS.values())
    while queue:
        name = queue.popleft()
        if name in table or name in SPECIAL:
            continue
        if existing is not None and name in existing:
            table[name] = existing[name]
            queue.extend(entry[1] for entry in existing[name].values()
                         if entry[1] not in SCALARS)
            continue
        if name not in messages:
            raise ValueError(f"message {name} is referenced but not in the inputs")
        table[name] = {str(field.number): _entry(name, field) for field in
                       sorted(messages[name], key=lambda field: field.number)}
        queue.extend(field.type for field in messages[name] if field.type not in SCALARS)
    _check_overrides(table)
    return dict(sorted(table.items()))


def _entry(message: str, field: Field) -> list[str]:
    flags = ""
    if field.name in POINTER_FIELDS.get(message, "").split():
        flags += "p"
    omitempty = field.optional or field.name in OMITEMPTY_FIELDS.get(message, "").split()
    if not omitempty and field.type in SCALARS and not field.label:
        flags += "r"
    if field.name in INLINE_FIELDS.get(message, "").split():
        flags += "i"
    if field.name in OMITZERO_FIELDS.get(message, "").split():
        flags += "z"
    return [JSON_NAMES.get(message, {}).get(field.name, field.name), field.type, field.label,
            flags]


def _check_overrides(table: dict[str, dict[str, list[str]]]) -> None:
    """Every hand-written override must name a field that exists, so typos cannot hide."""
    for overrides in (POINTER_FIELDS, INLINE_FIELDS, OMITEMPTY_FIELDS, OMITZERO_FIELDS):
        for message, names in overrides.items():
            known = {entry[0] for entry in table.get(message, {}).values()}
            unknown = set(names.split()) - known
            if unknown:
                raise ValueError(f"override names unknown fields of {message}: {unknown}")


def render(table: dict[str, dict[str, list[str]]]) -> str:
    """Stable, diff-friendly JSON: one message per line."""
    lines = ["{", f'"kinds": {json.dumps(KINDS, sort_keys=True)},', '"messages": {']
    items = [f"{json.dumps(name)}: {json.dumps(fields, separators=(',', ':'))}"
             for name, fields in table.items()]
    lines.append(",\n".join(items))
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protos", nargs="+", type=Path, help="generated.proto files")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--extend", action="store_true",
                        help="keep the messages already in --output; read only new kinds' "
                        "messages from the inputs (copies of just those messages will do)")
    args = parser.parse_args(argv)
    messages: dict[str, list[Field]] = {}
    try:
        existing = json.loads(args.output.read_text())["messages"] if args.extend else None
        for path in args.protos:
            messages.update(parse_proto(path.read_text()))
        table = build_table(messages, existing=existing)
    except (KeyError, ValueError) as exc:
        print(f"gen_protobuf: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(render(table))
    print(f"wrote {len(table)} messages to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
