"""Health endpoints: the proxy's own /healthz and /livez, and per-Service health check ports.

The proxy is healthy once a sync has succeeded and while the last successful sync is recent
(within twice the full-resync period): a proxy whose syncs keep failing, or that is stuck,
turns 503 so a supervisor or load balancer can react. For ``externalTrafficPolicy: Local``
Services a server on ``healthCheckNodePort`` answers 200 when this node has local endpoints
and 503 when it has none, so external load balancers send traffic only to nodes that can
serve it (kube-proxy's ServiceHealthServer).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from apiclient.serving import serve

log = logging.getLogger(__name__)


class ProxyHealth:
    def __init__(self, *, timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.timeout = timeout
        self._clock = clock
        self.last_success: float | None = None

    def synced(self) -> None:
        self.last_success = self._clock()

    def healthy(self) -> bool:
        return self.last_success is not None and self._clock() - self.last_success <= self.timeout

    def body(self) -> dict[str, object]:
        return {"lastUpdated": self.last_success, "currentTime": self._clock()}


def healthz_app(health: ProxyHealth) -> web.Application:
    async def handle(_request: web.Request) -> web.Response:
        status = 200 if health.healthy() else 503
        return web.json_response(health.body(), status=status)

    app = web.Application()
    app.router.add_get("/healthz", handle)
    app.router.add_get("/livez", handle)
    return app


@dataclass(frozen=True)
class HealthCheck:
    service_key: str  # "ns/name"
    local_endpoints: int


class ServiceHealthServers:
    """One HTTP server per healthCheckNodePort, answering by local endpoint count."""

    def __init__(self, *, host: str = "0.0.0.0") -> None:
        self.host = host
        self._checks: dict[int, HealthCheck] = {}
        self._runners: dict[int, web.AppRunner] = {}

    def _app(self, port: int) -> web.Application:
        async def handle(_request: web.Request) -> web.Response:
            check = self._checks[port]
            namespace, name = check.service_key.split("/", 1)
            body = {
                "service": {"namespace": namespace, "name": name},
                "localEndpoints": check.local_endpoints,
                "serviceProxyHealthy": True,
            }
            status = 200 if check.local_endpoints > 0 else 503
            return web.Response(
                text=json.dumps(body), status=status, content_type="application/json"
            )

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        return app

    async def sync(self, desired: Mapping[int, HealthCheck]) -> None:
        """Start servers for new ports, stop those no longer wanted, update counts."""
        self._checks = dict(desired)
        for port in sorted(set(self._runners) - set(desired)):
            await self._runners.pop(port).cleanup()
        for port in sorted(set(desired) - set(self._runners)):
            try:
                self._runners[port] = await serve(self._app(port), f"{self.host}:{port}")
            except OSError as error:
                log.warning("health check port %d for %s: %s", port,
                            desired[port].service_key, error)  # fmt: skip

    async def close(self) -> None:
        await self.sync({})
