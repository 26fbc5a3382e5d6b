"""Starting containers, and showing the ones that must wait (CrashLoopBackOff).

The decision which container to start, with which attempt number, or to keep waiting is
``actions.compute_pod_actions``'s; this module only carries it out: prepare what every
container of the pod mounts (volumes with their ConfigMaps, Secrets and ServiceAccount
tokens, ``/etc/hosts``) on every pass, so changed contents reach running containers; make
the image present (``images``), create and start the container, and turn each failure into
the waiting reason kubelet would show (CreateContainerConfigError, CreateContainerError,
ErrImagePull, RunContainerError) plus an Event. Every restart counts as an attempt for the
restart back-off, so the next one waits longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiclient.backoff import KeyedBackoff
from nodeagent import volumes
from nodeagent.actions import BackOff, ContainerToStart, backoff_key
from nodeagent.api import PodApi, PodRecord
from nodeagent.container_spec import (
    ContainerConfigError,
    build_container_config,
    find_container,
    hosts_file_content,
)
from nodeagent.images import ImagePuller
from nodeagent.mounts import Mounter
from nodeagent.projection import VolumeSetupError
from nodeagent.runtime.interface import (
    KIND_APP,
    ContainerConfig,
    ContainerCreateError,
    ContainerInfo,
    ContainerNotFoundError,
    ContainerRuntime,
    ContainerStartError,
    ImageNotFoundError,
)
from nodeagent.service_env import ServiceLister
from nodeagent.tokens import TokenError, TokenKey, TokenManager

CONFIG_ERROR_RETRY_SECONDS = 10.0  # a spec that cannot run as written; it may be fixed
IMAGE_GONE_RETRY_SECONDS = 2.0  # the image vanished between the check and the create


@dataclass(frozen=True)
class StartEnvironment:
    """What every container of one pod needs, prepared once per pass."""

    sandbox: ContainerInfo
    pod_ip: str | None
    volume_paths: dict[str, str]
    config_maps: dict[str, dict]
    hosts_file: str
    secrets: dict[str, dict] = field(default_factory=dict)
    refresh_at: float | None = None  # when a ServiceAccount token must be fetched again


@dataclass(frozen=True)
class StartOutcome:
    info: ContainerInfo | None = None  # the new container as inspected, if one was made
    wait: float | None = None  # seconds until the next try, when it must be retried


class ContainerStarter:
    def __init__(
        self,
        runtime: ContainerRuntime,
        *,
        api: PodApi,
        images: ImagePuller,
        backoff: KeyedBackoff,
        host_ip: str | None,
        data_dir: Path,
        clock: Callable[[], float],
        tokens: TokenManager,
        mounter: Mounter,
        services: ServiceLister | None = None,
    ) -> None:
        self.runtime = runtime
        self.api = api
        self.images = images
        self.backoff = backoff
        self.host_ip = host_ip
        self.data_dir = data_dir
        self.clock = clock
        self.tokens = tokens
        self.mounter = mounter
        self.services = services

    async def prepare(
        self, record: PodRecord, *, sandbox: ContainerInfo, pod_ip: str | None
    ) -> StartEnvironment:
        """Volumes (ConfigMaps, Secrets and tokens fetched and rewritten if changed), and the
        hosts file; raises ContainerConfigError (VolumeSetupError for a volume) when the
        pod's volumes cannot be made as written."""
        pod = record.pod
        namespace = pod["metadata"]["namespace"]
        config_maps = await self.api.config_maps(namespace, volumes.config_map_names(pod))
        secrets = await self.api.secrets(namespace, volumes.secret_names(pod))
        tokens = await self._tokens(pod)
        sources = volumes.VolumeSources(config_maps=config_maps, secrets=secrets, tokens=tokens)
        volume_paths = await asyncio.to_thread(
            volumes.prepare_volumes,
            pod,
            data_dir=self.data_dir,
            config_maps=config_maps,
            sources=sources,
            mounter=self.mounter,
        )
        hosts_file = await asyncio.to_thread(self._write_hosts_file, record, pod_ip)
        return StartEnvironment(
            sandbox,
            pod_ip,
            volume_paths,
            config_maps,
            hosts_file,
            secrets=secrets,
            refresh_at=self.tokens.next_refresh(record.uid),
        )

    async def _tokens(self, pod: dict[str, Any]) -> dict[volumes.TokenSlot, str]:
        """The ServiceAccount tokens the pod's projected volumes need, from the node's token
        manager (a TokenRequest only when one is missing or due for a refresh)."""
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        found: dict[volumes.TokenSlot, str] = {}
        for slot, volume in volumes.token_slots(pod).items():
            audience, seconds = slot
            key = TokenKey(
                namespace=meta["namespace"],
                service_account=account,
                audiences=(audience,) if audience else (),
                expiration_seconds=seconds,
                pod_name=meta["name"],
                pod_uid=meta["uid"],
            )
            try:
                found[slot] = (await self.tokens.get(key)).token
            except TokenError as err:
                raise VolumeSetupError(volume, str(err)) from err
        return found

    def _write_hosts_file(self, record: PodRecord, pod_ip: str | None) -> str:
        path = volumes.pod_dir(self.data_dir, record.uid) / "etc-hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        content = hosts_file_content(pod_ip=pod_ip, hostname=record.pod["metadata"]["name"])
        if not path.exists() or path.read_text() != content:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(content)
            tmp.replace(path)
        return str(path)

    def back_off(self, record: PodRecord, wait: BackOff) -> None:
        """Show CrashLoopBackOff (and say so once in an Event)."""
        meta = record.pod["metadata"]
        message = (
            f"back-off {wait.delay:.0f}s restarting failed container={wait.name} "
            f"pod={meta['name']}_{meta['namespace']}({record.uid})"
        )
        if record.waiting_reason(wait.name) != "CrashLoopBackOff":
            record.event(
                "Warning", "BackOff", "Back-off restarting failed container " + wait.name
            )
        record.wait(wait.name, "CrashLoopBackOff", message)

    async def start(
        self, record: PodRecord, start: ContainerToStart, env: StartEnvironment
    ) -> StartOutcome:
        key = backoff_key(record.uid, start.name)
        if start.reset_backoff:
            self.backoff.reset(key)
        if start.remove_first is not None:
            await self.runtime.remove_container(start.remove_first)  # an interrupted attempt
        container = find_container(record.pod, start.name, kind=start.kind)
        if container is None:  # the spec changed under us; the next pass decides again
            return StartOutcome()
        pull_wait = await self.images.ensure(record, container)
        if pull_wait is not None:
            return StartOutcome(wait=pull_wait)
        try:
            config = build_container_config(
                record.pod,
                container,
                sandbox_id=env.sandbox.id,
                restart_count=start.restart_count,
                kind=start.kind,
                pod_ip=env.pod_ip,
                host_ip=self.host_ip,
                volume_paths=env.volume_paths,
                config_maps=env.config_maps,
                secrets=env.secrets,
                service_env=self.services.env_for(record.pod) if self.services else None,
                hosts_file=env.hosts_file if start.kind == KIND_APP else None,
            )
        except ContainerConfigError as err:
            record.failed(start.name, "CreateContainerConfigError", str(err))
            return StartOutcome(wait=CONFIG_ERROR_RETRY_SECONDS)
        return await self._create_and_start(record, start, config, key)

    async def _create_and_start(
        self, record: PodRecord, start: ContainerToStart, config: ContainerConfig, key: str
    ) -> StartOutcome:
        name = start.name
        try:
            container_id = await self.runtime.create_container(config)
        except ContainerCreateError as err:
            record.failed(name, "CreateContainerError", str(err))
            return StartOutcome(wait=CONFIG_ERROR_RETRY_SECONDS)
        except ImageNotFoundError as err:  # removed between the check and the create
            record.failed(name, "ErrImagePull", str(err))
            return StartOutcome(wait=IMAGE_GONE_RETRY_SECONDS)
        record.event("Normal", "Created", f"Created container {name}")
        if start.restart_count > 0:
            self.backoff.attempted(key, now=self.clock())
        try:
            await self.runtime.start_container(container_id)
        except ContainerStartError as err:
            record.failed(name, "RunContainerError", str(err))
            self.backoff.attempted(key, now=self.clock())
            return StartOutcome(info=await self._inspect(container_id))
        record.clear(name)
        record.event("Normal", "Started", f"Started container {name}")
        return StartOutcome(info=await self._inspect(container_id))

    async def _inspect(self, container_id: str) -> ContainerInfo | None:
        try:
            return await self.runtime.inspect_container(container_id)
        except ContainerNotFoundError:  # removed meanwhile: the next pass sees it
            return None
