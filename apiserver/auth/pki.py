"""The cluster's certificate authority and the certificates the apiserver needs.

Why: the apiserver serves HTTPS only, and kubectl, the kubernetes client and the node agent
authenticate with client certificates (CN = user, O = groups), exactly as kube-apiserver
does. One self-signed CA under ``DATA_DIR/pki/`` signs the serving certificate and every
client certificate.

Invariants:
- :func:`ensure_pki` is idempotent. An existing CA is never replaced (replacing it would
  invalidate every kubeconfig handed out). The serving certificate is reissued only when
  its SANs do not cover the requested names/addresses, when it is not signed by the CA or
  when it is about to expire; the admin certificate only when it is not signed by the CA
  or about to expire.
- Keys are EC P-256 (fast to generate, accepted by Go and OpenSSL) and private key files
  are written mode 0600 by an atomic rename, so a reader never sees half a key.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "keelson-ca"
SERVING_COMMON_NAME = "kube-apiserver"
ADMIN_USER = "kubernetes-admin"
ADMIN_GROUP = "system:masters"
# Names under which in-cluster clients and kubectl reach the apiserver.
SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS = ("127.0.0.1", "::1")

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
# A leaf certificate this close to expiry is reissued by ensure_pki.
RENEW_BEFORE = datetime.timedelta(days=30)
# Tolerates clocks of clients slightly behind ours.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class PKI:
    """Paths of the cluster's PEM files (all under ``DATA_DIR/pki/``)."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path


def pki_paths(data_dir: Path) -> PKI:
    """Where the PEM files of the apiserver whose data dir is ``data_dir`` live."""
    pki_dir = Path(data_dir) / "pki"
    return PKI(
        ca_cert=pki_dir / "ca.crt",
        ca_key=pki_dir / "ca.key",
        serving_cert=pki_dir / "apiserver.crt",
        serving_key=pki_dir / "apiserver.key",
        admin_cert=pki_dir / "admin.crt",
        admin_key=pki_dir / "admin.key",
    )


def ensure_pki(data_dir: Path, *, hostnames: Sequence[str], ips: Sequence[str]) -> PKI:
    """Create (or complete) the CA, the serving certificate and the admin client certificate.

    ``hostnames`` and ``ips`` are added to the serving certificate's SANs on top of the
    loopback addresses, ``localhost`` and the ``kubernetes.default...`` names; pass the
    node's addresses and the first IP of the service CIDR.
    """
    pki = pki_paths(data_dir)
    pki.ca_cert.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(pki.ca_cert.parent, 0o700)
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        _create_ca(pki)
    ca_cert, ca_key = _load_ca(pki)

    dns_names = _unique([*SERVING_DNS_NAMES, *hostnames])
    ip_addresses = _unique(str(ipaddress.ip_address(ip)) for ip in [*SERVING_IPS, *ips])
    if not (pki.serving_key.exists()
            and _serving_cert_covers(pki.serving_cert, ca_cert, dns_names, ip_addresses)):
        cert_pem, key_pem = _issue(
            ca_cert, ca_key,
            subject=_name(SERVING_COMMON_NAME),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[x509.DNSName(n) for n in dns_names]
            + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses],
            validity=LEAF_VALIDITY,
        )
        _write_pair(pki.serving_cert, cert_pem, pki.serving_key, key_pem)

    if not (pki.admin_key.exists() and _cert_is_current(pki.admin_cert, ca_cert)):
        cert_pem, key_pem = issue_client_cert(pki, common_name=ADMIN_USER, groups=[ADMIN_GROUP])
        _write_pair(pki.admin_cert, cert_pem, pki.admin_key, key_pem)
    return pki


def issue_client_cert(pki: PKI, *, common_name: str, groups: Sequence[str],
                      days: int = 365) -> tuple[bytes, bytes]:
    """A client certificate for user ``common_name`` in ``groups``: ``(cert PEM, key PEM)``."""
    ca_cert, ca_key = _load_ca(pki)
    return _issue(
        ca_cert, ca_key,
        subject=_name(common_name, organizations=groups),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        sans=[],
        validity=datetime.timedelta(days=days),
    )


