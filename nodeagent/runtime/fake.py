"""A stateful in-memory ContainerRuntime for unit tests.

It keeps a container table and an image set, so tests assert outcomes ("the pod has one
running sandbox and two running containers") rather than call sequences. Tests drive the
world with ``exit_container`` (a process ended) and the ``fail_*`` knobs (the runtime
refused). Only unit tests use it; the Docker runtime is proven by e2e tests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace

from apiclient.meta import utc_now
from nodeagent.runtime.interface import (
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
    SandboxConfig,
)


@dataclass
class FakeContainer:
    info: ContainerInfo
    config: ContainerConfig | SandboxConfig
    created: float = field(default_factory=time.time)
    stop_timeouts: list[float] = field(default_factory=list)


class FakeRuntime:
    """In-memory runtime; ``images`` are present, ``pullable`` can be pulled."""

    def __init__(self, *, images: set[str] | None = None, pullable: set[str] | None = None) -> None:
        self.images: set[str] = set(images or ())
        self.pullable: set[str] = set(pullable or ())
        self.containers: dict[str, FakeContainer] = {}
        self.pulls: list[str] = []
        # Commands (first entrypoint word) that fail to start, like a missing executable.
        self.missing_commands: set[str] = set()
        # Exec results by command tuple; anything else exits 0.
        self.exec_results: dict[tuple[str, ...], int] = {}
        self.logs: dict[str, bytes] = {}
        self.image_sizes: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._pids = itertools.count(1000)
        self._events: asyncio.Queue[RuntimeEvent] = asyncio.Queue()

    # -- test drivers -------------------------------------------------------------------
    def exit_container(self, container_id: str, *, exit_code: int) -> None:
        fake = self.containers[container_id]
        fake.info = replace(
            fake.info,
            state=ContainerState.EXITED,
            pid=0,
            exit_code=exit_code,
            finished_at=utc_now(),
        )
        self._emit(container_id, "die")

    def running(self, *, pod_uid: str | None = None) -> list[ContainerInfo]:
        return [
            c.info
            for c in self.containers.values()
            if c.info.state is ContainerState.RUNNING
            and (pod_uid is None or c.info.pod_uid == pod_uid)
        ]

    def _emit(self, container_id: str, action: str) -> None:
        labels = self.containers[container_id].info.labels
        self._events.put_nowait(RuntimeEvent(container_id, action, dict(labels)))

    def _get(self, container_id: str) -> FakeContainer:
        try:
            return self.containers[container_id]
        except KeyError:
            raise ContainerNotFoundError(f"no such container {container_id}") from None

    # -- ContainerRuntime ---------------------------------------------------------------
    async def version(self) -> str:
        return "fake-1.0"

    def _add(
        self, prefix: str, config: ContainerConfig | SandboxConfig, state: ContainerState
    ) -> str:
        container_id = f"{prefix}{next(self._ids):04d}"
        running = state is ContainerState.RUNNING
        self.containers[container_id] = FakeContainer(
            info=ContainerInfo(
                id=container_id,
                name=config.name,
                image=config.image,
                image_id=f"sha256:{config.image}",
                labels=dict(config.labels),
                state=state,
                pid=next(self._pids) if running else 0,
                created_at=utc_now(),
                started_at=utc_now() if running else "",
            ),
            config=config,
        )
        self._emit(container_id, "start" if running else "create")
        return container_id

    async def run_sandbox(self, config: SandboxConfig) -> str:
        if config.image not in self.images:
            raise ImageNotFoundError(f"sandbox image {config.image} is not present")
        return self._add("sandbox", config, ContainerState.RUNNING)

    async def create_container(self, config: ContainerConfig) -> str:
        if config.image not in self.images:
            raise ImageNotFoundError(f"image {config.image} is not present")
        if any(m.host_path == "" for m in config.mounts):
            raise ContainerCreateError(f"invalid mount in {config.name}")
        sandbox = self.containers.get(config.sandbox_id)
        if sandbox is None or sandbox.info.state is not ContainerState.RUNNING:
            raise ContainerCreateError(f"sandbox {config.sandbox_id} is not running")
        return self._add("container", config, ContainerState.CREATED)

    async def start_container(self, container_id: str) -> None:
        fake = self._get(container_id)
        config = fake.config
        if (
            isinstance(config, ContainerConfig)
            and config.entrypoint
            and (config.entrypoint[0] in self.missing_commands)
        ):
            fake.info = replace(
                fake.info,
                state=ContainerState.EXITED,
                exit_code=127,
                error="executable file not found",
            )
            raise ContainerStartError(f"{config.entrypoint[0]}: executable file not found")
        fake.info = replace(
            fake.info,
            state=ContainerState.RUNNING,
            pid=next(self._pids),
            started_at=utc_now(),
            exit_code=None,
            finished_at="",
        )
        self._emit(container_id, "start")

    async def stop_container(self, container_id: str, *, timeout: float) -> None:
        fake = self.containers.get(container_id)
        if fake is None:
            return
        fake.stop_timeouts.append(timeout)
        if fake.info.state is ContainerState.RUNNING:
            self.exit_container(container_id, exit_code=137)

    async def remove_container(self, container_id: str) -> None:
        if container_id in self.containers:
            self._emit(container_id, "destroy")
            del self.containers[container_id]

    async def inspect_container(self, container_id: str) -> ContainerInfo:
        return self._get(container_id).info

    async def list_containers(
        self, *, labels: Mapping[str, str] | None = None
    ) -> list[ContainerSummary]:
        wanted = dict(labels or {})
        return [
            ContainerSummary(
                c.info.id, dict(c.info.labels), c.info.state, c.created, c.info.image_id
            )
            for c in self.containers.values()
            if c.info.pod_uid and all(c.info.labels.get(k) == v for k, v in wanted.items())
        ]

    async def exec_in_container(
        self, container_id: str, command: list[str], *, timeout: float
    ) -> ExecResult:
        fake = self._get(container_id)
        if fake.info.state is not ContainerState.RUNNING:
            raise ContainerNotFoundError(f"container {container_id} is not running")
        return ExecResult(exit_code=self.exec_results.get(tuple(command), 0), output=b"")

    async def container_logs(
        self, container_id: str, *, tail: int | None = None, timestamps: bool = False
    ) -> bytes:
        self._get(container_id)
        lines = self.logs.get(container_id, b"").splitlines(keepends=True)
        return b"".join(lines[-tail:] if tail else lines)

    async def follow_logs(
        self, container_id: str, *, tail: int | None = None, timestamps: bool = False
    ) -> AsyncIterator[bytes]:
        yield await self.container_logs(container_id, tail=tail, timestamps=timestamps)

    async def image_present(self, image: str) -> bool:
        return image in self.images

    async def image_id(self, image: str) -> str:
        if image not in self.images:
            raise ImageNotFoundError(f"image {image} is not present")
        return f"sha256:{image}"

    async def pull_image(self, image: str) -> None:
        self.pulls.append(image)
        if image not in self.pullable:
            raise ImagePullError(f"pulling {image} failed: not found")
        self.images.add(image)

    async def list_images(self) -> list[ImageInfo]:
        return [
            ImageInfo(f"sha256:{name}", (name,), self.image_sizes.get(name, 1))
            for name in sorted(self.images)
        ]

    async def remove_image(self, image_id: str) -> None:
        name = image_id.removeprefix("sha256:")
        if image_id in await self.all_container_image_ids():
            raise ContainerRuntimeError(f"image {name} is in use")
        self.images.discard(name)

    async def all_container_image_ids(self) -> set[str]:
        return {c.info.image_id for c in self.containers.values()}

    async def events(self) -> AsyncIterator[RuntimeEvent]:
        while True:
            yield await self._events.get()

    async def close(self) -> None:
        return None
