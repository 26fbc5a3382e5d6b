"""Bearer-token authentication of ServiceAccount JWTs with their bound-object checks, and
the union of token authenticators (static token file first, then ServiceAccount tokens)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from apiserver.auth.authn import Authenticator, InvalidTokenError, UserInfo
from apiserver.auth.serviceaccount import BoundObject, ObjectRef, TokenAuthority
from apiserver.auth.tokens import ServiceAccountTokenAuthenticator

ISSUER = "https://kubernetes.default.svc.cluster.local"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def obj(name: str, uid: str, **meta) -> dict:
    return {"metadata": {"name": name, "uid": uid, **meta}}


@pytest.fixture
def world() -> dict:
    return {("serviceaccounts", "ns", "default"): obj("default", "sa-1"),
            ("pods", "ns", "web"): obj("web", "pod-1"),
            ("nodes", None, "n1"): obj("n1", "node-1")}


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(KEY, [ISSUER])


@pytest.fixture
def authenticator(world, authority) -> ServiceAccountTokenAuthenticator:
    return ServiceAccountTokenAuthenticator(
        authority, lambda plural, ns, name: world.get((plural, ns, name)))


def issue(authority: TokenAuthority, **kwargs) -> str:
    token, _ = authority.issue_token("ns", "default", "sa-1", audiences=kwargs.pop("aud", []),
                                     expiration_seconds=3600, **kwargs)
    return token


def test_a_valid_token_is_the_service_account_user(authenticator, authority):
    response = authenticator.authenticate_token(issue(authority))
    assert response is not None
    assert response.user == UserInfo(
        name="system:serviceaccount:ns:default",
        groups=("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"),
        uid="sa-1")
    assert response.audiences == (ISSUER,)


def test_a_pod_bound_token_carries_the_pod_and_node_and_dies_with_the_pod(
        authenticator, authority, world):
    token = issue(authority, bound_object=BoundObject("Pod", "web", "pod-1"),
                  node=ObjectRef("n1", "node-1"))
    response = authenticator.authenticate_token(token)
    assert response.extra["authentication.kubernetes.io/pod-name"] == ["web"]
    assert response.extra["authentication.kubernetes.io/node-name"] == ["n1"]

    world[("pods", "ns", "web")] = obj("web", "pod-2")  # deleted and recreated
    with pytest.raises(InvalidTokenError, match="pod UID"):
        authenticator.authenticate_token(token)
    del world[("pods", "ns", "web")]
    with pytest.raises(InvalidTokenError, match="service account token has been invalidated"):
        authenticator.authenticate_token(token)


def test_a_deleted_service_account_invalidates_its_tokens(authenticator, authority, world):
    token = issue(authority)
    del world[("serviceaccounts", "ns", "default")]
    with pytest.raises(InvalidTokenError, match='serviceaccounts "default" not found'):
        authenticator.authenticate_token(token)


def test_wrong_audience_expired_and_tampered_tokens_are_refused(authenticator, authority):
    with pytest.raises(InvalidTokenError, match="token audiences"):
        authenticator.authenticate_token(issue(authority, aud=["vault"]))
    expired, _ = authority.issue_token("ns", "default", "sa-1", audiences=[],
                                       expiration_seconds=600, now=1_000_000)
    with pytest.raises(InvalidTokenError, match="expired"):
        authenticator.authenticate_token(expired)
    header, payload, signature = issue(authority).split(".")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    with pytest.raises(InvalidTokenError, match="signature"):
        authenticator.authenticate_token(f"{header}.{payload}.{flipped}")


def test_other_issuers_and_non_jwts_are_not_ours(authenticator):
    other = TokenAuthority(KEY, ["https://elsewhere.example"])
    assert authenticator.authenticate_token(issue(other)) is None
    assert authenticator.authenticate_token("not-a-jwt") is None


def test_the_union_tries_the_token_file_then_service_account_tokens(
        authenticator, authority, tmp_path):
    token_file = tmp_path / "tokens.csv"
    token_file.write_text('static-token,alice,u1,"devs"\n')
    union = Authenticator(token_file=token_file, token_authenticators=[authenticator])
    assert union.authenticate_token("static-token").user == UserInfo(
        "alice", ("devs", "system:authenticated"), "u1")
    assert union.authenticate_token(issue(authority)).user.name == \
        "system:serviceaccount:ns:default"
    with pytest.raises(InvalidTokenError, match=r"^invalid bearer token$"):
        union.authenticate_token("nobody")
    with pytest.raises(InvalidTokenError,
                       match=r"^\[invalid bearer token, token audiences \[\"vault\"\]"):
        union.authenticate_token(issue(authority, aud=["vault"]))
