"""Encryption at rest: kube-apiserver's ``EncryptionConfiguration`` and on-disk format.

Why: Secrets are stored in SQLite (or etcd) files that backups and disk images copy
around; with a configuration like kube's ``--encryption-provider-config`` the values are
encrypted before they reach the store. Keeping kube's file format and kube's on-disk
prefix (``k8s:enc:aesgcm:v1:<key>:``) means a user's existing configuration works
unchanged and the data could be read by kube's own code.

How (as ``k8s.io/apiserver/pkg/storage/value``):
- Each ``resources[]`` entry maps resource names to an ordered provider list. Every key of
  every provider becomes one *prefix transformer*, in order: ``aesgcm`` (AES-GCM, random
  12-byte nonce, the storage key as additional authenticated data), ``aescbc`` (random IV,
  PKCS#7 padding, no authenticated data), ``secretbox`` (XSalsa20-Poly1305, random 24-byte
  nonce), ``identity`` (no prefix: plaintext).
- Writes use the first transformer only. Reads try every transformer whose prefix matches;
  a failure falls through to the next one (several keys can share a prefix during
  rotation). A value read with anything but the first transformer is reported *stale* so
  the caller rewrites it: that is how key rotation re-encrypts data on write.
- ``identity`` refuses ``k8s:enc:`` data, so an identity-first configuration (the way to
  migrate away from encryption) still reads values encrypted earlier (and marks them stale).
- Resource lookup is kube's: exact ``resource.group``, then ``*.group``, then ``*.*``;
  anything else is stored as plaintext.

Crypto comes from ``cryptography`` (AES) and PyNaCl (secretbox); nothing is hand-rolled.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
ENCRYPTED_PREFIX = b"k8s:enc:"
AES_KEY_SIZES = (16, 24, 32)
SECRETBOX_KEY_SIZES = (32,)
_GCM_NONCE = 12
_CBC_BLOCK = 16
_SECRETBOX_NONCE = nacl.secret.SecretBox.NONCE_SIZE  # 24
_PROVIDERS = ("kms", "aesgcm", "aescbc", "secretbox", "identity")

Context = bytes | str  # the storage key of the value, authenticated by aesgcm


class EncryptionConfigError(ValueError):
    """The configuration file is unusable; the message is one line naming the problem."""


class DecryptionError(Exception):
    """A stored value could not be decrypted by any configured key.

    ``keys`` names the ``provider/key`` pairs that were tried (empty when none matched
    the value's prefix).
    """

    def __init__(self, message: str, *, keys: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


def _context_bytes(context: Context) -> bytes:
    return context.encode() if isinstance(context, str) else bytes(context)


# --- the four value transformers -------------------------------------------------------

class _Identity:
    provider, key_name = "identity", ""

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        return data

    def decrypt(self, data: bytes, context: bytes) -> bytes:
        if data.startswith(ENCRYPTED_PREFIX):
            raise ValueError("identity transformer tried to read encrypted data")
        return data


class _AESGCM:
    provider = "aesgcm"

    def __init__(self, key_name: str, key: bytes) -> None:
        self.key_name, self._aead = key_name, AESGCM(key)

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_GCM_NONCE)
        return nonce + self._aead.encrypt(nonce, data, context)

    def decrypt(self, data: bytes, context: bytes) -> bytes:
        if len(data) < _GCM_NONCE:
            raise ValueError("the stored data was shorter than the required size")
        try:
            return self._aead.decrypt(data[:_GCM_NONCE], data[_GCM_NONCE:], context)
        except InvalidTag:
            raise ValueError("message authentication failed") from None


class _AESCBC:
    provider = "aescbc"

    def __init__(self, key_name: str, key: bytes) -> None:
        self.key_name, self._key = key_name, key

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        iv = os.urandom(_CBC_BLOCK)
        padder = padding.PKCS7(_CBC_BLOCK * 8).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        return iv + encryptor.update(padded) + encryptor.finalize()

    def decrypt(self, data: bytes, context: bytes) -> bytes:
        if len(data) < _CBC_BLOCK:
            raise ValueError("the stored data was shorter than the required size")
        iv, body = data[:_CBC_BLOCK], data[_CBC_BLOCK:]
        if len(body) % _CBC_BLOCK:
            raise ValueError("the stored data is not a multiple of the block size")
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        pad = padded[-1] if padded else 0
        if pad == 0 or pad > len(padded):
            raise ValueError("invalid PKCS7 data (empty or not padded)")
        if padded[-pad:] != bytes([pad]) * pad:
            raise ValueError("invalid padding on input")
        return padded[:-pad]


class _Secretbox:
    provider = "secretbox"

    def __init__(self, key_name: str, key: bytes) -> None:
        self.key_name, self._box = key_name, nacl.secret.SecretBox(key)

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        # PyNaCl's combined output is nonce + tag + ciphertext: Go's secretbox.Seal layout.
        return bytes(self._box.encrypt(data, os.urandom(_SECRETBOX_NONCE)))

    def decrypt(self, data: bytes, context: bytes) -> bytes:
        if len(data) < _SECRETBOX_NONCE + nacl.secret.SecretBox.MACBYTES:
            raise ValueError("the stored data was shorter than the required size")
        try:
            return self._box.decrypt(data)
        except nacl.exceptions.CryptoError:
            raise ValueError("message authentication failed") from None


_KEYED: dict[str, Callable[[str, bytes], Any]] = {
    "aesgcm": _AESGCM, "aescbc": _AESCBC, "secretbox": _Secretbox,
}


@dataclass(frozen=True)
class _PrefixTransformer:
    prefix: bytes
    transformer: Any  # one of the four classes above

    @property
    def label(self) -> str:
        t = self.transformer
        return f'{t.provider} key "{t.key_name}"' if t.key_name else t.provider


class Transformer:
    """One resource's ordered transformers: encrypt with the first, decrypt with any."""

    def __init__(self, transformers: Sequence[_PrefixTransformer]) -> None:
        if not transformers:
            raise ValueError("a Transformer needs at least one provider")
        self._transformers = tuple(transformers)

    @property
    def write_provider(self) -> str:
        """``provider`` or ``provider:key`` of the transformer used for writing."""
        t = self._transformers[0].transformer
        return f"{t.provider}:{t.key_name}" if t.key_name else t.provider

    def encrypt(self, plaintext: bytes, context: Context) -> bytes:
        """The on-disk form: the first provider's prefix plus its ciphertext."""
        first = self._transformers[0]
        return first.prefix + first.transformer.encrypt(plaintext, _context_bytes(context))

    def decrypt(self, stored: bytes, context: Context) -> tuple[bytes, bool]:
        """``(plaintext, stale)``; ``stale`` means "rewrite me with the current key".

        Raises :class:`DecryptionError` naming the keys that failed.
        """
        ctx = _context_bytes(context)
        failures: list[tuple[str, str]] = []
        for index, entry in enumerate(self._transformers):
            if not stored.startswith(entry.prefix):
                continue
            try:
                plaintext = entry.transformer.decrypt(stored[len(entry.prefix):], ctx)
            except ValueError as error:
                if entry.prefix:  # identity's refusal is not worth reporting
                    failures.append((entry.label, str(error)))
                continue
            return plaintext, index != 0
        if failures:
            detail = "; ".join(f"{label}: {why}" for label, why in failures)
            raise DecryptionError(f"failed to decrypt stored value with {detail}",
                                  keys=[label for label, _ in failures])
        raise DecryptionError(
            "the provided value does not match any of the supported transformers"
            + ("" if stored.startswith(ENCRYPTED_PREFIX) else
               " (it is not encrypted and 'identity' is not configured)"))


IDENTITY = Transformer([_PrefixTransformer(b"", _Identity())])


# --- configuration ----------------------------------------------------------------------

def _parse_group_resource(text: str) -> tuple[str, str]:
    """kube ``schema.ParseGroupResource``: ``"deployments.apps"`` -> ``("apps", "deployments")``."""
    resource, dot, group = text.partition(".")
    return (group, resource) if dot else ("", text)


@dataclass
class EncryptionConfig:
    """The parsed configuration: which :class:`Transformer` serves which resource."""

    transformers: dict[tuple[str, str], Transformer]

    def for_resource(self, resource: str, group: str = "") -> Transformer:
        """The transformer for ``resource`` in ``group`` (``IDENTITY`` when unconfigured)."""
        for key in ((group, resource), (group, "*"), ("*", "*")):
            if key in self.transformers:
                return self.transformers[key]
        return IDENTITY


def load_encryption_config(path: str | Path) -> EncryptionConfig:
    """Read and validate an ``EncryptionConfiguration`` file (YAML or JSON)."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise EncryptionConfigError(
            f'error reading encryption provider configuration file "{path}": '
            f"{error.strerror or error}") from None
    return parse_encryption_config(text, source=str(path))


def parse_encryption_config(document: str | bytes | Mapping[str, Any], *,
                            source: str = "<config>") -> EncryptionConfig:
    """Parse and validate a configuration; raise :class:`EncryptionConfigError` (one line)."""
    if isinstance(document, str | bytes):
        if not document.strip():
            raise EncryptionConfigError(
                f'encryption provider config file "{source}" is empty')
        try:
            document = yaml.safe_load(document)
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            raise EncryptionConfigError(f'error decoding encryption provider configuration '
                                        f'file "{source}": {problem}') from None
    if not isinstance(document, Mapping):
        raise EncryptionConfigError(f'error decoding encryption provider configuration file '
                                    f'"{source}": not an object')
    gvk = (document.get("apiVersion"), document.get("kind"))
    if gvk != (API_VERSION, KIND):
        raise EncryptionConfigError(
            f'error decoding encryption provider configuration file "{source}": expected '
            f'apiVersion "{API_VERSION}" and kind "{KIND}", got apiVersion '
            f'"{gvk[0] or ""}" and kind "{gvk[1] or ""}"')
    unknown = _unknown_fields(document)
    if unknown:
        fields = ", ".join(f'unknown field "{field}"' for field in unknown)
        raise EncryptionConfigError(f'error decoding encryption provider configuration file '
                                    f'"{source}": strict decoding error: {fields}')
    errors = validate(document)
    if errors:
        joined = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
        raise EncryptionConfigError(f'error while parsing file "{source}": {joined}')
    return _build(document)


_ALLOWED_FIELDS: dict[str, tuple[str, ...]] = {
    "": ("apiVersion", "kind", "resources"),
    "entry": ("resources", "providers"),
    "provider": _PROVIDERS,
    "keyed": ("keys",),
    "key": ("name", "secret"),
    "identity": (),
}


def _extra(obj: Any, allowed: str, path: str) -> list[str]:
    if not isinstance(obj, Mapping):
        return []
    return [f"{path}{'.' if path else ''}{key}" for key in obj
            if key not in _ALLOWED_FIELDS[allowed]]


def _unknown_fields(document: Mapping[str, Any]) -> list[str]:
    """kube decodes strictly: a misspelt field is an error, not silently ignored."""
    unknown = _extra(document, "", "")
    for i, entry in enumerate(_list(document.get("resources"))):
        unknown += _extra(entry, "entry", f"resources[{i}]")
        providers = entry.get("providers") if isinstance(entry, Mapping) else None
        for j, provider in enumerate(_list(providers)):
            if isinstance(provider, Mapping):
                unknown += _unknown_provider_fields(provider, f"resources[{i}].providers[{j}]")
    return unknown


def _unknown_provider_fields(provider: Mapping[str, Any], path: str) -> list[str]:
    unknown = _extra(provider, "provider", path)
    unknown += _extra(provider.get("identity"), "identity", f"{path}.identity")
    for name in _KEYED:
        keyed = provider.get(name)
        unknown += _extra(keyed, "keyed", f"{path}.{name}")
        keys = keyed.get("keys") if isinstance(keyed, Mapping) else None
        for k, key in enumerate(_list(keys)):
            unknown += _extra(key, "key", f"{path}.{name}.keys[{k}]")
    return unknown


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


# Validation, with kube's field paths and wording (validation_encryption.go).

def _required(path: str, detail: str) -> str:
    return f"{path}: Required value: {detail}"


def _invalid(path: str, value: Any, detail: str) -> str:
    shown = f'"{value}"' if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return f"{path}: Invalid value: {shown}: {detail}"


def validate(document: Mapping[str, Any]) -> list[str]:
    """Every validation error of a decoded configuration, in kube's wording."""
    resources = _list(document.get("resources"))
    if not resources:
        return [_required("resources", "at least one resources is required")]
    errors: list[str] = []
    for i, entry in enumerate(resources):
        entry = entry if isinstance(entry, Mapping) else {}
        rpath, ppath = f"resources[{i}].resources", f"resources[{i}].providers"
        names = [str(name) for name in _list(entry.get("resources"))]
        if not names:
            errors.append(_required(rpath, f"at least one {rpath} is required"))
        errors += _resource_overlap(names, rpath) + _resource_names(names, rpath)
        providers = _list(entry.get("providers"))
        if not providers:
            errors.append(_required(ppath, f"at least one {ppath} is required"))
        for j, provider in enumerate(providers):
            errors += _validate_provider(provider, f"{ppath}[{j}]")
    return errors


def _validate_provider(provider: Any, path: str) -> list[str]:
    provider = provider if isinstance(provider, Mapping) else {}
    present = [name for name in _PROVIDERS if provider.get(name) is not None]
    if not present:
        return [_invalid(path, dict(provider), "provider does not contain any of the expected "
                         "providers: KMS, AESGCM, AESCBC, Secretbox, Identity")]
    if len(present) > 1:
        return [_invalid(path, sorted(present), "more than one provider specified in a single "
                         "element, should split into different list elements")]
    name = present[0]
    if name == "kms":
        return [f"{path}.kms: Unsupported value: keelson has no KMS plugin support; "
                "use aesgcm, aescbc, secretbox or identity"]
    if name == "identity":
        return []
    sizes = SECRETBOX_KEY_SIZES if name == "secretbox" else AES_KEY_SIZES
    keyed = provider[name] if isinstance(provider[name], Mapping) else {}
    keys = _list(keyed.get("keys"))
    kpath = f"{path}.{name}.keys"
    if not keys:
        return [_required(kpath, "at least one keys is required")]
    errors: list[str] = []
    for k, key in enumerate(keys):
        errors += _validate_key(key if isinstance(key, Mapping) else {}, f"{kpath}[{k}]", sizes)
    return errors


def _validate_key(key: Mapping[str, Any], path: str, sizes: tuple[int, ...]) -> list[str]:
    errors: list[str] = []
    if not key.get("name"):
        errors.append(_required(f"{path}.name", "name is a mandatory field for a key"))
    if not key.get("secret"):
        errors.append(_required(f"{path}.secret", "secret is a mandatory field for a key"))
        return errors
    secret = _decode_secret(str(key["secret"]))
    if secret is None:
        errors.append(_invalid(f"{path}.secret", "REDACTED", "secrets must be base64 encoded"))
    elif len(secret) not in sizes:
        expected = " ".join(str(size) for size in sizes)
        errors.append(_invalid(f"{path}.secret", "REDACTED", f"secret is not of the expected "
                               f"length, got {len(secret)}, expected one of [{expected}]"))
    return errors


def _decode_secret(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _resource_overlap(names: list[str], path: str) -> list[str]:
    if len(names) < 2:
        return []
    parsed = [_parse_group_resource(name) for name in names]
    duplicate = len(set(parsed)) != len(parsed)
    overlap = False
    for i, first in enumerate(parsed):
        for j, second in enumerate(parsed):
            if i == j or first == second:
                continue
            if first == ("*", "*") or (first[0] == second[0] and "*" in (first[1], second[1])):
                overlap = True
    errors = []
    if duplicate:
        errors.append(_invalid(path, names, "the same resource cannot be specified multiple "
                               "times"))
    if overlap:
        errors.append(_invalid(path, names, "using overlapping resources such as 'secrets' and "
                               "'*.' in the same resource list is not allowed as they will be "
                               "masked"))
    return errors


def _resource_names(names: list[str], path: str) -> list[str]:
    errors = []
    for j, name in enumerate(names):
        group, resource = _parse_group_resource(name)
        problem = None
        if name.lower() != name:
            problem = "resource name should not contain capital letters"
        elif name == "*":
            problem = "use '*.' to encrypt all the resources from core API group or *.* to " \
                      "encrypt all resources"
        elif name in ("apiserveripinfo", "serviceipallocations", "servicenodeportallocations"):
            problem = "resources which do not have REST API/s cannot be encrypted"
        elif group == "events.k8s.io":
            problem = "'*.events.k8s.io' objects are stored using the 'events' API group in " \
                      "etcd. Use 'events' instead in the config file"
        elif group == "extensions":
            problem = "'extensions' group has been removed and cannot be used for encryption"
        elif group == "*" and resource != "*":
            problem = "encrypting the same resource across groups is not supported"
        if problem:
            errors.append(_invalid(f"{path}[{j}]", name, problem))
    return errors


def _prefix_transformers(providers: list[Mapping[str, Any]]) -> list[_PrefixTransformer]:
    transformers: list[_PrefixTransformer] = []
    for provider in providers:
        if provider.get("identity") is not None:
            transformers.append(_PrefixTransformer(b"", _Identity()))
            continue
        name = next(n for n in _KEYED if provider.get(n) is not None)
        for key in provider[name]["keys"]:
            prefix = f"k8s:enc:{name}:v1:{key['name']}:".encode()
            secret = base64.b64decode(key["secret"], validate=True)
            transformers.append(_PrefixTransformer(prefix, _KEYED[name](key["name"], secret)))
    return transformers


def _build(document: Mapping[str, Any]) -> EncryptionConfig:
    table: dict[tuple[str, str], Transformer] = {}
    for entry in document["resources"]:
        transformer = Transformer(_prefix_transformers(entry["providers"]))
        for name in entry["resources"]:
            # "*." is the whole core group: ParseGroupResource gives ("", "*").
            table.setdefault(_parse_group_resource(str(name)), transformer)
    return EncryptionConfig(table)
