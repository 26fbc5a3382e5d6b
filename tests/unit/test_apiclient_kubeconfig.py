"""Kubeconfig loading like kubectl, and a real mutual-TLS request with the result."""

import base64
import datetime
import ipaddress
import ssl

import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apiclient.client import ApiClient
from apiclient.errors import TransportError
from apiclient.kubeconfig import KubeconfigError, load_kubeconfig
from apiclient.resources import NODES


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert(subject_cn, key, *, issuer=None, issuer_key=None, ca=False, server=False):
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_pem = _cert("keel-test-ca", ca_key, ca=True)
    ca = x509.load_pem_x509_certificate(ca_pem)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "ca": ca_pem,
        "other_ca": _cert("keel-other-ca", other_ca_key, ca=True),
        "server_cert": _cert("127.0.0.1", server_key, issuer=ca, issuer_key=ca_key, server=True),
        "server_key": _pem_key(server_key),
        "client_cert": _cert("keel-admin", client_key, issuer=ca, issuer_key=ca_key),
        "client_key": _pem_key(client_key),
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(path, *, cluster, user, contexts=None, current="main"):
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c1", "cluster": cluster}],
        "users": [{"name": "u1", "user": user}],
        "contexts": contexts
        or [{"name": "main", "context": {"cluster": "c1", "user": "u1", "namespace": "team"}}],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_inline_data_and_context_namespace(tmp_path, pki):
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": "https://127.0.0.1:6443/", "certificate-authority-data": b64(pki["ca"])},
        user={
            "client-certificate-data": b64(pki["client_cert"]),
            "client-key-data": b64(pki["client_key"]),
        },
    )
    config = load_kubeconfig(path)
    assert config.server == "https://127.0.0.1:6443"
    assert config.ca_data == pki["ca"]
    assert config.client_cert_data == pki["client_cert"]
    assert config.namespace == "team"
    assert config.context == "main"
    context = config.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_relative_files_resolve_against_the_kubeconfig_folder(tmp_path, pki, monkeypatch):
    folder = tmp_path / "conf"
    (folder / "pki").mkdir(parents=True)
    (folder / "pki" / "ca.crt").write_bytes(pki["ca"])
    (folder / "pki" / "admin.crt").write_bytes(pki["client_cert"])
    (folder / "pki" / "admin.key").write_bytes(pki["client_key"])
    (folder / "token").write_text("abc123\n")
    path = write_kubeconfig(
        folder / "admin.kubeconfig",
        cluster={"server": "https://127.0.0.1:6443", "certificate-authority": "pki/ca.crt"},
        user={
            "client-certificate": "pki/admin.crt",
            "client-key": "pki/admin.key",
            "tokenFile": "token",
        },
    )
    monkeypatch.chdir(tmp_path)  # not the kubeconfig's folder
    config = load_kubeconfig(path)
    assert config.ca_data == pki["ca"]
    assert config.client_key_data == pki["client_key"]
    assert config.token == "abc123"


def test_kubeconfig_env_first_file_then_home(tmp_path, monkeypatch):
    first = write_kubeconfig(
        tmp_path / "first", cluster={"server": "http://127.0.0.1:1"}, user={"token": "t1"}
    )
    second = write_kubeconfig(
        tmp_path / "second", cluster={"server": "http://127.0.0.1:2"}, user={"token": "t2"}
    )
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert load_kubeconfig().server == "http://127.0.0.1:1"

    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(
        tmp_path / ".kube" / "config", cluster={"server": "http://127.0.0.1:3"}, user={}
    )
    config = load_kubeconfig()
    assert config.server == "http://127.0.0.1:3"
    assert config.token is None


def test_context_argument_overrides_current_context(tmp_path):
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": "http://127.0.0.1:1"},
        user={"token": "t"},
        contexts=[
            {"name": "main", "context": {"cluster": "c1", "user": "u1"}},
            {"name": "other", "context": {"cluster": "c1", "user": "u1", "namespace": "x"}},
        ],
    )
    assert load_kubeconfig(path).namespace == "default"
    assert load_kubeconfig(path, context="other").namespace == "x"


@pytest.mark.parametrize(
    ("cluster", "user", "current", "message"),
    [
        ({"server": "https://h"}, {}, "nope", "no entry named 'nope' in contexts"),
        ({}, {}, "main", "cluster 'c1' has no server"),
        (
            {"server": "https://h", "certificate-authority": "missing.crt"},
            {},
            "main",
            "cannot read cluster 'c1' certificate-authority",
        ),
        ({"server": "https://h"}, {"client-certificate-data": "aGk="}, "main", "not both"),
        (
            {"server": "https://h", "certificate-authority-data": "!!"},
            {},
            "main",
            "not valid base64",
        ),
        ({"server": "https://h"}, {"tokenFile": "/nonexistent/token"}, "main", "tokenFile"),
        ({"server": "https://h"}, {}, "", "no current-context"),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path, cluster, user, current, message):
    path = write_kubeconfig(tmp_path / "config", cluster=cluster, user=user, current=current)
    with pytest.raises(KubeconfigError, match=message) as caught:
        load_kubeconfig(path)
    assert str(path) in str(caught.value)


def test_missing_or_garbage_file(tmp_path):
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        load_kubeconfig(tmp_path / "absent")
    (tmp_path / "garbage").write_text("- just\n- a list\n")
    with pytest.raises(KubeconfigError, match="not a kubeconfig"):
        load_kubeconfig(tmp_path / "garbage")


@pytest.fixture
async def tls_server(tmp_path, pki):
    (tmp_path / "srv.crt").write_bytes(pki["server_cert"])
    (tmp_path / "srv.key").write_bytes(pki["server_key"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki["ca"].decode())
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")

    async def node(request):
        peer = request.transport.get_extra_info("peercert")
        common_name = dict(item[0] for item in peer["subject"])["commonName"]
        return web.json_response({"kind": "Node", "metadata": {"name": common_name}})

    app = web.Application()
    app.router.add_get("/api/v1/nodes/n1", node)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    await runner.cleanup()


async def test_mutual_tls_request_with_a_loaded_kubeconfig(tmp_path, pki, tls_server):
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": tls_server, "certificate-authority-data": b64(pki["ca"])},
        user={
            "client-certificate-data": b64(pki["client_cert"]),
            "client-key-data": b64(pki["client_key"]),
        },
    )
    async with ApiClient.from_kubeconfig(path) as client:
        node = await client.get(NODES, "n1")
    assert node["metadata"]["name"] == "keel-admin"  # the server saw our client certificate


async def test_server_signed_by_another_ca_is_refused(tmp_path, pki, tls_server):
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": tls_server, "certificate-authority-data": b64(pki["other_ca"])},
        user={
            "client-certificate-data": b64(pki["client_cert"]),
            "client-key-data": b64(pki["client_key"]),
        },
    )
    async with ApiClient.from_kubeconfig(path) as client:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(NODES, "n1")


def test_bad_pem_is_a_kubeconfig_error(tmp_path, pki):
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(b"junk")},
        user={},
    )
    with pytest.raises(KubeconfigError, match="certificate authority is not a PEM"):
        ApiClient.from_kubeconfig(path)
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(pki["ca"])},
        user={
            "client-certificate-data": b64(pki["client_cert"]),
            "client-key-data": b64(pki["server_key"]),  # the wrong key
        },
    )
    with pytest.raises(KubeconfigError, match="not a matching PEM pair"):
        ApiClient.from_kubeconfig(path)
