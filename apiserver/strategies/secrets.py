"""Secrets: typed key/value data, ``stringData`` folded into ``data``, type-specific checks.

Kubernetes' ``pkg/registry/core/secret/strategy.go`` with the conversion and validation it
relies on (``Convert_v1_Secret_To_core_Secret``, ``ValidateSecret``,
``ValidateSecretUpdate``), so a Secret behaves as on kube-apiserver:

- ``stringData`` is write-only: each key is merged into ``data`` (base64-encoded, winning
  over a ``data`` key of the same name) before anything else sees the object, and never
  stored or returned. ``data`` values must be base64 (a 400, as kube's decoder answers).
- ``type`` defaults to ``Opaque`` and can never change; the well-known types require
  their keys (``tls.crt`` and ``tls.key``; ``.dockerconfigjson`` holding a JSON object;
  the ``kubernetes.io/service-account.name`` annotation; …), and ``bootstrap.kubernetes.io/
  token`` Secrets follow the bootstrap token format (name ``bootstrap-token-<id>``,
  ``token-id`` ``[a-z0-9]{6}``, ``token-secret`` ``[a-z0-9]{16}``).
- ``data`` keys are config keys (alphanumerics, ``-``, ``_``, ``.``), 1 MiB in total.
- ``immutable: true`` freezes ``data`` (and ``immutable`` itself) for good.

Values are never echoed in error messages (kube's ``<secret contents redacted>``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from apiserver import status
from apiserver.admission.validation import (
    forbidden,
    immutable,
    invalid_value,
    metadata_causes,
    required,
)
from apiserver.strategies.base import Cause, Obj, Strategy

OPAQUE = "Opaque"
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
DOCKERCFG = "kubernetes.io/dockercfg"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
BASIC_AUTH = "kubernetes.io/basic-auth"
SSH_AUTH = "kubernetes.io/ssh-auth"
TLS = "kubernetes.io/tls"
BOOTSTRAP_TOKEN = "bootstrap.kubernetes.io/token"
SERVICE_ACCOUNT_NAME_ANNOTATION = "kubernetes.io/service-account.name"
MAX_SECRET_SIZE = 1024 * 1024
REDACTED = "<secret contents redacted>"

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_BOOTSTRAP_TOKEN_ID = re.compile(r"^[a-z0-9]{6}$")
_BOOTSTRAP_TOKEN_SECRET = re.compile(r"^[a-z0-9]{16}$")
_BOOTSTRAP_NAME_PREFIX = "bootstrap-token-"

# type -> (keys that must be present, key holding JSON)
_REQUIRED_KEYS: dict[str, tuple[tuple[str, ...], str | None]] = {
    DOCKERCFG: ((".dockercfg",), ".dockercfg"),
    DOCKER_CONFIG_JSON: ((".dockerconfigjson",), ".dockerconfigjson"),
    TLS: (("tls.crt", "tls.key"), None),
    SSH_AUTH: (("ssh-privatekey",), None),
}


def decode_data(secret: Obj) -> dict[str, bytes]:
    """``data`` as bytes (the caller has validated it with :func:`normalize`)."""
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


def normalize(secret: Obj) -> None:
    """Fold ``stringData`` into ``data`` and canonicalize ``data``'s base64, in place.

    Raises a 400 StatusError, as kube's decoder does, for a ``data`` value that is not
    base64 or not a string.
    """
    data = secret.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _undecodable("data must be a map of keys to base64 strings")
    decoded: dict[str, bytes] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise _undecodable(f"data[{key}] must be a base64 string")
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _undecodable(f"illegal base64 data in data[{key}]") from None
    string_data = secret.pop("stringData", None)
    if string_data is not None:
        if not isinstance(string_data, dict) or not all(
                isinstance(value, str) for value in string_data.values()):
            raise _undecodable("stringData must be a map of keys to strings")
        for key, value in string_data.items():
            decoded[key] = value.encode()
    if decoded:
        secret["data"] = {key: base64.b64encode(value).decode() for key, value in
                          decoded.items()}
    else:
        secret.pop("data", None)


def _undecodable(detail: str) -> status.StatusError:
    return status.bad_request(f'Secret in version "v1" cannot be handled as a Secret: {detail}')


def validate_secret(secret: Obj) -> list[Cause]:
    """kube ``ValidateSecret`` on a normalized Secret."""
    causes = metadata_causes(secret)
    data = decode_data(secret)
    total = 0
    for key, value in data.items():
        if len(key) > 253 or not _CONFIG_KEY.match(key):
            causes.append(invalid_value(f"data[{key}]", key,
                                        "a valid config key must consist of alphanumeric "
                                        "characters, '-', '_' or '.' (e.g. 'key.name',  or "
                                        "'KEY_NAME',  or 'key-name', regex used for validation "
                                        "is '[-._a-zA-Z0-9]+')"))
        total += len(value)
    if total > MAX_SECRET_SIZE:
        causes.append(status.field_cause("data", f"Too long: must have at most "
                                         f"{MAX_SECRET_SIZE} bytes", reason="FieldValueTooLong"))
    secret_type = secret.get("type") or OPAQUE
    if not isinstance(secret_type, str):
        return [*causes, invalid_value("type", secret_type, "must be a string")]
    return causes + _type_causes(secret, secret_type, data)


def _type_causes(secret: Obj, secret_type: str, data: dict[str, bytes]) -> list[Cause]:
    if secret_type == SERVICE_ACCOUNT_TOKEN:
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if not annotations.get(SERVICE_ACCOUNT_NAME_ANNOTATION):
            return [required(f"metadata.annotations[{SERVICE_ACCOUNT_NAME_ANNOTATION}]")]
        return []
    if secret_type == BASIC_AUTH:
        if "username" not in data and "password" not in data:
            return [required("data[username]"), required("data[password]")]
        return []
    if secret_type == BOOTSTRAP_TOKEN:
        return bootstrap_token_causes(secret, data)
    keys, json_key = _REQUIRED_KEYS.get(secret_type, ((), None))
    causes = [required(f"data[{key}]") for key in keys
              if key not in data or (secret_type == SSH_AUTH and not data[key])]
    if json_key is not None and not causes:
        causes += _json_object_causes(data[json_key], f"data[{json_key}]")
    return causes


def _json_object_causes(raw: bytes, field: str) -> list[Cause]:
    """The content must be a JSON object (kube: ``json.Unmarshal`` into a map)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        return [invalid_value(field, REDACTED, f"invalid JSON: {error.msg}")]
    except ValueError:
        return [invalid_value(field, REDACTED, "invalid JSON: not UTF-8 text")]
    if not isinstance(value, dict):
        return [invalid_value(field, REDACTED, "json: cannot unmarshal "
                              f"{type(value).__name__} into Go value of type "
                              "map[string]interface {}")]
    return []


