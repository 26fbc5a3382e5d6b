"""ServiceAccount tokens: kube's claims, kid, verification failures, cache and JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apiserver.auth.serviceaccount import (
    EXTRA_CREDENTIAL_ID,
    EXTRA_NODE_NAME,
    EXTRA_POD_NAME,
    EXTRA_POD_UID,
    BoundObject,
    ObjectRef,
    TokenAudienceError,
    TokenAuthority,
    TokenExpiredError,
    TokenInvalidatedError,
    TokenIssuerError,
    TokenMalformedError,
    TokenNotYetValidError,
    TokenSignatureError,
    bound_refs,
    check_bound_objects,
    key_id,
    load_or_create_signing_key,
    load_verification_keys,
    openid_configuration,
    user_from_claims,
)

ISSUER = "https://kubernetes.default.svc.cluster.local"
NOW = 1_700_000_000


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def authority(signing_key) -> TokenAuthority:
    return TokenAuthority(signing_key=signing_key, issuers=[ISSUER])


def issue(authority, **kwargs):
    kwargs.setdefault("audiences", [ISSUER])
    kwargs.setdefault("expiration_seconds", 3600)
    kwargs.setdefault("now", NOW)
    return authority.issue_token("default", "builder", "sa-uid", **kwargs)


def b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_bound_token_claims_match_kube(authority, signing_key):
    token, expiration = issue(authority, bound_object=BoundObject("Pod", "web-1", "pod-uid"),
                              node=ObjectRef("node-a", "node-uid"))
    header_part, payload_part, _ = token.split(".")
    header = b64url_json(header_part)
    assert header == {"alg": "RS256", "kid": key_id(signing_key.public_key())}
    claims = b64url_json(payload_part)
    assert list(claims) == sorted(claims)
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "system:serviceaccount:default:builder"
    assert claims["aud"] == [ISSUER]  # always an array, even with one audience
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW, NOW + 3600)
    assert len(claims["jti"]) == 36
    assert claims["kubernetes.io"] == {
        "namespace": "default",
        "serviceaccount": {"name": "builder", "uid": "sa-uid"},
        "pod": {"name": "web-1", "uid": "pod-uid"},
        "node": {"name": "node-a", "uid": "node-uid"},
    }
    assert int(expiration.timestamp()) == NOW + 3600
    assert expiration.utcoffset().total_seconds() == 0


def test_kid_is_base64url_sha256_of_der_public_key(signing_key):
    der = signing_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert key_id(signing_key.public_key()) == expected
    assert "=" not in expected and len(expected) == 43


def test_validate_round_trip_and_user(authority):
    token, _ = issue(authority, bound_object=BoundObject("Pod", "web-1", "pod-uid"),
                     node=ObjectRef("node-a", "node-uid"))
    claims = authority.validate_token(token, now=NOW + 10)
    user, extra = user_from_claims(claims)
    assert user.name == "system:serviceaccount:default:builder"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:default",
                           "system:authenticated")
    assert user.uid == "sa-uid"
    assert extra[EXTRA_POD_NAME] == ["web-1"] and extra[EXTRA_POD_UID] == ["pod-uid"]
    assert extra[EXTRA_NODE_NAME] == ["node-a"]
    assert extra[EXTRA_CREDENTIAL_ID] == [f"JTI={claims['jti']}"]


def test_expired_and_not_yet_valid_with_kube_leeway(authority):
    token, _ = issue(authority, expiration_seconds=600)
    assert authority.validate_token(token, now=NOW + 600 + 59)  # inside the 60 s leeway
    with pytest.raises(TokenExpiredError, match="service account token has expired"):
        authority.validate_token(token, now=NOW + 600 + 61)
    with pytest.raises(TokenNotYetValidError, match="not valid yet"):
        authority.validate_token(token, now=NOW - 120)


def test_tampered_token_is_refused(authority):
    token, _ = issue(authority)
    header, payload, signature = token.split(".")
    claims = b64url_json(payload)
    claims["sub"] = "system:serviceaccount:kube-system:admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenSignatureError):
        authority.validate_token(f"{header}.{forged}.{signature}", now=NOW)
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(TokenSignatureError):
        authority.validate_token(f"{header}.{payload}.{flipped}", now=NOW)


def test_token_signed_by_another_key_is_refused(authority):
    stranger = TokenAuthority(signing_key=rsa.generate_private_key(65537, 2048),
                              issuers=[ISSUER])
    token, _ = issue(stranger)
    with pytest.raises(TokenSignatureError, match="no keys found"):
        authority.validate_token(token, now=NOW)


def test_wrong_audience_and_issuer_and_garbage(authority):
    token, _ = issue(authority, audiences=["vault"])
    with pytest.raises(TokenAudienceError) as caught:
        authority.validate_token(token, now=NOW)
    assert str(caught.value) == (f'token audiences ["vault"] is invalid for the target '
                                 f'audiences ["{ISSUER}"]')
    assert authority.validate_token(token, audiences=["vault", "other"], now=NOW)
    foreign = TokenAuthority(signing_key=authority.signing_key, issuers=["https://elsewhere"])
    other_token, _ = issue(foreign)
    with pytest.raises(TokenIssuerError, match='token issuer "https://elsewhere" is invalid'):
        authority.validate_token(other_token, now=NOW)
    with pytest.raises(TokenMalformedError):
        authority.validate_token("not-a-jwt", now=NOW)


def test_cache_skips_signature_verification_but_not_time_or_audience(authority, monkeypatch):
    token, _ = issue(authority)
    authority.validate_token(token, now=NOW)
    assert (authority.stats.hits, authority.stats.misses) == (0, 1)

    def no_decoding(*args, **kwargs):
        raise AssertionError("signature verified again")

    monkeypatch.setattr(jwt, "decode", no_decoding)
    assert authority.validate_token(token, now=NOW + 5)["sub"].endswith(":builder")
    assert authority.stats.hits == 1
    with pytest.raises(TokenAudienceError):
        authority.validate_token(token, audiences=["vault"], now=NOW + 5)
    with pytest.raises(TokenExpiredError):
        authority.validate_token(token, now=NOW + 7200)


def test_cache_is_bounded(signing_key):
    authority = TokenAuthority(signing_key=signing_key, issuers=[ISSUER], cache_size=2)
    tokens = [issue(authority)[0] for _ in range(3)]
    for token in tokens:
        authority.validate_token(token, now=NOW)
    authority.validate_token(tokens[0], now=NOW)  # evicted: verified again
    assert authority.stats.misses == 4


def test_jwks_document_alone_verifies_a_token_with_pyjwt(authority):
    token, _ = issue(authority)
    document = json.loads(json.dumps(authority.jwks()))
    [jwk] = document["keys"]
    assert list(jwk) == ["use", "kty", "kid", "alg", "n", "e"]
    assert (jwk["use"], jwk["kty"], jwk["alg"], jwk["e"]) == ("sig", "RSA", "RS256", "AQAB")
    key_set = jwt.PyJWKSet.from_dict(document)
    kid = jwt.get_unverified_header(token)["kid"]
    public = next(key for key in key_set.keys if key.key_id == kid)
    claims = jwt.decode(token, public.key, algorithms=["RS256"], audience=ISSUER,
                        issuer=ISSUER, options={"verify_exp": False, "verify_iat": False,
                                                "verify_nbf": False})
    assert claims["sub"] == "system:serviceaccount:default:builder"


def test_openid_configuration_like_kube(authority):
    assert authority.openid_configuration(external_address="10.0.0.1:6443") == {
        "issuer": ISSUER,
        "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    with pytest.raises(ValueError, match="issuer URL must use https scheme"):
        openid_configuration("http://insecure", jwks_uri="https://x/openid/v1/jwks")
    with pytest.raises(ValueError, match="either the JWKS URI or the default external"):
        openid_configuration(ISSUER)


def test_signing_key_generated_once_and_reloaded(tmp_path):
    path = tmp_path / "pki" / "sa.key"
    key = load_or_create_signing_key(path)
    assert key.key_size == 2048
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key_id(load_or_create_signing_key(path).public_key()) == key_id(key.public_key())
    [public] = load_verification_keys(tmp_path / "pki" / "sa.pub")
    assert key_id(public) == key_id(key.public_key())
    assert len(load_verification_keys(path)) == 1  # a private key file works too


def test_extra_verification_keys_accept_old_tokens(signing_key):
    old = TokenAuthority(signing_key=rsa.generate_private_key(65537, 2048), issuers=[ISSUER])
    token, _ = issue(old)
    rotated = TokenAuthority(signing_key=signing_key, issuers=[ISSUER],
                             verification_keys=[old.signing_key.public_key()])
    assert rotated.validate_token(token, now=NOW)["iss"] == ISSUER
    assert len(rotated.jwks()["keys"]) == 2


# --- the storage hooks ------------------------------------------------------------------

def stored(uid: str, deleted: str | None = None) -> dict:
    meta = {"uid": uid}
    if deleted:
        meta["deletionTimestamp"] = deleted
    return {"metadata": meta}


def test_bound_object_checks(authority):
    token, _ = issue(authority, bound_object=BoundObject("Pod", "web-1", "pod-uid"))
    claims = authority.validate_token(token, now=NOW)
    refs = bound_refs(claims)
    assert (refs.namespace, refs.service_account, refs.pod) == (
        "default", ObjectRef("builder", "sa-uid"), ObjectRef("web-1", "pod-uid"))
    check_bound_objects(claims, service_account=stored("sa-uid"), pod=stored("pod-uid"), now=NOW)
    with pytest.raises(TokenInvalidatedError, match=r"service account UID \(new\) does not "
                                                    r"match claim \(sa-uid\)"):
        check_bound_objects(claims, service_account=stored("new"), pod=stored("pod-uid"),
                            now=NOW)
    with pytest.raises(TokenInvalidatedError, match="has been invalidated"):
        check_bound_objects(claims, service_account=stored("sa-uid"), pod=None, now=NOW)
    with pytest.raises(TokenInvalidatedError, match=r"pod UID \(other\) does not match"):
        check_bound_objects(claims, service_account=stored("sa-uid"), pod=stored("other"),
                            now=NOW)
    # Deleted, but within the leeway: still valid; long ago: invalid.
    check_bound_objects(claims, service_account=stored("sa-uid"),
                        pod=stored("pod-uid", "2023-11-14T22:13:00Z"), now=NOW)
    with pytest.raises(TokenInvalidatedError, match="has been invalidated"):
        check_bound_objects(claims, service_account=stored("sa-uid"),
                            pod=stored("pod-uid", "2023-11-14T20:00:00Z"), now=NOW)
    with pytest.raises(TokenInvalidatedError, match="not found"):
        check_bound_objects(claims, service_account=None, now=NOW)


def test_bound_object_kinds_are_checked():
    with pytest.raises(ValueError, match="only Pod, Secret and Node"):
        BoundObject("ConfigMap", "x", "y")
