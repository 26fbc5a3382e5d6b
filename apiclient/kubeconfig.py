"""Load a kubeconfig the way kubectl does, into one immutable `ClusterConfig`.

Resolution order: an explicit path, else the first file in $KUBECONFIG, else
~/.kube/config. The context is the one named, else `current-context`. Relative file paths
inside the kubeconfig are resolved against the kubeconfig's own folder (kubectl's rule),
and every referenced file is read at load time, so a broken reference fails here, with the
file and the field named, not later in the middle of a TLS handshake.

TLS verification is always on unless the kubeconfig itself says
`insecure-skip-tls-verify: true` (kubectl honours that flag too).
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ClusterConfig", "KubeconfigError", "default_kubeconfig_path", "load_kubeconfig"]


class KubeconfigError(Exception):
    """The kubeconfig is missing, unreadable or lacks something needed to connect."""


@dataclass(frozen=True)
class ClusterConfig:
    server: str
    ca_data: bytes | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False
    namespace: str = "default"
    context: str | None = None
    source: Path | None = None

    @property
    def uses_tls(self) -> bool:
        return self.server.startswith("https://")

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: the kubeconfig's CA (or the system store), client cert."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        where = self.source or self.server
        if self.ca_data:
            try:
                context.load_verify_locations(cadata=self.ca_data.decode("ascii", "replace"))
            except ssl.SSLError as error:
                raise KubeconfigError(
                    f"{where}: the certificate authority is not a PEM certificate: {error}"
                ) from None
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_data and self.client_key_data:
            try:
                _load_cert_chain(context, self.client_cert_data, self.client_key_data)
            except ssl.SSLError as error:
                raise KubeconfigError(
                    f"{where}: the client certificate and key are not a matching PEM pair: {error}"
                ) from None
        return context


def _load_cert_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl can only load a certificate chain from files; keep them private and short-lived.
    with tempfile.TemporaryDirectory(prefix="keel-tls-") as folder:
        cert_path, key_path = Path(folder, "client.crt"), Path(folder, "client.key")
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        context.load_cert_chain(cert_path, key_path)


def default_kubeconfig_path() -> Path:
    """$KUBECONFIG's first entry, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    for entry in env.split(os.pathsep):
        if entry.strip():
            return Path(entry.strip()).expanduser()
    return Path.home() / ".kube" / "config"


def _named(entries: Any, name: str, section: str, source: Path) -> dict:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(section[:-1]) or {}
    raise KubeconfigError(f"{source}: no entry named {name!r} in {section}")


def _read_data(block: dict, field: str, source: Path, *, folder: Path, what: str) -> bytes | None:
    """The `<field>-data` (base64) value, else the contents of the `<field>` file."""
    inline = block.get(f"{field}-data")
    if inline:
        try:
            return base64.b64decode(inline, validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError(f"{source}: {what} {field}-data is not valid base64") from None
    reference = block.get(field)
    if not reference:
        return None
    path = Path(reference).expanduser()
    if not path.is_absolute():
        path = folder / path
    try:
        return path.read_bytes()
    except OSError as error:
        raise KubeconfigError(
            f"{source}: cannot read {what} {field} {str(path)!r}: {error.strerror}"
        ) from None


def load_kubeconfig(path: str | Path | None = None, *, context: str | None = None) -> ClusterConfig:
    source = Path(path).expanduser() if path is not None else default_kubeconfig_path()
    try:
        document = yaml.safe_load(source.read_text())
    except OSError as error:
        raise KubeconfigError(f"{source}: cannot read kubeconfig: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise KubeconfigError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise KubeconfigError(f"{source}: not a kubeconfig (expected a mapping)")
    folder = source.resolve().parent

    context_name = context or document.get("current-context")
    if not context_name:
        raise KubeconfigError(f"{source}: no context given and no current-context set")
    context_block = _named(document.get("contexts"), context_name, "contexts", source)
    cluster_name = context_block.get("cluster")
    if not cluster_name:
        raise KubeconfigError(f"{source}: context {context_name!r} names no cluster")
    cluster = _named(document.get("clusters"), cluster_name, "clusters", source)
    user_name = context_block.get("user")
    user = _named(document.get("users"), user_name, "users", source) if user_name else {}

    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{source}: cluster {cluster_name!r} has no server")
    what_cluster, what_user = f"cluster {cluster_name!r}", f"user {user_name!r}"
    cert = _read_data(user, "client-certificate", source, folder=folder, what=what_user)
    key = _read_data(user, "client-key", source, folder=folder, what=what_user)
    if bool(cert) != bool(key):
        raise KubeconfigError(f"{source}: {what_user} has a client certificate or key but not both")
    return ClusterConfig(
        server=server.rstrip("/"),
        ca_data=_read_data(
            cluster, "certificate-authority", source, folder=folder, what=what_cluster
        ),
        client_cert_data=cert,
        client_key_data=key,
        token=_read_token(user, source, folder=folder, what=what_user),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=context_block.get("namespace") or "default",
        context=context_name,
        source=source,
    )


def _read_token(user: dict, source: Path, *, folder: Path, what: str) -> str | None:
    if user.get("token"):
        return str(user["token"])
    token_file = user.get("tokenFile")
    if not token_file:
        return None
    path = Path(token_file).expanduser()
    if not path.is_absolute():
        path = folder / path
    try:
        return path.read_text().strip()
    except OSError as error:
        raise KubeconfigError(
            f"{source}: cannot read {what} tokenFile {str(path)!r}: {error.strerror}"
        ) from None
