"""Secrets against a real ``keelson apiserver``: kubectl's typed ``create secret`` commands
(protobuf bodies), kube's type validation, and encryption at rest as seen in the SQLite
file with Python's sqlite3 (what ``sqlite3 state.db`` would show), key rotation included."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.apiserver import KEELSON, ApiServer, running_apiserver, unique

PASSWORD = "hunter2-" + "s3cr3t"


def encryption_config(path: Path, *keys: tuple[str, bytes], provider: str = "aesgcm") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {provider: {"keys": [{"name": name, "secret": base64.b64encode(key).decode()}
                                 for name, key in keys]}},
            {"identity": {}}]}]}))
    return path


KEY1 = ("key1", bytes(range(32)))
KEY2 = ("key2", bytes(range(100, 132)))


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("encrypted")
    config = encryption_config(folder / "encryption.yaml", KEY1)
    with running_apiserver(folder / "apiserver",
                           args=("--encryption-provider-config", str(config))) as server:
        yield server


@pytest.fixture
def ns(encrypted: ApiServer) -> Iterator[str]:
    name = unique()
    encrypted.kubectl("create", "namespace", name)
    yield name
    encrypted.kubectl("delete", "namespace", name, "--wait=false", check=False)


def rows(server: ApiServer, name: str) -> list[bytes]:
    """Every stored value (current and history) of the Secrets called ``name``."""
    with sqlite3.connect(server.data_dir / "state.db") as conn:
        current = conn.execute("SELECT value FROM kv WHERE key LIKE ?",
                               (f"/registry/core/secrets/%/{name}",)).fetchall()
        past = conn.execute("SELECT value FROM history WHERE key LIKE ?",
                            (f"/registry/core/secrets/%/{name}",)).fetchall()
    return [row[0] for row in current + past]


def get_yaml(server: ApiServer, *args: str) -> dict:
    return yaml.safe_load(server.kubectl("get", *args, "-o", "yaml").stdout)


def decoded(secret: dict) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def test_kubectl_create_secret_generic_round_trips(encrypted: ApiServer, ns: str,
                                                   tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    result = encrypted.kubectl("create", "secret", "generic", "db", "-n", ns,
                               f"--from-literal=password={PASSWORD}",
                               f"--from-file=blob={blob}")
    assert result.stdout.strip() == "secret/db created"

    secret = get_yaml(encrypted, "secret", "db", "-n", ns)
    assert secret["type"] == "Opaque"
    assert decoded(secret) == {"password": PASSWORD.encode(), "blob": bytes(range(256))}
    table = encrypted.kubectl("get", "secrets", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert table[1].split()[:3] == ["db", "Opaque", "2"]


def test_kubectl_create_secret_tls_and_docker_registry(encrypted: ApiServer, ns: str,
                                                       tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=web.example", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    encrypted.kubectl("create", "secret", "tls", "web-tls", "-n", ns, "--cert", str(cert),
                      "--key", str(key))
    encrypted.kubectl("create", "secret", "docker-registry", "regcred", "-n", ns,
                      "--docker-server=registry.example", "--docker-username=me",
                      f"--docker-password={PASSWORD}")

    tls = get_yaml(encrypted, "secret", "web-tls", "-n", ns)
    assert tls["type"] == "kubernetes.io/tls"
    assert decoded(tls) == {"tls.crt": cert.read_bytes(), "tls.key": key.read_bytes()}
    registry = get_yaml(encrypted, "secret", "regcred", "-n", ns)
    assert registry["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(decoded(registry)[".dockerconfigjson"])
    assert config["auths"]["registry.example"]["password"] == PASSWORD


def test_an_invalid_tls_secret_is_422_with_the_field_and_nothing_is_stored(
        encrypted: ApiServer, ns: str) -> None:
    code, _, body = encrypted.http("POST", f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "half"},
        "type": "kubernetes.io/tls", "stringData": {"tls.crt": "only a cert"}})
    assert code == 422, body
    assert body["reason"] == "Invalid"
    assert body["message"] == 'Secret "half" is invalid: data[tls.key]: Required value'
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired",
                                          "message": "Required value", "field": "data[tls.key]"}]
    assert encrypted.http("GET", f"/api/v1/namespaces/{ns}/secrets/half")[0] == 404


def test_string_data_is_write_only_and_type_is_immutable(encrypted: ApiServer, ns: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app"},
                "stringData": {"user": "admin"}}
    encrypted.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    secret = get_yaml(encrypted, "secret", "app", "-n", ns)
    assert "stringData" not in secret and decoded(secret) == {"user": b"admin"}

    code, _, body = encrypted.http("PATCH", f"/api/v1/namespaces/{ns}/secrets/app",
                                   {"type": "kubernetes.io/tls"},
                                   content_type="application/merge-patch+json")
    assert code == 422 and 'type: Invalid value: "kubernetes.io/tls": field is immutable' \
        in body["message"]


def test_secrets_are_encrypted_in_the_sqlite_file(encrypted: ApiServer, ns: str) -> None:
    name = unique("enc")
    encrypted.kubectl("create", "secret", "generic", name, "-n", ns,
                      f"--from-literal=password={PASSWORD}")
    stored = rows(encrypted, name)
    assert stored and all(value.startswith(b"k8s:enc:aesgcm:v1:key1:") for value in stored)
    needle = base64.b64encode(PASSWORD.encode())[:12]
    assert not any(PASSWORD.encode() in value or needle in value for value in stored)
    assert decoded(get_yaml(encrypted, "secret", name, "-n", ns)) == \
        {"password": PASSWORD.encode()}


def test_without_encryption_secrets_are_plaintext_in_the_file(apiserver: ApiServer,
                                                              namespace: str) -> None:
    name = unique("plain")
    apiserver.kubectl("create", "secret", "generic", name, "-n", namespace,
                      f"--from-literal=password={PASSWORD}")
    stored = rows(apiserver, name)
    assert stored and all(base64.b64encode(PASSWORD.encode()) in value for value in stored)


def test_rotation_reads_old_secrets_and_rewrites_them_with_the_new_key(tmp_path: Path) -> None:
    first = encryption_config(tmp_path / "first.yaml", KEY1)
    with running_apiserver(tmp_path / "apiserver",
                           args=("--encryption-provider-config", str(first))) as server:
        server.kubectl("create", "secret", "generic", "old", f"--from-literal=v={PASSWORD}")
        server.kubectl("create", "secret", "generic", "untouched", "--from-literal=v=x")
        assert rows(server, "old")[0].startswith(b"k8s:enc:aesgcm:v1:key1:")

        # A new first key, the old one still listed to read what it wrote.
        encryption_config(first, KEY2, KEY1)
        server.restart()
        assert decoded(get_yaml(server, "secret", "old")) == {"v": PASSWORD.encode()}
        assert rows(server, "old")[0].startswith(b"k8s:enc:aesgcm:v1:key1:")

        server.kubectl("label", "secret", "old", "rotated=yes")
        assert rows(server, "old")[0].startswith(b"k8s:enc:aesgcm:v1:key2:")
        # kube's documented re-encryption: replacing a Secret unchanged rewrites it too.
        everything = server.kubectl("get", "secret", "untouched", "-o", "json").stdout
        server.kubectl("replace", "-f", "-", input=everything)
        assert rows(server, "untouched")[0].startswith(b"k8s:enc:aesgcm:v1:key2:")

        # Now the old key can go.
        encryption_config(first, KEY2)
        server.restart()
        assert decoded(get_yaml(server, "secret", "old")) == {"v": PASSWORD.encode()}


@pytest.mark.parametrize(("content", "message"), [
    ("kind: Nope\n", 'expected apiVersion "apiserver.config.k8s.io/v1" and kind '
                     '"EncryptionConfiguration"'),
    ("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
     "- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: k\n"
     "        secret: c2hvcnQ=\n",
     "secret is not of the expected length, got 5, expected one of [16 24 32]"),
])
def test_a_bad_encryption_config_is_one_line_and_exit_2(tmp_path: Path, content: str,
                                                        message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    result = subprocess.run([str(KEELSON), "apiserver", "--data-dir", str(tmp_path / "d"),
                             "--secure-port", "1", "--encryption-provider-config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr
