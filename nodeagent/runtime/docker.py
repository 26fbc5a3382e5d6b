"""ContainerRuntime on Docker Engine, through docker-py's low-level ``APIClient``.

docker-py is blocking, so every call runs on a private thread pool (a stuck call can never
freeze the event loop, and a burst of pods cannot starve the loop's default executor) and is
bounded twice: by the HTTP timeout of the client and by ``asyncio.timeout``. Docker's
exception zoo is translated into the ``ContainerRuntimeError`` family here and nowhere else.

Listing uses the cheap ``/containers/json`` endpoint (no per-container inspect) because the
PLEG relists every second; the full inspect happens only for pods that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig
from docker.utils import parse_repository_tag

from nodeagent.runtime.interface import (
    LABEL_AGENT,
    LABEL_POD_UID,
    ContainerConfig,
    ContainerCreateError,
    ContainerInfo,
    ContainerNotFoundError,
    ContainerRuntimeError,
    ContainerStartError,
    ContainerState,
    ContainerSummary,
    ExecResult,
    ImageInfo,
    ImageNotFoundError,
    ImagePullError,
    RuntimeEvent,
    RuntimeTimeoutError,
    RuntimeUnavailableError,
    SandboxConfig,
)

T = TypeVar("T")
# Called after every runtime operation with (operation, seconds, succeeded); feeds metrics.
OperationObserver = Callable[[str, float, bool], None]

_NEVER = "0001-01-01T00:00:00Z"
_EVENT_ACTIONS = frozenset({"create", "start", "die", "destroy", "oom", "kill", "stop"})


def _rfc3339(docker_time: str) -> str:
    """Docker's nanosecond timestamps -> Kubernetes' second-precision RFC 3339 ('' if never)."""
    if not docker_time or docker_time.startswith(_NEVER[:10]):
        return ""
    return docker_time[:19] + "Z"


def _state(status: str) -> ContainerState:
    if status == "running":
        return ContainerState.RUNNING
    if status == "created":
        return ContainerState.CREATED
    if status in ("exited", "dead"):
        return ContainerState.EXITED
    return ContainerState.UNKNOWN


def _inspected_state(state: Mapping[str, object]) -> ContainerState:
    # A failed start leaves Docker's status at "created" with an error and an exit code;
    # for the pod it is a finished attempt (kubelet's StartError), not a pending one.
    if state.get("Status") == "created" and (state.get("Error") or state.get("ExitCode")):
        return ContainerState.EXITED
    return _state(str(state.get("Status", "")))




class DockerRuntime:
    """A ContainerRuntime talking to dockerd over its socket."""

    def __init__(
        self,
        *,
        base_url: str = "unix:///var/run/docker.sock",
        timeout: float = 30.0,
        pull_timeout: float = 300.0,
        max_workers: int = 16,
        observer: OperationObserver | None = None,
        owner: str | None = None,
    ) -> None:
        """``owner`` (the agent's id) is put on every container this runtime creates, and
        every listing and event stream is limited to it; ``None`` sees all keelson pods."""
        self._owner = owner
        self._timeout = timeout
        self._pull_timeout = pull_timeout
        self._api = self._connect(base_url, timeout, max_workers)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="docker")
        self._observer = observer

    def _label_filter(self, labels: Mapping[str, str] | None = None) -> list[str]:
        filters = [LABEL_POD_UID]
        if self._owner:
            filters.append(f"{LABEL_AGENT}={self._owner}")
        filters += [f"{key}={value}" for key, value in (labels or {}).items()]
        return filters

    def _labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        return {**labels, LABEL_AGENT: self._owner} if self._owner else dict(labels)

    @staticmethod
    def _connect(base_url: str, timeout: float, max_workers: int) -> docker.APIClient:
        # A fixed API version avoids a blocking version negotiation in the constructor,
        # so building the runtime works even while dockerd is down.
        return docker.APIClient(
            base_url=base_url, timeout=int(timeout), version="1.41", max_pool_size=max_workers
        )

    async def _call(
        self,
        operation: str,
        fn: Callable[[], T],
        *,
        timeout: float | None = None,
        subject: str = "",
    ) -> T:
        limit = timeout if timeout is not None else self._timeout
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        ok = False
        try:
            async with asyncio.timeout(limit):
                result = await loop.run_in_executor(self._executor, fn)
            ok = True
            return result
        except TimeoutError as err:
            raise RuntimeTimeoutError(
                f"docker {operation} {subject} did not finish within {limit:.0f}s".strip()
            ) from err
        except requests.exceptions.Timeout as err:
            raise RuntimeTimeoutError(f"docker {operation} {subject} timed out: {err}") from err
        except requests.exceptions.ConnectionError as err:
            raise RuntimeUnavailableError(
                f"cannot reach dockerd for {operation}: {err}; is dockerd running?"
            ) from err
        except docker.errors.DockerException as err:
            if isinstance(err, docker.errors.APIError) and err.status_code == 404:
                raise ContainerNotFoundError(f"{subject or operation}: {_explain(err)}") from err
            raise ContainerRuntimeError(f"docker {operation} {subject}: {_explain(err)}") from err
        finally:
            if self._observer is not None:
                self._observer(operation, time.monotonic() - started, ok)

    async def version(self) -> str:
        info = await self._call("version", self._api.version)
        return str(info.get("Version", "unknown"))

    async def _create(
        self,
        operation: str,
        *,
        image: str,
        image_kind: str,
        name: str,
        labels: Mapping[str, str],
        log_max_size: str,
        host: Mapping[str, object],
        **container: object,
    ) -> str:
        """Create a container labelled as ours, logs capped; a missing image is
        ImageNotFoundError (``image_kind`` says which image it is in the message)."""
        host_config = self._api.create_host_config(
            log_config=LogConfig(
                type="json-file", config={"max-size": log_max_size, "max-file": "1"}
            ),
            **host,
        )
        try:
            created = await self._call(
                operation,
                lambda: self._api.create_container(
                    image,
                    name=name,
                    labels=self._labels(labels),
                    host_config=host_config,
                    **container,
                ),
                subject=name,
            )
        except ContainerNotFoundError as err:
            raise ImageNotFoundError(f"{image_kind} {image} is not present") from err
        return str(created["Id"])

    async def run_sandbox(self, config: SandboxConfig) -> str:
        sandbox_id = await self._create(
            "create_sandbox",
            image=config.image,
            image_kind="sandbox image",
            name=config.name,
            labels=config.labels,
            log_max_size="1m",
            host={"network_mode": "none", "ipc_mode": "shareable"},
            hostname=config.hostname,
        )
        try:
            await self.start_container(sandbox_id)
        except ContainerRuntimeError:
            await self.remove_container(sandbox_id)
            raise
        return sandbox_id

    async def create_container(self, config: ContainerConfig) -> str:
        host = {
            "network_mode": f"container:{config.sandbox_id}",
            "ipc_mode": f"container:{config.sandbox_id}",
            "binds": [
                f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}"
                for m in config.mounts
            ],
            "cpu_shares": config.cpu_shares,
            "cpu_quota": config.cpu_quota,
            "cpu_period": config.cpu_period,
            "mem_limit": config.memory_limit,
        }
        try:
            return await self._create(
                "create_container",
                image=config.image,
                image_kind="image",
                name=config.name,
                labels=config.labels,
                log_max_size=config.log_max_size,
                host=host,
                entrypoint=config.entrypoint,
                command=config.args,
                environment=dict(config.env),
                working_dir=config.working_dir,
                user=config.user,
            )
        except (RuntimeUnavailableError, ImageNotFoundError):
            raise
        except ContainerRuntimeError as err:
            raise ContainerCreateError(str(err)) from err

    async def start_container(self, container_id: str) -> None:
        try:
            await self._call(
                "start_container", lambda: self._api.start(container_id), subject=container_id[:12]
            )
        except (ContainerNotFoundError, RuntimeUnavailableError):
            raise
        except ContainerRuntimeError as err:
            raise ContainerStartError(str(err)) from err

    async def stop_container(self, container_id: str, *, timeout: float) -> None:
        seconds = max(0, math.ceil(timeout))  # Docker takes whole seconds; never cut the grace
        with contextlib.suppress(ContainerNotFoundError):
            await self._call(
                "stop_container",
                lambda: self._api.stop(container_id, timeout=seconds),
                timeout=seconds + self._timeout,
                subject=container_id[:12],
            )

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._call(
                "remove_container",
                lambda: self._api.remove_container(container_id, force=True, v=True),
                subject=container_id[:12],
            )
        except ContainerNotFoundError:
            return
        except RuntimeUnavailableError:
            raise
        except ContainerRuntimeError as err:
            if "already in progress" in str(err):
                return
            raise

    async def inspect_container(self, container_id: str) -> ContainerInfo:
        raw = await self._call(
            "inspect_container",
            lambda: self._api.inspect_container(container_id),
            subject=container_id[:12],
        )
        state = raw.get("State") or {}
        config = raw.get("Config") or {}
        return ContainerInfo(
            id=raw["Id"],
            name=raw.get("Name", "").lstrip("/"),
            image=config.get("Image", ""),
            image_id=raw.get("Image", ""),
            labels=config.get("Labels") or {},
            state=_inspected_state(state),
            pid=int(state.get("Pid") or 0),
            exit_code=state.get("ExitCode"),
            error=state.get("Error") or "",
            oom_killed=bool(state.get("OOMKilled")),
            created_at=_rfc3339(raw.get("Created", "")),
            started_at=_rfc3339(state.get("StartedAt", "")),
            finished_at=_rfc3339(state.get("FinishedAt", "")),
        )

    async def list_containers(
        self, *, labels: Mapping[str, str] | None = None
    ) -> list[ContainerSummary]:
        filters = {"label": self._label_filter(labels)}
        raw = await self._call(
            "list_containers", lambda: self._api.containers(all=True, filters=filters)
        )
        return [
            ContainerSummary(
                id=item["Id"],
                labels=item.get("Labels") or {},
                state=_state(item.get("State", "")),
                created=float(item.get("Created", 0)),
                image_id=item.get("ImageID", ""),
            )
            for item in raw
        ]

    async def exec_in_container(
        self, container_id: str, command: list[str], *, timeout: float
    ) -> ExecResult:
        def run() -> ExecResult:
            exec_id = self._api.exec_create(container_id, command)["Id"]
            output = self._api.exec_start(exec_id)
            exit_code = self._api.exec_inspect(exec_id).get("ExitCode")
            return ExecResult(exit_code=-1 if exit_code is None else int(exit_code), output=output)

        return await self._call("exec", run, timeout=timeout, subject=container_id[:12])

    async def _logs(
        self, container_id: str, *, tail: int | None, timestamps: bool, follow: bool
    ) -> Any:
        """The log bytes, or with ``follow`` a blocking iterator of chunks."""
        return await self._call(
            "logs",
            lambda: self._api.logs(
                container_id,
                stdout=True,
                stderr=True,
                timestamps=timestamps,
                stream=follow,
                follow=follow,
                tail="all" if tail is None else tail,
            ),
            subject=container_id[:12],
        )

    async def container_logs(
        self, container_id: str, *, tail: int | None = None, timestamps: bool = False
    ) -> bytes:
        return await self._logs(container_id, tail=tail, timestamps=timestamps, follow=False)

    async def follow_logs(
        self, container_id: str, *, tail: int | None = None, timestamps: bool = False
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        stream = await self._logs(container_id, tail=tail, timestamps=timestamps, follow=True)
        sentinel = object()
        try:
            while True:
                # The stream has no read timeout on purpose (a quiet container is fine);
                # it ends when the container stops, and close() below ends it early.
                chunk = await loop.run_in_executor(self._executor, next, stream, sentinel)
                if chunk is sentinel:
                    return
                yield chunk
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    async def image_present(self, image: str) -> bool:
        try:
            await self.image_id(image)
        except (ContainerNotFoundError, ImageNotFoundError):
            return False
        return True

    async def image_id(self, image: str) -> str:
        try:
            raw = await self._call(
                "inspect_image", lambda: self._api.inspect_image(image), subject=image
            )
        except ContainerNotFoundError as err:
            raise ImageNotFoundError(f"image {image} is not present") from err
        return str(raw["Id"])

    async def pull_image(self, image: str) -> None:
        repository, tag = parse_repository_tag(image)

        def pull() -> None:
            # docker-py reports most pull failures inside the progress stream, not as an
            # HTTP error, so the stream is read to the end and its errors are raised here.
            for line in self._api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if "error" in line:
                    raise docker.errors.APIError(line["error"])

        try:
            await self._call("pull_image", pull, timeout=self._pull_timeout, subject=image)
        except RuntimeTimeoutError as err:
            raise ImagePullError(f"pulling {image} timed out") from err
        except ContainerRuntimeError as err:
            raise ImagePullError(f"pulling {image} failed: {err}") from err

    async def list_images(self) -> list[ImageInfo]:
        raw = await self._call("list_images", self._api.images)
        return [
            ImageInfo(
                id=item["Id"], tags=tuple(item.get("RepoTags") or ()), size=int(item.get("Size", 0))
            )
            for item in raw
        ]

    async def remove_image(self, image_id: str) -> None:
        # Never forced: Docker itself refuses to remove an image a container still uses.
        await self._call(
            "remove_image", lambda: self._api.remove_image(image_id), subject=image_id[:19]
        )

    async def all_container_image_ids(self) -> set[str]:
        raw = await self._call("list_containers", lambda: self._api.containers(all=True))
        return {item.get("ImageID", "") for item in raw}

    async def events(self) -> AsyncIterator[RuntimeEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[RuntimeEvent | BaseException | None] = asyncio.Queue()
        filters = {"type": ["container"], "label": self._label_filter()}
        try:
            stream = await self._call(
                "events", lambda: self._api.events(decode=True, filters=filters)
            )
        except ContainerRuntimeError as err:
            raise RuntimeUnavailableError(f"cannot stream docker events: {err}") from err

        def pump() -> None:
            try:
                for raw in stream:
                    action = str(raw.get("Action", raw.get("status", ""))).split(":")[0]
                    if action not in _EVENT_ACTIONS:
                        continue
                    actor = raw.get("Actor") or {}
                    event = RuntimeEvent(
                        container_id=actor.get("ID", raw.get("id", "")),
                        action=action,
                        labels=actor.get("Attributes") or {},
                    )
                    loop.call_soon_threadsafe(queue.put_nowait, event)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except Exception as err:  # the stream broke; the consumer decides what next
                with contextlib.suppress(RuntimeError):  # loop already closed
                    loop.call_soon_threadsafe(queue.put_nowait, err)

        thread = threading.Thread(target=pump, name="docker-events", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    raise RuntimeUnavailableError("docker event stream ended")
                if isinstance(item, BaseException):
                    raise RuntimeUnavailableError(f"docker event stream broke: {item}")
                yield item
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    async def close(self) -> None:
        # Wait for calls already running (each bounded by its timeout): a create that
        # finished after we returned would leave a container nobody knows about.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._api.close()


def _explain(err: Exception) -> str:
    if isinstance(err, docker.errors.APIError):
        return str(err.explanation or err)
    return str(err)