def write_kubeconfig(path: Path, *, server: str, ca_pem: bytes, cert_pem: bytes,
                     key_pem: bytes, user: str, cluster: str = "keelson",
                     context: str = "keelson") -> None:
    """Write a self-contained kubeconfig (credentials inline, base64), mode 0600."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster, "cluster": {
            "server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
    }
    write_file(Path(path), yaml.safe_dump(config, sort_keys=False).encode(), mode=0o600)


def ensure_admin_kubeconfig(data_dir: Path, pki: PKI, *, port: int) -> Path:
    """Write ``DATA_DIR/admin.kubeconfig`` (server ``https://127.0.0.1:PORT``) and return it.

    Rewritten on every call so a changed port or a reissued admin certificate is picked up.
    """
    path = Path(data_dir) / "admin.kubeconfig"
    _write_local_kubeconfig(path, pki, port=port, cert=pki.admin_cert, key=pki.admin_key,
                            user=ADMIN_USER)
    return path


def ensure_client_kubeconfig(data_dir: Path, pki: PKI, *, port: int, name: str, user: str,
                             groups: Sequence[str] = ()) -> Path:
    """``DATA_DIR/<name>.kubeconfig`` for a control-plane component with its own identity
    (e.g. ``system:kube-scheduler``), as kubeadm writes ``scheduler.conf``.

    The certificate is kept as ``pki/<name>.crt`` and reissued only when it is not signed
    by the CA, is near expiry, or names another user or groups.
    """
    cert_path, key_path = pki.ca_cert.with_name(f"{name}.crt"), pki.ca_cert.with_name(f"{name}.key")
    ca_cert, _ = _load_ca(pki)
    if not (key_path.exists() and _cert_is_current(cert_path, ca_cert)
            and _subject_is(cert_path, _name(user, organizations=groups))):
        cert_pem, key_pem = issue_client_cert(pki, common_name=user, groups=groups)
        _write_pair(cert_path, cert_pem, key_path, key_pem)
    path = Path(data_dir) / f"{name}.kubeconfig"
    _write_local_kubeconfig(path, pki, port=port, cert=cert_path, key=key_path, user=user)
    return path


def _write_local_kubeconfig(path: Path, pki: PKI, *, port: int, cert: Path, key: Path,
                            user: str) -> None:
    write_kubeconfig(path, server=f"https://127.0.0.1:{port}", ca_pem=pki.ca_cert.read_bytes(),
                     cert_pem=cert.read_bytes(), key_pem=key.read_bytes(), user=user)


def _subject_is(path: Path, subject: x509.Name) -> bool:
    return x509.load_pem_x509_certificate(path.read_bytes()).subject == subject


def node_addresses() -> list[str]:
    """The host's non-loopback IPv4 and IPv6 addresses (IPv6 link-local ones left out:
    they need a zone and cannot be used in a certificate or a URL without one)."""
    addresses: list[str] = []
    for interface_addresses in psutil.net_if_addrs().values():
        for entry in interface_addresses:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(entry.address.split("%", 1)[0])
            if ip.is_loopback or ip.is_link_local:
                continue
            addresses.append(str(ip))
    return _unique(addresses)


def server_ssl_context(pki: PKI) -> ssl.SSLContext:
    """The apiserver's TLS context.

    Client certificates are requested and, when presented, verified against the CA
    (``CERT_OPTIONAL``), so clients with only a bearer token still connect while a
    certificate from another CA fails the handshake.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.serving_cert, pki.serving_key)
    context.load_verify_locations(cafile=pki.ca_cert)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _create_ca(pki: PKI) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(CA_COMMON_NAME)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM),
                pki.ca_key, _key_pem(key))


def _load_ca(pki: PKI) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pki.ca_key}: expected an EC private key")
    return cert, key


def _issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
           subject: x509.Name, usage: x509.ObjectIdentifier,
           sans: list[x509.GeneralName], validity: datetime.timedelta) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not ca,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def _serving_cert_covers(path: Path, ca_cert: x509.Certificate, dns_names: list[str],
                         ip_addresses: list[str]) -> bool:
    if not _cert_is_current(path, ca_cert):
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(dns_names) <= have_dns and set(ip_addresses) <= have_ips


def _cert_is_current(path: Path, ca_cert: x509.Certificate) -> bool:
    """True when ``path`` holds a certificate signed by ``ca_cert`` and not near expiry."""
    if not path.exists():
        return False
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc - RENEW_BEFORE > _now()


def _name(common_name: str, *, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_pair(cert_path: Path, cert_pem: bytes, key_path: Path, key_pem: bytes) -> None:
    # Key first: a certificate on disk always has its key next to it.
    write_file(key_path, key_pem, mode=0o600)
    write_file(cert_path, cert_pem, mode=0o644)


def write_file(path: Path, data: bytes, *, mode: int) -> None:
    """Write atomically (temp file + rename) with ``mode`` from the first byte on."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask and ignored if it existed
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _unique(items: Iterable[str]) -> list[str]:
    """``items`` without duplicates, first occurrence order kept."""
    return list(dict.fromkeys(items))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
