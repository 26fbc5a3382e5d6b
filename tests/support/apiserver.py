"""A real ``keelson apiserver`` process for tests, shared by every e2e area.

``running_apiserver`` starts the console script on a free loopback port with a temporary
data dir, waits for ``/readyz``, and always stops the process it started, by PID, also
on failure.
Tests talk to it only with real clients: the official ``kubernetes`` client, ``kubectl``,
``apiclient`` and plain HTTPS (``ApiServer.http``) with the admin client certificate.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
KEELSON = REPO / ".venv" / "bin" / "keelson"
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process the test started (by PID), SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def unique(prefix: str = "kt") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class ApiServer:
    """One running ``keelson apiserver``; ``restart()`` keeps port and data dir."""

    data_dir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    # Tests run the controllers they test themselves; the full set runs only where a
    # test asks for it (controllers=True), so areas do not race each other's loops.
    # Without controllers nothing creates a namespace's `default` ServiceAccount, so the
    # ServiceAccount admission plugin is turned off too (as kube's integration tests do),
    # unless `args` say otherwise (`--disable-admission-plugins ""` turns it back on).
    controllers: bool = False
    args: tuple[str, ...] = ()  # more `keelson apiserver` flags
    process: subprocess.Popen[bytes] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "apiserver.log", "ab")  # noqa: SIM115 (owned by the child)
        self.process = subprocess.Popen(
            [str(KEELSON), "apiserver", "--data-dir", str(self.data_dir), "--bind-address",
             "127.0.0.1", "--secure-port", str(self.port),
             *self._default_flags(), *self.args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"keelson apiserver exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(f"{self.url}/readyz", context=context,
                                           timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"keelson apiserver not ready in {READY_TIMEOUT}s: {self.log_tail()}")

    def _default_flags(self) -> tuple[str, ...]:
        if self.controllers:
            return ()
        if "--disable-admission-plugins" in self.args:
            return ("--disable-controllers",)
        return ("--disable-controllers", "--disable-admission-plugins", "ServiceAccount")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir / "apiserver.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- plain HTTPS with the admin certificate -------------------------------------

    def ssl_context(self, *, client_cert: bool = True) -> ssl.SSLContext:
        pki = self.data_dir / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.check_hostname = False
        if client_cert:
            context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def http(self, method: str, path: str, body: Any = None, *,
             content_type: str = "application/json", headers: dict[str, str] | None = None,
             authenticated: bool = True, timeout: float = 10.0
             ) -> tuple[int, dict[str, str], Any]:
        """One request; returns (code, headers, decoded JSON or raw bytes)."""
        data = body if isinstance(body, bytes | type(None)) else orjson.dumps(body)
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": content_type,
                                                  **(headers or {})})
        context = self.ssl_context(client_cert=authenticated)
        try:
            with urllib.request.urlopen(request, context=context, timeout=timeout) as resp:
                code, resp_headers, raw = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as error:
            code, resp_headers, raw = error.code, dict(error.headers), error.read()
        try:
            return code, resp_headers, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return code, resp_headers, raw

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig with a client certificate for ``user`` in ``groups``, issued by
        this server's CA (the way a cluster admin hands out credentials)."""
        from apiserver.auth import pki

        authority = pki.pki_paths(self.data_dir)
        cert, key = pki.issue_client_cert(authority, common_name=user, groups=list(groups))
        path = self.data_dir / f"user-{user.replace(':', '_')}.kubeconfig"
        pki.write_kubeconfig(path, server=self.url, ca_pem=authority.ca_cert.read_bytes(),
                             cert_pem=cert, key_pem=key, user=user)
        return path

    def node_kubeconfig(self, node_name: str) -> Path:
        """A kubelet's credentials for ``node_name``: a client certificate for
        ``system:node:<name>`` in group ``system:nodes``, issued by this server's CA."""
        return self.user_kubeconfig(f"system:node:{node_name}", ("system:nodes",))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 30.0, kubeconfig: Path | None = None
                ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin, or with another ``kubeconfig``."""
        config = kubeconfig or self.kubeconfig
        result = subprocess.run([str(KUBECTL), "--kubeconfig", str(config), *args],
                                input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result


@contextlib.contextmanager
def running_apiserver(data_dir: Path, *, env: dict[str, str] | None = None,
                      controllers: bool = False, args: tuple[str, ...] = ()
                      ) -> Iterator[ApiServer]:
    server = ApiServer(data_dir=data_dir, port=free_port(), env=env or {},
                       controllers=controllers, args=tuple(args))
    try:
        server.start()
        yield server
    finally:
        server.stop()
