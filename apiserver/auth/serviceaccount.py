"""ServiceAccount tokens: kube's bound JWTs, their verification and OIDC discovery.

Why: pods (and the node agent, for them) call the apiserver as their ServiceAccount with
a short-lived, audience-bound token, as in Kubernetes. A token is a JWT signed RS256 with
the cluster's service-account key; anyone holding the public key (published at
``/openid/v1/jwks`` with the discovery document at ``/.well-known/openid-configuration``)
can verify it offline. Claims, ``kid`` derivation, discovery documents and error texts
follow kube's ``pkg/serviceaccount`` (``claims.go``, ``jwt.go``, ``openidmetadata.go``).

JWT encoding and signature checks use PyJWT, a well-kept JOSE library, rather than our
own; time, issuer and audience checks are done here so that ``now`` can be injected and
each failure gets its own exception (the lead turns every :class:`TokenError` into 401).

Invariants:
- The signing key is RSA (kube's RS256 path); ``kid`` is base64url(SHA-256(DER PKIX
  public key)), kube's ``keyIDFromPublicKey``; ``aud`` is always a JSON array.
- Expiry and not-before allow kube's 60 s leeway (go-jose ``DefaultLeeway``).
- A verified token is cached (by its SHA-256) until it expires, so signature checks are
  not repeated per request; time and audience are still checked on every use.
- This module never reads storage: :func:`bound_refs` says which ServiceAccount / Pod /
  Secret / Node a token names, and :func:`check_bound_objects` applies kube's
  "still exists with the same uid" rules to the objects the caller fetched.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apiclient.meta import parse_time
from apiserver.auth.authn import AUTHENTICATED_GROUP, UserInfo
from apiserver.auth.pki import write_file

OPENID_CONFIG_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
ALGORITHM = "RS256"
LEEWAY_SECONDS = 60
KEY_BITS = 2048
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
# The user "extra" keys kube sets for a bound token (authentication/serviceaccount/util.go).
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"

Claims = dict[str, Any]


# --- errors -----------------------------------------------------------------------------

class TokenError(Exception):
    """A bearer token was not accepted (answer 401)."""


class TokenMalformedError(TokenError):
    """Not a compact JWT, or missing required claims."""


class TokenIssuerError(TokenError):
    """Issued by someone else (kube lets the next authenticator try such a token)."""


class TokenSignatureError(TokenError):
    """The signature does not verify with any of our keys: tampered or foreign."""


class TokenExpiredError(TokenError):
    pass


class TokenNotYetValidError(TokenError):
    pass


class TokenAudienceError(TokenError):
    pass


class TokenInvalidatedError(TokenError):
    """The ServiceAccount, Pod, Secret or Node the token is bound to is gone or replaced."""


# --- keys -------------------------------------------------------------------------------

def load_or_create_signing_key(path: str | Path) -> rsa.RSAPrivateKey:
    """Load the PEM RSA private key at ``path`` or create a 2048-bit one there (0600).

    The public half is written next to it as ``<stem>.pub`` (PKIX PEM), as kubeadm does
    for ``sa.key`` / ``sa.pub``.
    """
    path = Path(path)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: the service-account signing key must be an RSA key, "
                             f"got {type(key).__name__}")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    write_file(path, key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()), mode=0o600)
    write_file(path.with_suffix(".pub"), public_key_pem(key.public_key()), mode=0o644)
    return key


def load_verification_keys(path: str | Path) -> list[rsa.RSAPublicKey]:
    """Every RSA public key in a PEM file of public keys, private keys or certificates
    (kube's ``--service-account-key-file`` accepts all three)."""
    keys: list[rsa.RSAPublicKey] = []
    text = Path(path).read_bytes()
    for block in text.split(b"-----END ")[:-1]:
        begin = block.find(b"-----BEGIN ")
        kind = block[begin + 11:].split(b"-----", 1)[0]
        pem = block[begin:] + b"-----END " + kind + b"-----\n"
        if kind == b"CERTIFICATE":
            public = x509.load_pem_x509_certificate(pem).public_key()
        elif kind.endswith(b"PRIVATE KEY"):
            public = serialization.load_pem_private_key(pem, password=None).public_key()
        else:
            public = serialization.load_pem_public_key(pem)
        if isinstance(public, rsa.RSAPublicKey):
            keys.append(public)
    if not keys:
        raise ValueError(f"{path}: no RSA public keys found")
    return keys


def public_key_pem(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """kube ``keyIDFromPublicKey``: base64url (unpadded) SHA-256 of the DER PKIX key."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64url(hashlib.sha256(der).digest())


def _jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()

    def encode(value: int) -> str:
        return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    # Field order as go-jose marshals a JSONWebKey.
    return {"use": "sig", "kty": "RSA", "kid": key_id(public_key), "alg": ALGORITHM,
            "n": encode(numbers.n), "e": encode(numbers.e)}


def jwks(public_keys: Sequence[rsa.RSAPublicKey]) -> dict[str, Any]:
    """The ``/openid/v1/jwks`` document: ``{"keys": [JWK, ...]}``."""
    return {"keys": [_jwk(key) for key in public_keys]}


def openid_configuration(issuer: str, *, jwks_uri: str | None = None,
                         external_address: str | None = None) -> dict[str, Any]:
    """The ``/.well-known/openid-configuration`` document, as kube renders it.

    ``jwks_uri`` defaults to ``https://<external_address>/openid/v1/jwks``. Raises
    :class:`ValueError` with kube's wording when the issuer is not an https URL.
    """
    parsed = urlsplit(issuer)
    if parsed.scheme != "https":
        raise ValueError(f"issuer URL must use https scheme, got: {issuer}")
    if parsed.query:
        raise ValueError(f"issuer URL may not include a query, got: {issuer}")
    if parsed.fragment:
        raise ValueError(f"issuer URL may not include a fragment, got: {issuer}")
    if not jwks_uri:
        if not external_address:
            raise ValueError("either the JWKS URI or the default external address, or both, "
                             "must be set")
        jwks_uri = f"https://{external_address}{JWKS_PATH}"
    elif urlsplit(jwks_uri).scheme != "https":
        raise ValueError(f"jwksURI requires https scheme, parsed as: {jwks_uri}")
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
    }


# --- claims -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectRef:
    """A ``{name, uid}`` reference inside the ``kubernetes.io`` claim."""

    name: str
    uid: str


@dataclass(frozen=True)
class BoundObject:
    """What a token is bound to (TokenRequest ``spec.boundObjectRef``): Pod, Secret or
    Node, by name and uid."""

    kind: str
    name: str
    uid: str

    def __post_init__(self) -> None:
        if self.kind not in ("Pod", "Secret", "Node"):
            raise ValueError(f"cannot bind a token to a {self.kind!r}: "
                             "only Pod, Secret and Node are supported")


@dataclass(frozen=True)
class BoundRefs:
    """Which objects a verified token names; the caller checks they still exist."""

    namespace: str
    service_account: ObjectRef
    pod: ObjectRef | None = None
    secret: ObjectRef | None = None
    node: ObjectRef | None = None


def _ref(value: Any) -> ObjectRef | None:
    if not isinstance(value, Mapping):
        return None
    return ObjectRef(name=str(value.get("name") or ""), uid=str(value.get("uid") or ""))


def bound_refs(claims: Mapping[str, Any]) -> BoundRefs:
    private = claims.get("kubernetes.io") or {}
    return BoundRefs(namespace=str(private.get("namespace") or ""),
                     service_account=_ref(private.get("serviceaccount")) or ObjectRef("", ""),
                     pod=_ref(private.get("pod")), secret=_ref(private.get("secret")),
                     node=_ref(private.get("node")))


def make_username(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def user_from_claims(claims: Mapping[str, Any]) -> tuple[UserInfo, dict[str, list[str]]]:
    """The authenticated user of a verified token and kube's user ``extra`` map.

    ``UserInfo`` has no extras, so they come back separately (pod / node name and uid,
    and ``credential-id`` = ``JTI=<jti>``, as kube sets them).
    """
    refs = bound_refs(claims)
    user = UserInfo(name=make_username(refs.namespace, refs.service_account.name),
                    groups=(SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{refs.namespace}",
                            AUTHENTICATED_GROUP),
                    uid=refs.service_account.uid)
    extra: dict[str, list[str]] = {}
    if refs.pod is not None:
        extra[EXTRA_POD_NAME], extra[EXTRA_POD_UID] = [refs.pod.name], [refs.pod.uid]
    if refs.node is not None:
        extra[EXTRA_NODE_NAME] = [refs.node.name]
        if refs.node.uid:
            extra[EXTRA_NODE_UID] = [refs.node.uid]
    if claims.get("jti"):
        extra[EXTRA_CREDENTIAL_ID] = [f"JTI={claims['jti']}"]
    return user, extra


def check_bound_objects(claims: Mapping[str, Any], *, service_account: Mapping | None,
                        pod: Mapping | None = None, secret: Mapping | None = None,
                        node: Mapping | None = None, now: float | None = None) -> None:
    """kube's ``validator.Validate`` storage checks, on objects the caller fetched.

    Pass the stored objects named by :func:`bound_refs` (``None`` when absent). Raises
    :class:`TokenInvalidatedError` with kube's messages when any is missing, deleted more
    than the leeway ago, or replaced by an object with another uid.
    """
    refs = bound_refs(claims)
    deadline = (time.time() if now is None else now) - LEEWAY_SECONDS
    sa = refs.service_account
    if service_account is None:
        raise TokenInvalidatedError(
            f'serviceaccounts "{sa.name}" not found')
    if _deleted_before(service_account, deadline):
        raise TokenInvalidatedError(
            f"service account {refs.namespace}/{sa.name} has been deleted")
    stored_uid = _uid(service_account)
    if stored_uid != sa.uid:
        raise TokenInvalidatedError(
            f"service account UID ({stored_uid}) does not match claim ({sa.uid})")
    for ref, stored, kind in ((refs.secret, secret, "secret"), (refs.pod, pod, "pod")):
        if ref is None:
            continue
        if stored is None or _deleted_before(stored, deadline):
            raise TokenInvalidatedError("service account token has been invalidated")
        if _uid(stored) != ref.uid:
            raise TokenInvalidatedError(f"{kind} UID ({_uid(stored)}) does not match service "
                                        f"account {kind} ref claim ({ref.uid})")
    if refs.node is not None and refs.pod is None:  # a token bound to the node itself
        if node is None or _deleted_before(node, deadline):
            raise TokenInvalidatedError("service account token has been invalidated")
        if _uid(node) != refs.node.uid:
            raise TokenInvalidatedError(f"node UID ({_uid(node)}) does not match service "
                                        f"account node ref claim ({refs.node.uid})")


def _uid(obj: Mapping) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _deleted_before(obj: Mapping, deadline: float) -> bool:
    stamp = (obj.get("metadata") or {}).get("deletionTimestamp")
    if not stamp:
        return False
    return parse_time(str(stamp)).timestamp() < deadline


def _go_quote_list(values: Sequence[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(value) for value in values) + "]"


# --- issuing and validating -------------------------------------------------------------

@dataclass
class _CacheEntry:
    claims: Claims
    expires: float


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


@dataclass
class TokenAuthority:
    """Signs bound tokens with one key and verifies them against every known key.

    ``issuers[0]`` is written into new tokens; every issuer listed is accepted
    (kube's repeated ``--service-account-issuer``). ``api_audiences`` are the audiences
    a token must share when the caller names none (kube's ``--api-audiences``, which
    defaults to the issuers).
    """

    signing_key: rsa.RSAPrivateKey
    issuers: Sequence[str]
    api_audiences: Sequence[str] = ()
    verification_keys: Sequence[rsa.RSAPublicKey] = ()
    cache_size: int = 4096
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        if not self.issuers:
            raise ValueError("at least one service-account issuer is required")
        self.issuers = tuple(self.issuers)
        self.api_audiences = tuple(self.api_audiences or self.issuers)
        self._signing_kid = key_id(self.signing_key.public_key())
        keys = [self.signing_key.public_key(), *self.verification_keys]
        self._keys: dict[str, rsa.RSAPublicKey] = {key_id(key): key for key in keys}
        self._cache: OrderedDict[bytes, _CacheEntry] = OrderedDict()

    @property
    def public_keys(self) -> list[rsa.RSAPublicKey]:
        return list(self._keys.values())

    def jwks(self) -> dict[str, Any]:
        return jwks(self.public_keys)

    def openid_configuration(self, *, jwks_uri: str | None = None,
                             external_address: str | None = None) -> dict[str, Any]:
        return openid_configuration(self.issuers[0], jwks_uri=jwks_uri,
                                    external_address=external_address)

    def issue_token(self, sa_namespace: str, sa_name: str, sa_uid: str, *,
                    audiences: Sequence[str], expiration_seconds: int,
                    bound_object: BoundObject | None = None, node: ObjectRef | None = None,
                    now: float | None = None) -> tuple[str, datetime.datetime]:
        """A signed token and its expiry (kube ``serviceaccount.Claims``).

        ``node`` is the node of a bound Pod (kube records it in pod-bound tokens); a token
        bound to a Node carries it as ``bound_object``. Audiences default to
        ``api_audiences`` when empty, as TokenRequest does.
        """
        issued = int(time.time() if now is None else now)
        expires = issued + int(expiration_seconds)
        private: dict[str, Any] = {
            "namespace": sa_namespace,
            "serviceaccount": {"name": sa_name, "uid": sa_uid},
        }
        if bound_object is not None:
            ref = {"name": bound_object.name, "uid": bound_object.uid}
            private[bound_object.kind.lower()] = ref
            if bound_object.kind == "Pod" and node is not None:
                private["node"] = {"name": node.name, "uid": node.uid}
        # Keys in the order go-jose's JSON object would have them (sorted).
        claims = {
            "aud": list(audiences or self.api_audiences),
            "exp": expires,
            "iat": issued,
            "iss": self.issuers[0],
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": issued,
            "sub": make_username(sa_namespace, sa_name),
        }
        token = jwt.encode(claims, self.signing_key, algorithm=ALGORITHM,
                           headers={"kid": self._signing_kid, "typ": None})
        return token, datetime.datetime.fromtimestamp(expires, tz=datetime.UTC)

    def validate_token(self, token: str, *, audiences: Sequence[str] | None = None,
                       now: float | None = None) -> Claims:
        """The verified claims of ``token``, or a :class:`TokenError` subclass.

        ``audiences`` are the ones the request targets (default ``api_audiences``); the
        token must share at least one. Storage checks are the caller's, with
        :func:`bound_refs` / :func:`check_bound_objects`.
        """
        moment = time.time() if now is None else now
        claims = self._verified_claims(token, moment)
        if moment > claims["exp"] + LEEWAY_SECONDS:
            raise TokenExpiredError("service account token has expired")
        if "nbf" in claims and moment < claims["nbf"] - LEEWAY_SECONDS:
            raise TokenNotYetValidError("service account token is not valid yet")
        token_audiences = claims.get("aud") or list(self.api_audiences)
        if isinstance(token_audiences, str):
            token_audiences = [token_audiences]
        wanted = list(audiences if audiences is not None else self.api_audiences)
        if not set(token_audiences) & set(wanted):
            raise TokenAudienceError(f"token audiences {_go_quote_list(token_audiences)} is "
                                     f"invalid for the target audiences "
                                     f"{_go_quote_list(wanted)}")
        return claims

    def _verified_claims(self, token: str, moment: float) -> Claims:
        digest = hashlib.sha256(token.encode()).digest()
        entry = self._cache.get(digest)
        if entry is not None:
            self.stats.hits += 1
            if entry.expires + LEEWAY_SECONDS < moment:
                del self._cache[digest]  # the caller's expiry check refuses it next
            else:
                self._cache.move_to_end(digest)
            return entry.claims
        self.stats.misses += 1
        claims = self._verify(token)
        self._cache[digest] = _CacheEntry(claims, float(claims["exp"]))
        self._cache.move_to_end(digest)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return claims

    def _verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise TokenMalformedError(f"token is not a valid JWT: {error}") from None
        if unverified.get("iss") not in self.issuers:
            raise TokenIssuerError(f'token issuer "{unverified.get("iss")}" is invalid')
        kid = header.get("kid") or ""
        keys = [self._keys[kid]] if kid in self._keys else [] if kid else self.public_keys
        if not keys:
            raise TokenSignatureError("invalid signature, no keys found")
        for key in keys:
            try:
                return jwt.decode(token, key, algorithms=[ALGORITHM], options={
                    "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                    "verify_aud": False, "verify_iss": False,
                    "require": ["exp", "iss", "sub", "kubernetes.io"]})
            except jwt.MissingRequiredClaimError as error:
                raise TokenMalformedError(str(error)) from None
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as error:
                raise TokenMalformedError(f"token is not a valid JWT: {error}") from None
        raise TokenSignatureError("service account token signature is invalid")
