"""ServiceAccount admission: every pod runs as a ServiceAccount that exists, with its token.

kube's ``plugin/pkg/admission/serviceaccount`` (mutating and validating, pod CREATE only):

1. ``spec.serviceAccountName`` defaults to ``default``.
2. The ServiceAccount must exist, else the pod is refused: ``403 Forbidden`` with
   ``pods "web" is forbidden: error looking up service account ns/name: serviceaccount
   "name" not found``. ``default`` is looked up a few more times (about 1.5 s) because the
   ServiceAccounts controller creates it just after its namespace.
3. Unless ``automountServiceAccountToken`` is false (the pod's setting wins over the
   ServiceAccount's), a projected volume ``kube-api-access-<5 random>`` is added — a bound
   token (``expirationSeconds: 3607``, path ``token``), ``ca.crt`` from the
   ``kube-root-ca.crt`` ConfigMap and ``namespace`` from the downward API, mode 0644 —
   and mounted read-only at ``/var/run/secrets/kubernetes.io/serviceaccount`` in every
   init and app container that has nothing mounted there yet.
4. A pod without ``imagePullSecrets`` gets the ServiceAccount's.

Mirror pods (the ``kubernetes.io/config.mirror`` annotation) are left unchanged and may
reference neither ServiceAccounts, Secrets nor token projections.

:func:`mount_token_volume` and :func:`admit_pod` are pure (table tests);
:class:`ServiceAccountAdmission` adds the store look-up for the REST store's create path.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from apiserver import status
from apiserver.admission.defaulting import service_account_alias
from apiserver.auth.node import MIRROR_POD_ANNOTATION, pod_secret_names

if TYPE_CHECKING:
    from apiserver.registry import ResourceType
    from apiserver.rest import RestStore

Obj = dict[str, Any]

PLUGIN_NAME = "ServiceAccount"
DEFAULT_SERVICE_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# kube serviceaccount.WarnOnlyBoundTokenExpirationSeconds: 1 h + 7 s, so that kubelet's
# refresh (at 80 % of the lifetime) is visible in the token's expiry.
TOKEN_EXPIRATION_SECONDS = 3607
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
PROJECTED_DEFAULT_MODE = 0o644  # 420
DEFAULT_LOOKUP_ATTEMPTS = 10
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator alphabet


def generate_volume_name() -> str:
    return VOLUME_PREFIX + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))


def token_volume_source() -> Obj:
    """kube ``TokenVolumeSource()``: the projected sources of ``kube-api-access-*``."""
    return {
        "defaultMode": PROJECTED_DEFAULT_MODE,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                     "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP,
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"apiVersion": "v1",
                                                     "fieldPath": "metadata.namespace"}}]}},
        ],
    }


def should_automount(service_account: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """The pod's ``automountServiceAccountToken`` wins, then the ServiceAccount's; default
    true."""
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if service_account.get("automountServiceAccountToken") is not None:
        return bool(service_account["automountServiceAccountToken"])
    return True


def mount_token_volume(pod: Obj, *, generate_name: Callable[[], str] = generate_volume_name
                       ) -> None:
    """Mount the API access volume in every container lacking a mount at the token path,
    adding the volume if some container needs it (kube ``mountServiceAccountToken``)."""
    spec = pod.setdefault("spec", {})
    volumes = spec.get("volumes") or []
    existing = next((v["name"] for v in volumes if isinstance(v, dict)
                     and str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
    name = existing or generate_name()
    needs_volume = False
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            mounts = container.get("volumeMounts") or []
            if any(isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH
                   for m in mounts):
                continue
            container["volumeMounts"] = [*mounts, {"name": name, "readOnly": True,
                                                   "mountPath": TOKEN_MOUNT_PATH}]
            needs_volume = True
    if needs_volume and existing is None:
        spec["volumes"] = [*volumes, {"name": name, "projected": token_volume_source()}]


def mirror_pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why a mirror pod is refused, or None (kube: they reference nothing secret)."""
    spec = pod.get("spec") or {}
    if spec.get("serviceAccountName"):
        return "a mirror pod may not reference service accounts"
    if pod_secret_names(dict(pod)):
        return "a mirror pod may not reference secrets"
    for volume in spec.get("volumes") or []:
        for source in ((volume or {}).get("projected") or {}).get("sources") or []:
            if (source or {}).get("serviceAccountToken") is not None:
                return "a mirror pod may not use ServiceAccountToken volume projections"
    return None


def is_mirror_pod(pod: Mapping[str, Any]) -> bool:
    return MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def admit_pod(pod: Obj, service_account: Mapping[str, Any], *,
              generate_name: Callable[[], str] = generate_volume_name) -> None:
    """Apply steps 3 and 4 to a (non-mirror) pod whose ServiceAccount was found."""
    if should_automount(service_account, pod):
        mount_token_volume(pod, generate_name=generate_name)
    spec = pod.setdefault("spec", {})
    if not spec.get("imagePullSecrets") and service_account.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [{"name": ref.get("name", "")}
                                    for ref in service_account["imagePullSecrets"]]


def _forbidden(pod: Mapping[str, Any], message: str) -> status.StatusError:
    meta = pod.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "Unknown"
    return status.StatusError(403, "Forbidden", f'pods "{name}" is forbidden: {message}',
                              details={"name": name, "kind": "pods"})


class ServiceAccountAdmission:
    """The plugin on the REST store's create path (pods only, the main resource only)."""

    name = PLUGIN_NAME

    def __init__(self, *, retry_interval: Callable[[], float] | None = None) -> None:
        self._retry_interval = retry_interval or (lambda: random.uniform(0.1, 0.2))

    async def admit_create(self, rt: ResourceType, obj: Obj, store: RestStore) -> None:
        if rt.group != "" or rt.plural != "pods":
            return
        if is_mirror_pod(obj):
            problem = mirror_pod_problem(obj)
            if problem:
                raise _forbidden(obj, problem)
            return
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return  # validation reports it
        service_account_alias(spec)
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = DEFAULT_SERVICE_ACCOUNT
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        name = spec["serviceAccountName"]
        service_account = await self._lookup(store, namespace, str(name))
        if service_account is None:
            raise _forbidden(obj, f"error looking up service account {namespace}/{name}: "
                                  f'serviceaccount "{name}" not found')
        admit_pod(obj, service_account)

    async def _lookup(self, store: RestStore, namespace: str, name: str) -> Obj | None:
        accounts = store.registry.lookup("", "v1", "serviceaccounts")
        assert accounts is not None
        attempts = DEFAULT_LOOKUP_ATTEMPTS if name == DEFAULT_SERVICE_ACCOUNT else 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._retry_interval())
            try:
                return await store.get(accounts, namespace, name)
            except status.StatusError as error:
                if error.code != 404:
                    raise
        return None
