"""The kubelet API: ``/healthz``, ``/pods`` and ``/containerLogs`` over HTTPS.

The apiserver's ``pods/log`` subresource proxies to ``/containerLogs/<ns>/<pod>/<container>``
so ``kubectl logs [-f] [--previous] [--tail] [--timestamps]`` works. Containers are found by
their labels, never by an in-memory table, so logs of a pod are available right after an
agent restart. The serving certificate is self-signed and kept under the data dir, as
kubelet does when no certificate is configured.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from apiclient.serving import serve
from nodeagent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    ContainerInfo,
    ContainerRuntime,
    ContainerRuntimeError,
    newest_first,
)


class ServingCertError(Exception):
    pass


def ensure_serving_cert(
    directory: Path, *, node_name: str, addresses: list[str]
) -> tuple[Path, Path]:
    """A self-signed serving certificate for the kubelet API (created once, then reused).

    Made by the ``openssl`` command rather than the ``cryptography`` package: loading that
    package would cost the agent ~8 MiB of RSS for the whole run to do this once (the
    agent's memory budget is 80 MB).
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    names = [f"DNS:{node_name}", "DNS:localhost"]
    names += [f"IP:{address}" for address in sorted({"127.0.0.1", *addresses})]
    command = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "365",
        "-subj",
        f"/CN={node_name}@keelson",
        "-addext",
        f"subjectAltName={','.join(names)}",
        "-keyout",
        str(key_path),
        "-out",
        str(cert_path),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise ServingCertError(
            f"cannot create the kubelet serving certificate in {directory}: {err}; "
            "is the openssl command installed?"
        ) from err
    key_path.chmod(0o600)
    return cert_path, key_path


async def _find_instances(
    runtime: ContainerRuntime, namespace: str, pod: str, container: str
) -> list[ContainerInfo]:
    summaries = await runtime.list_containers(
        labels={
            LABEL_POD_NAMESPACE: namespace,
            LABEL_POD_NAME: pod,
            LABEL_CONTAINER_NAME: container,
        }
    )
    return newest_first([await runtime.inspect_container(s.id) for s in summaries])


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status=code,
    )


def build_app(
    *,
    runtime: ContainerRuntime,
    pods: Callable[[], list[dict[str, Any]]],
    healthy: Callable[[], bool],
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        ok = healthy()
        return web.Response(status=200 if ok else 503, text="ok" if ok else "PLEG is not healthy")

    async def list_pods(_: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods()}
        )

    async def container_logs(request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        query = request.query
        try:
            tail = int(query["tailLines"]) if "tailLines" in query else None
        except ValueError:
            return _status(400, "BadRequest", "tailLines must be an integer")
        timestamps = query.get("timestamps") in ("true", "1")
        previous = query.get("previous") in ("true", "1")
        try:
            instances = await _find_instances(runtime, namespace, pod, container)
        except ContainerRuntimeError as err:
            return _status(503, "ServiceUnavailable", str(err))
        index = 1 if previous else 0
        if len(instances) <= index:
            what = "previous terminated container" if previous else "container"
            return _status(400, "BadRequest", f'{what} "{container}" in pod "{pod}" not found')
        container_id = instances[index].id
        if query.get("follow") in ("true", "1") and not previous:
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            async for chunk in runtime.follow_logs(container_id, tail=tail, timestamps=timestamps):
                await response.write(chunk)
            await response.write_eof()
            return response
        body = await runtime.container_logs(container_id, tail=tail, timestamps=timestamps)
        return web.Response(body=body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/pods", list_pods)
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    return app


async def start_kubelet_server(
    app: web.Application,
    *,
    port: int,
    cert: Path,
    key: Path,
    client_ca: bytes | None = None,
    host: str = "0.0.0.0",
) -> web.AppRunner:
    """Serve the kubelet API over HTTPS.

    With ``client_ca`` (the cluster CA from the agent's kubeconfig) every request must
    present a client certificate signed by it, like kubelet's ``--client-ca-file``: the
    apiserver's log proxy does, anonymous callers cannot read pods or logs.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return await serve(app, address, ssl_context=context)
