"""Container probes (startup, liveness, readiness) with kubelet's semantics.

One ``ContainerProber`` task per running container instance that declares probes. The
startup probe runs first; liveness and readiness begin only once it succeeded (or when
there is none). A probe result only flips after ``successThreshold`` consecutive
successes or ``failureThreshold`` consecutive failures, and each flip is reported once
through ``on_change`` -- the pod worker turns a liveness/startup failure into a restart and
readiness into the Ready condition. Probes never raise: every handler error is a failed
probe with a message a person can read in the ``Unhealthy`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from nodeagent.runtime.interface import ContainerRuntime, ContainerRuntimeError

STARTUP, LIVENESS, READINESS = "startup", "liveness", "readiness"
# Called with (probe kind, healthy, message) whenever a probe's result flips.
ResultCallback = Callable[[str, bool, str], None]


@dataclass(frozen=True)
class ProbeSpec:
    kind: str
    handler: Mapping[str, Any]
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def from_pod(cls, kind: str, probe: Mapping[str, Any]) -> ProbeSpec:
        return cls(
            kind=kind,
            handler=probe,
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            # liveness and startup must use 1 (API validation); readiness may ask for more
            success_threshold=int(probe.get("successThreshold", 1)) if kind == READINESS else 1,
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


def probes_of(container: Mapping[str, Any]) -> dict[str, ProbeSpec]:
    found = {}
    for kind, field in (
        (STARTUP, "startupProbe"),
        (LIVENESS, "livenessProbe"),
        (READINESS, "readinessProbe"),
    ):
        if container.get(field):
            found[kind] = ProbeSpec.from_pod(kind, container[field])
    return found


def _port(value: Any, container: Mapping[str, Any]) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"port {value!r} is not a number and names no container port")


async def run_probe(
    handler: Mapping[str, Any],
    *,
    container: Mapping[str, Any],
    container_id: str,
    pod_ip: str | None,
    runtime: ContainerRuntime,
    timeout: float,
) -> tuple[bool, str]:
    """Run one probe attempt; (success, message for a failure)."""
    try:
        if "exec" in handler:
            result = await runtime.exec_in_container(
                container_id, list(handler["exec"]["command"]), timeout=timeout
            )
            output = result.output.decode(errors="replace").strip()
            return result.exit_code == 0, f"exit code {result.exit_code}: {output}"[:300]
        if "httpGet" in handler:
            get = handler["httpGet"]
            host = get.get("host") or pod_ip
            url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{_port(get['port'], container)}"
            url += get.get("path", "/")
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s,
                s.get(url, headers=headers, ssl=False, allow_redirects=False) as response,
            ):
                ok = 200 <= response.status < 400
                return ok, f"HTTP probe failed with statuscode: {response.status}"
        if "tcpSocket" in handler:
            tcp = handler["tcpSocket"]
            host = tcp.get("host") or pod_ip
            async with asyncio.timeout(timeout):
                _reader, writer = await asyncio.open_connection(host, _port(tcp["port"], container))
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except (OSError, aiohttp.ClientError, ContainerRuntimeError, ValueError) as err:
        return False, str(err) or type(err).__name__
    return False, "probe has no exec, httpGet or tcpSocket handler"


class ContainerProber:
    def __init__(
        self,
        container: Mapping[str, Any],
        container_id: str,
        *,
        runtime: ContainerRuntime,
        pod_ip: str | None,
        on_change: ResultCallback,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self.container = container
        self.container_id = container_id
        self.runtime = runtime
        self.pod_ip = pod_ip
        self.specs = probes_of(container)
        self._on_change = on_change
        self._on_failure = on_failure  # every failed attempt (for Unhealthy events)

    async def run(self) -> None:
        startup = self.specs.get(STARTUP)
        if startup is not None and not await self._probe_loop(startup, until_success=True):
            return
        loops = [self._probe_loop(spec) for kind, spec in self.specs.items() if kind != STARTUP]
        await asyncio.gather(*loops)

    async def _probe_loop(self, spec: ProbeSpec, *, until_success: bool = False) -> bool:
        """Probe every period; report flips. With until_success, stop at the first pass."""
        await asyncio.sleep(spec.initial_delay)
        healthy: bool | None = None
        successes = failures = 0
        while True:
            ok, message = await run_probe(
                spec.handler,
                container=self.container,
                container_id=self.container_id,
                pod_ip=self.pod_ip,
                runtime=self.runtime,
                timeout=spec.timeout,
            )
            if ok:
                successes, failures = successes + 1, 0
                if successes >= spec.success_threshold and healthy is not True:
                    healthy = True
                    self._on_change(spec.kind, True, "")
                if until_success and healthy:
                    return True
            else:
                successes, failures = 0, failures + 1
                if self._on_failure is not None:
                    self._on_failure(spec.kind, message)
                if failures >= spec.failure_threshold and healthy is not False:
                    healthy = False
                    self._on_change(spec.kind, False, message)
                    if spec.kind in (STARTUP, LIVENESS):
                        return False  # the container will be restarted; a new prober follows
            await asyncio.sleep(spec.period)