def bootstrap_token_causes(secret: Obj, data: dict[str, bytes]) -> list[Cause]:
    """A bootstrap token Secret in kube-system is only usable with the documented shape:
    name ``bootstrap-token-<token-id>``, ``token-id`` ``[a-z0-9]{6}``, ``token-secret``
    ``[a-z0-9]{16}`` (k8s.io/cluster-bootstrap)."""
    causes: list[Cause] = []
    token_id = data.get("token-id", b"").decode(errors="replace")
    token_secret = data.get("token-secret", b"").decode(errors="replace")
    if "token-id" not in data:
        causes.append(required("data[token-id]"))
    elif not _BOOTSTRAP_TOKEN_ID.match(token_id):
        causes.append(invalid_value("data[token-id]", token_id,
                                    "must match the regex [a-z0-9]{6}"))
    if "token-secret" not in data:
        causes.append(required("data[token-secret]"))
    elif not _BOOTSTRAP_TOKEN_SECRET.match(token_secret):
        causes.append(invalid_value("data[token-secret]", REDACTED,
                                    "must match the regex [a-z0-9]{16}"))
    name = (secret.get("metadata") or {}).get("name") or ""
    if token_id and _BOOTSTRAP_TOKEN_ID.match(token_id) and \
            name != _BOOTSTRAP_NAME_PREFIX + token_id:
        causes.append(invalid_value("metadata.name", name,
                                    f'must be "{_BOOTSTRAP_NAME_PREFIX}<token-id>" '
                                    f'("{_BOOTSTRAP_NAME_PREFIX}{token_id}")'))
    return causes


def validate_secret_update(new: Obj, old: Obj) -> list[Cause]:
    """kube ``ValidateSecretUpdate``: type is immutable, and so is an immutable Secret."""
    causes: list[Cause] = []
    if (new.get("type") or OPAQUE) != (old.get("type") or OPAQUE):
        causes.append(immutable("type", new.get("type")))
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            causes.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        if (new.get("data") or {}) != (old.get("data") or {}):
            causes.append(forbidden("data", "field is immutable when `immutable` is set"))
    return causes + validate_secret(new)


class SecretStrategy(Strategy):
    def __init__(self) -> None:
        super().__init__(create_on_update=False)

    def default(self, obj: Obj) -> None:
        if not obj.get("type"):
            obj["type"] = OPAQUE

    def prepare_for_create(self, obj: Obj) -> None:
        normalize(obj)
        self.default(obj)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        normalize(new)
        if not new.get("type"):  # kube: an update without a type keeps the stored one
            new["type"] = old.get("type") or OPAQUE

    def validate(self, new: Obj, old: Obj | None) -> list[Cause]:
        return validate_secret(new) if old is None else validate_secret_update(new, old)


STRATEGY = SecretStrategy()

__all__ = ["STRATEGY", "SecretStrategy", "decode_data", "normalize", "validate_secret",
           "validate_secret_update"]
