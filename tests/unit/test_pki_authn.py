"""PKI and authentication against a real aiohttp HTTPS server on 127.0.0.1.

Every test talks TLS to a server built from :func:`server_ssl_context` and
:func:`auth_middleware`, the way the apiserver wires them, and asserts what a client sees:
the status code, the Status body and the identity the server derived.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import shutil
import ssl
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from apiserver.auth.authn import (
    USER,
    Authenticator,
    UserInfo,
    auth_middleware,
    load_token_file,
)
from apiserver.auth.pki import (
    PKI,
    ensure_admin_kubeconfig,
    ensure_client_kubeconfig,
    ensure_pki,
    issue_client_cert,
    node_addresses,
    server_ssl_context,
)

TOKEN = "kt-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keelson-data")


@pytest.fixture(scope="module")
def pki(pki_dir) -> PKI:
    return ensure_pki(pki_dir, hostnames=["kt-node"], ips=["10.96.0.1", "192.0.2.10"])


@pytest.fixture
def token_file(tmp_path) -> Path:
    path = tmp_path / "tokens.csv"
    path.write_text(f'{TOKEN},alice,uid-alice,"dev,ops"\n\nkt-other,bob,uid-bob\n')
    return path


@pytest.fixture
async def server_url(pki, token_file):
    """An HTTPS server answering ``/whoami`` with the authenticated identity."""

    async def whoami(request: web.Request) -> web.Response:
        user: UserInfo | None = request.get(USER)
        if user is None:
            return web.json_response({"anonymous": True})
        return web.json_response({"name": user.name, "groups": list(user.groups), "uid": user.uid})

    app = web.Application(middlewares=[auth_middleware(Authenticator(token_file=token_file))])
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/{tail:.*}", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(pki))
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def client_context(
    ca: Path, *, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def get(
    url: str, context: ssl.SSLContext, *, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context, headers=headers or {}) as response,
    ):
        return response.status, await response.json(content_type=None)


UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


# --- PKI files ---------------------------------------------------------------------------


def test_ensure_pki_writes_ca_serving_and_admin_certs(pki):
    for key_path in (pki.ca_key, pki.serving_key, pki.admin_key):
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) >= {
        "localhost",
        "kt-node",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {
        "127.0.0.1",
        "::1",
        "10.96.0.1",
        "192.0.2.10",
    }
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "kubernetes-admin"
    )
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )


def test_ensure_pki_is_idempotent_and_reissues_serving_cert_for_new_addresses(tmp_path):
    first = ensure_pki(tmp_path, hostnames=["kt-node"], ips=["192.0.2.10"])
    before = {path: path.read_bytes() for path in vars(first).values()}
    second = ensure_pki(tmp_path, hostnames=["kt-node"], ips=["192.0.2.10"])
    assert second == first
    assert {path: path.read_bytes() for path in vars(second).values()} == before

    ensure_pki(tmp_path, hostnames=["kt-node"], ips=["192.0.2.10", "192.0.2.11"])
    assert first.ca_cert.read_bytes() == before[first.ca_cert]
    assert first.ca_key.read_bytes() == before[first.ca_key]
    assert first.admin_cert.read_bytes() == before[first.admin_cert]
    serving = x509.load_pem_x509_certificate(first.serving_cert.read_bytes())
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.0.2.11") in san.get_values_for_type(x509.IPAddress)


def test_node_addresses_are_real_non_loopback_ips():
    addresses = node_addresses()
    assert len(addresses) == len(set(addresses))
    for address in addresses:
        assert not ipaddress.ip_address(address).is_loopback


# --- authentication over real TLS --------------------------------------------------------


async def test_admin_client_cert_authenticates_as_kubernetes_admin(pki, server_url):
    context = client_context(pki.ca_cert, cert=pki.admin_cert, key=pki.admin_key)
    status, body = await get(f"{server_url}/whoami", context)
    assert status == 200
    assert body["name"] == "kubernetes-admin"
    assert body["groups"] == ["system:masters", "system:authenticated"]


def test_component_kubeconfig_has_its_own_identity_and_is_reused(tmp_path):
    pki = ensure_pki(tmp_path, hostnames=[], ips=[])
    path = ensure_client_kubeconfig(tmp_path, pki, port=7443, name="scheduler",
                                    user="system:kube-scheduler")
    assert path == tmp_path / "scheduler.kubeconfig"
    config = yaml.safe_load(path.read_text())
    user = config["users"][0]["user"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "system:kube-scheduler"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:7443"
    first = (tmp_path / "pki" / "scheduler.crt").read_bytes()
    ensure_client_kubeconfig(tmp_path, pki, port=7443, name="scheduler",
                             user="system:kube-scheduler")
    assert (tmp_path / "pki" / "scheduler.crt").read_bytes() == first  # kept, not reissued
    ensure_client_kubeconfig(tmp_path, pki, port=7443, name="scheduler",
                             user="system:kube-scheduler", groups=["kt-group"])
    assert (tmp_path / "pki" / "scheduler.crt").read_bytes() != first  # other groups: reissued


async def test_issued_client_cert_carries_user_and_groups(pki, server_url, tmp_path):
    cert_pem, key_pem = issue_client_cert(
        pki, common_name="system:node:kt-node", groups=["system:nodes", "kt-extra"]
    )
    (tmp_path / "node.crt").write_bytes(cert_pem)
    (tmp_path / "node.key").write_bytes(key_pem)
    context = client_context(pki.ca_cert, cert=tmp_path / "node.crt", key=tmp_path / "node.key")
    status, body = await get(f"{server_url}/whoami", context)
    assert status == 200
    assert body["name"] == "system:node:kt-node"
    assert body["groups"] == ["system:nodes", "kt-extra", "system:authenticated"]


async def test_cert_from_another_ca_is_rejected(pki, server_url, tmp_path):
    foreign = ensure_pki(tmp_path / "foreign", hostnames=[], ips=[])
    context = client_context(pki.ca_cert, cert=foreign.admin_cert, key=foreign.admin_key)
    try:
        status, body = await get(f"{server_url}/whoami", context)
    except (aiohttp.ClientError, ssl.SSLError):
        return  # refused in the TLS handshake
    assert (status, body) == (401, UNAUTHORIZED)


async def test_bearer_token_authenticates_without_a_client_cert(pki, server_url):
    status, body = await get(
        f"{server_url}/whoami",
        client_context(pki.ca_cert),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 200
    assert body == {
        "name": "alice",
        "groups": ["dev", "ops", "system:authenticated"],
        "uid": "uid-alice",
    }


@pytest.mark.parametrize("header", [None, "Bearer kt-wrong-token", "Bearer ", f"Basic {TOKEN}"])
async def test_missing_or_bad_credentials_get_401_status(pki, server_url, header):
    headers = {"Authorization": header} if header is not None else None
    status, body = await get(
        f"{server_url}/api/v1/pods", client_context(pki.ca_cert), headers=headers
    )
    assert (status, body) == (401, UNAUTHORIZED)


@pytest.mark.parametrize("path", ["/healthz", "/livez?verbose", "/readyz/ping", "/version"])
async def test_public_paths_need_no_credentials(pki, server_url, path):
    status, body = await get(f"{server_url}{path}", client_context(pki.ca_cert))
    assert (status, body) == (200, {"anonymous": True})


async def test_a_public_path_prefix_is_not_a_public_path(pki, server_url):
    status, _ = await get(f"{server_url}/healthzz", client_context(pki.ca_cert))
    assert status == 401


def test_malformed_token_file_names_the_line(tmp_path):
    path = tmp_path / "tokens.csv"
    path.write_text("kt-good,carol,uid-carol\nkt-bad-line-only-token\n")
    with pytest.raises(ValueError, match=r"tokens\.csv:2: expected"):
        load_token_file(path)


# --- kubeconfig --------------------------------------------------------------------------


async def test_admin_kubeconfig_round_trips_into_a_working_tls_client(
    pki, pki_dir, server_url, tmp_path
):
    port = int(server_url.rsplit(":", 1)[1])
    path = ensure_admin_kubeconfig(pki_dir, pki, port=port)
    assert path == pki_dir / "admin.kubeconfig"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "keelson"
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    assert cluster["server"] == server_url

    (tmp_path / "client.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (tmp_path / "client.key").write_bytes(base64.b64decode(user["client-key-data"]))
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    context.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
    status, body = await get(f"{cluster['server']}/whoami", context)
    assert status == 200
    assert body["name"] == "kubernetes-admin"


async def test_kubectl_accepts_the_admin_kubeconfig(pki, pki_dir, server_url):
    kubectl = Path(sys.executable).parent / "kubectl"
    if not kubectl.exists() and shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    port = int(server_url.rsplit(":", 1)[1])
    path = ensure_admin_kubeconfig(pki_dir, pki, port=port)
    process = await asyncio.create_subprocess_exec(
        str(kubectl if kubectl.exists() else shutil.which("kubectl")),
        "--kubeconfig",
        str(path),
        "get",
        "--raw",
        "/whoami",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout)["name"] == "kubernetes-admin"


def test_a_replaced_ca_reissues_the_certs_it_signs(tmp_path):
    old = ensure_pki(tmp_path, hostnames=[], ips=[])
    old_ca = old.ca_cert.read_bytes()
    old.ca_cert.unlink()
    old.ca_key.unlink()
    new = ensure_pki(tmp_path, hostnames=[], ips=[])
    assert new.ca_cert.read_bytes() != old_ca
    ca = x509.load_pem_x509_certificate(new.ca_cert.read_bytes())
    for cert_path in (new.serving_cert, new.admin_cert):
        x509.load_pem_x509_certificate(cert_path.read_bytes()).verify_directly_issued_by(ca)
