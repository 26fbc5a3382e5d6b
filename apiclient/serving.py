"""The small HTTP endpoints every component serves: Prometheus ``/metrics`` and health.

The apiserver, the kubelet loop and the proxy each expose their registry the same way
(text format 0.0.4, rendered off the event loop because a large registry takes
milliseconds to render), and each starts a plain aiohttp site on a "host:port" flag
value. One implementation keeps the content type, the address parsing and the
access-log setting the same everywhere.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["metrics_handler", "serve", "split_host_port"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """An aiohttp handler answering with ``registry`` in the Prometheus text format."""

    async def metrics(_request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def split_host_port(address: str) -> tuple[str, int]:
    """ "127.0.0.1:10249" → ("127.0.0.1", 10249); "[::1]:80" → ("::1", 80); ":80" binds all."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(app: web.Application, address: str, *,
                ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Start serving ``app`` on "host:port"; the caller cleans up the returned runner."""
    host, port = split_host_port(address)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
