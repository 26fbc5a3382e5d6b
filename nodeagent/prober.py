"""Container probes (startup, liveness, readiness) with kubelet's semantics, and the
prober manager that owns a pod's probe tasks.

``ProberManager`` (one per pod worker) keeps one ``ContainerProber`` task per running app
container instance that declares probes, and cancels the tasks of instances that stopped.
The startup probe runs first; liveness and readiness begin only once it succeeded (or when
there is none). A probe result only flips after ``successThreshold`` consecutive
successes or ``failureThreshold`` consecutive failures, and each flip is reported once:
readiness feeds ``ready`` (the Ready condition), a liveness or startup failure puts the
container in ``unhealthy``, which ``compute_pod_actions`` turns into a restart. Probes
never raise: every handler error is a failed probe with a message a person can read in
the ``Unhealthy`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from nodeagent.actions import PodView
from nodeagent.runtime.interface import ContainerRuntime, ContainerRuntimeError, ContainerState

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


class ProberManager:
    """The probe tasks of one pod, and what they found: ``ready`` by container name,
    ``unhealthy`` container ids (condemned by liveness or startup, to be restarted)."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        *,
        on_change: Callable[[], None],
        on_failure: Callable[[str, str], None],
    ) -> None:
        self.runtime = runtime
        self.ready: dict[str, bool] = {}
        self.unhealthy: set[str] = set()
        self._on_change = on_change  # a result flipped: the pod needs a pass
        self._on_failure = on_failure  # (kind, message) of every failed attempt
        self._tasks: dict[str, asyncio.Task] = {}  # container id -> its prober

    def sync(self, pod: Mapping[str, Any], view: PodView, *, pod_ip: str | None) -> None:
        """One prober per running app container that declares probes; none for the rest."""
        wanted: dict[str, Mapping[str, Any]] = {}
        for container in pod.get("spec", {}).get("containers") or []:
            latest = view.latest(container["name"])
            if latest and latest.state is ContainerState.RUNNING and probes_of(container):
                wanted[latest.id] = container
        self.stop(keep=set(wanted))
        for container_id, container in wanted.items():
            if container_id not in self._tasks:
                self._start(container, container_id, pod_ip)

    def _start(self, container: Mapping[str, Any], container_id: str, pod_ip: str | None) -> None:
        specs = probes_of(container)
        if STARTUP in specs or READINESS in specs:
            self.ready[container["name"]] = False
        prober = ContainerProber(
            container,
            container_id,
            runtime=self.runtime,
            pod_ip=pod_ip,
            on_change=lambda kind, ok, _message: self._changed(container, container_id, kind, ok),
            on_failure=self._on_failure,
        )
        self._tasks[container_id] = asyncio.get_running_loop().create_task(
            prober.run(), name=f"probe-{container_id[:12]}"
        )

    def _changed(
        self, container: Mapping[str, Any], container_id: str, kind: str, ok: bool
    ) -> None:
        name = container["name"]
        if kind == READINESS:
            self.ready[name] = ok
        elif kind == STARTUP and ok and READINESS not in probes_of(container):
            self.ready[name] = True
        elif kind in (LIVENESS, STARTUP) and not ok:
            self.unhealthy.add(container_id)
        self._on_change()

    def killed(self, container_id: str) -> None:
        """The container was killed: its verdict is spent."""
        self.unhealthy.discard(container_id)

    def stop(self, *, keep: set[str] | frozenset[str] = frozenset()) -> None:
        """Cancel every prober except those of the container ids in ``keep``."""
        for container_id in [c for c in self._tasks if c not in keep]:
            self._tasks.pop(container_id).cancel()
