"""The container runtime contract the node agent is written against.

Everything the agent knows about a pod's containers can be rebuilt from the runtime alone:
each object carries the labels below, so after an agent restart (even ``kill -9``) a relist
recovers which pod, which container and which attempt every container belongs to. The
protocol is deliberately small (kubelet's CRI in miniature) so a stateful fake can implement
it for unit tests, while the Docker implementation is proven by end-to-end tests.

Invariants every implementation keeps:
- calls never block the event loop and never hang: each has a timeout and raises
  ``RuntimeTimeoutError`` when it expires;
- runtime-specific errors never escape: callers only see the ``ContainerRuntimeError`` family.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

LABEL_POD_UID = "io.keelson.pod.uid"
# Which agent made a container: several agents (or clusters) may share one dockerd, and
# each must see, adopt and clean up only its own containers.
LABEL_AGENT = "io.keelson.agent"
LABEL_POD_NAMESPACE = "io.keelson.pod.namespace"
LABEL_POD_NAME = "io.keelson.pod.name"
LABEL_CONTAINER_NAME = "io.keelson.container"
LABEL_RESTART_COUNT = "io.keelson.restart-count"
LABEL_TYPE = "io.keelson.type"
# Which init/app list a container came from; lets status rebuild both lists from labels.
LABEL_CONTAINER_KIND = "io.keelson.container.kind"
# Hash of the container's spec: a running container whose spec changed is replaced.
LABEL_CONTAINER_HASH = "io.keelson.container.hash"
TYPE_SANDBOX = "sandbox"
TYPE_CONTAINER = "container"
KIND_INIT = "init"
KIND_APP = "app"


class ContainerRuntimeError(Exception):
    """Base of every error a runtime raises; the message says what failed on which object."""


class RuntimeUnavailableError(ContainerRuntimeError):
    """The runtime daemon cannot be reached; retry later."""


class RuntimeTimeoutError(RuntimeUnavailableError):
    """A runtime call did not finish within its timeout."""


class ContainerNotFoundError(ContainerRuntimeError):
    """The container (or sandbox) does not exist (any more)."""


class ImageNotFoundError(ContainerRuntimeError):
    """The image is not present locally (and the caller did not ask to pull it)."""


class ImagePullError(ContainerRuntimeError):
    """Pulling the image failed: unknown name, unreachable registry, no permission."""


class ContainerCreateError(ContainerRuntimeError):
    """The runtime refused the container config (bad mount, bad user, bad command...)."""


class ContainerStartError(ContainerRuntimeError):
    """The container was created but could not be started (e.g. the command does not exist)."""


class ContainerState(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ContainerSummary:
    """What a cheap list returns: enough for PLEG to notice changes without inspecting."""

    id: str
    labels: Mapping[str, str]
    state: ContainerState
    created: float  # unix seconds
    image_id: str = ""

    @property
    def pod_uid(self) -> str:
        return self.labels.get(LABEL_POD_UID, "")

    @property
    def is_sandbox(self) -> bool:
        return self.labels.get(LABEL_TYPE) == TYPE_SANDBOX


@dataclass(frozen=True)
class ContainerInfo:
    """A full inspect: everything container status reporting needs."""

    id: str
    name: str
    image: str
    image_id: str
    labels: Mapping[str, str]
    state: ContainerState
    pid: int = 0
    exit_code: int | None = None
    error: str = ""
    oom_killed: bool = False
    created_at: str = ""  # RFC 3339, "" when unknown
    started_at: str = ""
    finished_at: str = ""

    @property
    def pod_uid(self) -> str:
        return self.labels.get(LABEL_POD_UID, "")

    @property
    def container_name(self) -> str:
        return self.labels.get(LABEL_CONTAINER_NAME, "")

    @property
    def restart_count(self) -> int:
        try:
            return int(self.labels.get(LABEL_RESTART_COUNT, "0"))
        except ValueError:
            return 0


def newest_first(instances: Iterable[ContainerInfo]) -> list[ContainerInfo]:
    """Instances of one container, the current attempt first: by restart count (a label, so
    it survives agent restarts), then by creation time."""
    return sorted(instances, key=lambda i: (i.restart_count, i.created_at), reverse=True)


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    size: int  # bytes


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class SandboxConfig:
    name: str
    image: str
    labels: Mapping[str, str]
    hostname: str


@dataclass(frozen=True)
class ContainerConfig:
    """A runtime-neutral container description, already resolved from the pod spec."""

    name: str
    image: str
    labels: Mapping[str, str]
    sandbox_id: str  # the container joins this sandbox's network and IPC namespaces
    hostname: str
    entrypoint: list[str] | None = None  # pod `command`
    args: list[str] | None = None  # pod `args`
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    mounts: tuple[Mount, ...] = ()
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    memory_limit: int | None = None
    log_max_size: str = "10m"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes


@dataclass(frozen=True)
class RuntimeEvent:
    """A container lifecycle event (start, die, destroy...) for the PLEG to react to."""

    container_id: str
    action: str
    labels: Mapping[str, str]

    @property
    def pod_uid(self) -> str:
        return self.labels.get(LABEL_POD_UID, "")


class ContainerRuntime(Protocol):
    async def version(self) -> str:
        """The runtime's version string, e.g. ``20.10.24``."""
        ...

    async def run_sandbox(self, config: SandboxConfig) -> str:
        """Create and start a sandbox (no runtime networking); return its id."""
        ...

    async def create_container(self, config: ContainerConfig) -> str: ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, *, timeout: float) -> None:
        """Send the stop signal, wait up to ``timeout`` seconds, then SIGKILL."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Force-remove; removing a missing container is not an error."""
        ...

    async def inspect_container(self, container_id: str) -> ContainerInfo: ...

    async def list_containers(
        self, *, labels: Mapping[str, str] | None = None
    ) -> list[ContainerSummary]:
        """All containers (any state) carrying every given label (and a pod uid label)."""
        ...

    async def exec_in_container(
        self, container_id: str, command: list[str], *, timeout: float
    ) -> ExecResult: ...

    async def container_logs(
        self, container_id: str, *, tail: int | None = None, timestamps: bool = False
    ) -> bytes: ...

    def follow_logs(
        self, container_id: str, *, tail: int | None = None, timestamps: bool = False
    ) -> AsyncIterator[bytes]:
        """Log chunks as they are written, until the container stops or the caller stops."""
        ...

    async def image_present(self, image: str) -> bool: ...

    async def image_id(self, image: str) -> str: ...

    async def pull_image(self, image: str) -> None: ...

    async def list_images(self) -> list[ImageInfo]: ...

    async def remove_image(self, image_id: str) -> None:
        """Remove an unused image; an image still used by any container is refused."""
        ...

    async def all_container_image_ids(self) -> set[str]:
        """Images used by any container on the host, keelson's or not."""
        ...

    def events(self) -> AsyncIterator[RuntimeEvent]:
        """Container events for keelson-labelled objects until the stream breaks."""
        ...

    async def close(self) -> None: ...
