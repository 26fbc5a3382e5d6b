"""ServiceAccounts, bound tokens, TokenReview and issuer discovery against a real
``keelson apiserver`` running its controllers: what ``kubectl create token`` hands out
authenticates (until its pod or ServiceAccount is gone), verifies with the published JWKS,
and nothing expired, tampered or meant for someone else gets in."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import jwt
import pytest

from apiserver.auth.serviceaccount import TokenAuthority, load_or_create_signing_key
from tests.support.apiserver import ApiServer, running_apiserver, unique
from tests.support.cluster import wait_for

ISSUER = "https://kubernetes.default.svc.cluster.local"
IMAGE = "localhost/keelson/busybox:1"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with running_apiserver(tmp_path_factory.mktemp("serviceaccounts"),
                           controllers=True) as running:
        yield running


def account_exists(server: ApiServer, namespace: str, name: str) -> bool:
    return server.http("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")[0] \
        == 200


@pytest.fixture
def ns(server: ApiServer) -> Iterator[str]:
    name = unique()
    server.kubectl("create", "namespace", name)
    wait_for(lambda: account_exists(server, name, "default"), timeout=15,
             what=f"the default ServiceAccount in {name}")
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


def as_bearer(server: ApiServer, token: str, path: str = "/api") -> int:
    return server.http("GET", path, authenticated=False,
                       headers={"Authorization": f"Bearer {token}"})[0]


def review(server: ApiServer, token: str, audiences: list[str] | None = None) -> dict:
    spec: dict = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    code, _, body = server.http("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
    assert code == 201, body
    return body["status"]


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def create_token(server: ApiServer, ns: str, *args: str) -> str:
    return server.kubectl("create", "token", "-n", ns, *args).stdout.strip()


def test_every_namespace_gets_a_default_account_and_the_root_ca(server: ApiServer,
                                                                ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"
    wait_for(lambda: server.http("GET", path)[0] == 200, timeout=15, what="kube-root-ca.crt")
    configmap = server.http("GET", path)[2]
    assert configmap["data"] == {"ca.crt": (server.data_dir / "pki" / "ca.crt").read_text()}
    table = server.kubectl("get", "serviceaccounts", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "SECRETS", "AGE"]
    assert table[1].split()[:2] == ["default", "0"]

    server.kubectl("delete", "serviceaccount", "default", "-n", ns)
    wait_for(lambda: account_exists(server, ns, "default"), timeout=15,
             what="the default ServiceAccount to come back")


def test_pods_get_the_default_account_and_the_api_access_volume(server: ApiServer,
                                                                ns: str) -> None:
    server.kubectl("run", "web", "-n", ns, f"--image={IMAGE}", "--restart=Never")
    pod = json.loads(server.kubectl("get", "pod", "web", "-n", ns, "-o", "json").stdout)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default"
    (volume,) = spec["volumes"]
    assert volume["name"].startswith("kube-api-access-")
    assert volume["projected"]["defaultMode"] == 420
    assert [list(source) for source in volume["projected"]["sources"]] == [
        ["serviceAccountToken"], ["configMap"], ["downwardAPI"]]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": volume["name"], "readOnly": True, "mountPath": TOKEN_PATH}]

    opted_out = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "quiet"},
                 "spec": {"automountServiceAccountToken": False,
                          "containers": [{"name": "c", "image": IMAGE}]}}
    code, _, created = server.http("POST", f"/api/v1/namespaces/{ns}/pods", opted_out)
    assert code == 201 and "volumes" not in created["spec"]

    code, _, body = server.http("POST", f"/api/v1/namespaces/{ns}/pods", {
        **opted_out, "metadata": {"name": "ghost"},
        "spec": {"serviceAccountName": "ghost", "containers": [{"name": "c", "image": IMAGE}]}})
    assert code == 403
    assert body["message"] == (f'pods "ghost" is forbidden: error looking up service account '
                               f'{ns}/ghost: serviceaccount "ghost" not found')


def test_kubectl_create_token_authenticates_and_reviews(server: ApiServer, ns: str) -> None:
    token = create_token(server, ns, "default", "--duration", "10m")
    claims = claims_of(token)
    assert claims["exp"] - claims["iat"] == 600
    assert claims["iss"] == ISSUER and claims["aud"] == [ISSUER]
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"

    assert as_bearer(server, token) == 200
    status = review(server, token)
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{ns}:default"
    assert status["user"]["groups"] == ["system:serviceaccounts",
                                        f"system:serviceaccounts:{ns}", "system:authenticated"]
    assert status["audiences"] == [ISSUER]


def test_the_published_jwks_verifies_the_token(server: ApiServer, ns: str) -> None:
    discovery = server.http("GET", "/.well-known/openid-configuration")[2]
    assert discovery["issuer"] == ISSUER
    assert discovery["jwks_uri"].endswith("/openid/v1/jwks")
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    code, headers, keys = server.http("GET", "/openid/v1/jwks")
    assert code == 200 and headers["Content-Type"].startswith("application/jwk-set+json")

    token = create_token(server, ns, "default")
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [key for key in keys["keys"] if key["kid"] == kid]
    verified = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience=ISSUER,
                          issuer=ISSUER)
    assert verified["kubernetes.io"]["namespace"] == ns
    assert as_bearer(server, token, "/openid/v1/jwks") == 200
    assert server.http("GET", "/openid/v1/jwks", authenticated=False)[0] == 401


def test_a_pod_bound_token_stops_working_when_the_pod_is_deleted(server: ApiServer,
                                                                  ns: str) -> None:
    server.kubectl("run", "holder", "-n", ns, f"--image={IMAGE}", "--restart=Never")
    token = create_token(server, ns, "default", "--bound-object-kind", "Pod",
                         "--bound-object-name", "holder")
    bound = claims_of(token)["kubernetes.io"]
    pod_uid = json.loads(server.kubectl("get", "pod", "holder", "-n", ns, "-o",
                                        "json").stdout)["metadata"]["uid"]
    assert bound["pod"] == {"name": "holder", "uid": pod_uid}
    assert as_bearer(server, token) == 200
    assert review(server, token)["user"]["extra"]["authentication.kubernetes.io/pod-name"] \
        == ["holder"]

    server.kubectl("delete", "pod", "holder", "-n", ns, "--grace-period=0", "--wait=false")
    wait_for(lambda: as_bearer(server, token) == 401, timeout=15,
             what="the pod's token to be refused")
    refused = review(server, token)
    assert refused.get("authenticated") is not True
    assert "service account token has been invalidated" in refused["error"]


def test_a_token_dies_with_its_service_account(server: ApiServer, ns: str) -> None:
    server.kubectl("create", "serviceaccount", "robot", "-n", ns)
    token = create_token(server, ns, "robot")
    assert as_bearer(server, token) == 200
    server.kubectl("delete", "serviceaccount", "robot", "-n", ns)
    wait_for(lambda: as_bearer(server, token) == 401, timeout=15,
             what="the robot's token to be refused")
    server.kubectl("create", "serviceaccount", "robot", "-n", ns)  # a namesake: new uid
    assert as_bearer(server, token) == 401


def test_expired_tampered_and_foreign_audience_tokens_are_401(server: ApiServer,
                                                              ns: str) -> None:
    account = json.loads(server.kubectl("get", "sa", "default", "-n", ns, "-o",
                                        "json").stdout)
    # Signed with the server's own key, but an hour and a half ago for 10 minutes.
    authority = TokenAuthority(load_or_create_signing_key(server.data_dir / "pki" / "sa.key"),
                               [ISSUER])
    expired, _ = authority.issue_token(ns, "default", account["metadata"]["uid"], audiences=[],
                                       expiration_seconds=600, now=time.time() - 5400)
    assert as_bearer(server, expired) == 401
    assert "service account token has expired" in review(server, expired)["error"]

    good = create_token(server, ns, "default")
    header, _, signature = good.split(".")
    forged_claims = {**claims_of(good), "sub": f"system:serviceaccount:{ns}:admin"}
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    assert as_bearer(server, f"{header}.{forged}.{signature}") == 401
    assert as_bearer(server, good[:-6] + ("A" * 6 if not good.endswith("A" * 6) else "B" * 6)) \
        == 401

    vault = create_token(server, ns, "default", "--audience", "vault")
    assert as_bearer(server, vault) == 401
    assert review(server, vault, ["vault"])["authenticated"] is True
    assert "token audiences" in review(server, vault)["error"]
    assert as_bearer(server, good) == 200


def test_token_request_rules(server: ApiServer, ns: str) -> None:
    short = server.kubectl("create", "token", "default", "-n", ns, "--duration", "1m",
                           check=False)
    assert short.returncode != 0
    assert 'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: ' \
           "Invalid value: 60: may not specify a duration less than 10 minutes" in short.stderr
    missing = server.kubectl("create", "token", "nobody", "-n", ns, check=False)
    assert 'serviceaccounts "nobody" not found' in missing.stderr

    path = f"/api/v1/namespaces/{ns}/serviceaccounts/default/token"
    code, _, body = server.http("POST", path, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1",
                                    "name": "kube-root-ca.crt"}}})
    assert code == 400
    assert body["message"] == "cannot bind token to object of type /v1, Kind=ConfigMap"
    code, _, body = server.http("POST", path, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    assert code == 201
    assert body["spec"] == {"audiences": [ISSUER], "expirationSeconds": 3600}
    assert body["status"]["token"] and body["status"]["expirationTimestamp"].endswith("Z")

    assert server.http("GET", "/apis/authentication.k8s.io/v1/tokenreviews")[0] == 405
