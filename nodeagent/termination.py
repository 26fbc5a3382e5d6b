"""Killing containers and pods: the preStop hook, the grace period, then SIGKILL.

``kill_container`` stops one container while its pod lives on (liveness failure, changed
spec, replaced sandbox) with the pod's grace period: the runtime sends SIGTERM, waits, and
sends SIGKILL. ``kill_pod`` ends a pod being deleted: a ``Killing`` Event per running
container, the preStop hooks of app containers run together within the grace period, the
containers get the grace that remains, then everything of the pod goes -- containers,
sandboxes, veth and IP, volumes (their tmpfs unmounted first). ``remove_orphan`` removes
what is left of a pod the API no longer knows, with a short fixed grace;
``remove_orphan_dirs`` the directories of pods that have nothing else left (kubelet's
``cleanupOrphanedPodDirs``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp

from nodeagent import volumes
from nodeagent.actions import ContainerToKill, PodActions, PodView
from nodeagent.api import PodRecord
from nodeagent.container_spec import find_container
from nodeagent.mounts import Mounter, MountError
from nodeagent.network.manager import PodNetworkManager
from nodeagent.runtime.interface import (
    ContainerInfo,
    ContainerNotFoundError,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    ContainerSummary,
)

log = logging.getLogger(__name__)

ORPHAN_GRACE_SECONDS = 2


class Terminator:
    def __init__(
        self,
        runtime: ContainerRuntime,
        network: PodNetworkManager,
        *,
        data_dir: Path,
        mounter: Mounter,
    ) -> None:
        self.runtime = runtime
        self.network = network
        self.data_dir = data_dir
        self.mounter = mounter

    async def kill_container(
        self, record: PodRecord, kill: ContainerToKill, *, grace: int
    ) -> ContainerInfo | None:
        """Stop one container; returns it as inspected afterwards (None if it is gone)."""
        if kill.reason.restarts:
            record.event(
                "Normal", "Killing", f"{kill.reason}, container {kill.name} will be restarted"
            )
        await self.runtime.stop_container(kill.container_id, timeout=grace)
        try:
            return await self.runtime.inspect_container(kill.container_id)
        except ContainerNotFoundError:
            return None

    async def kill_pod(
        self, record: PodRecord, view: PodView, actions: PodActions, *, pod_ip: str | None
    ) -> None:
        """Stop every container gracefully, then remove all the pod has on the node."""
        grace = actions.grace_seconds
        kills = actions.containers_to_kill
        for kill in kills:
            record.event("Normal", "Killing", f"Stopping container {kill.name}")
        deadline = time.monotonic() + grace
        await asyncio.gather(*(self._pre_stop(record, kill, grace, pod_ip) for kill in kills))
        remaining = max(0.0, deadline - time.monotonic())
        await asyncio.gather(
            *(self.runtime.stop_container(kill.container_id, timeout=remaining) for kill in kills)
        )
        for sandbox_id in actions.sandboxes_to_remove:
            await self.runtime.stop_container(sandbox_id, timeout=0)
        await self._remove_all(record.uid, view.all_ids(), actions.sandboxes_to_remove)

    async def remove_orphan(self, pod_uid: str, summaries: Sequence[ContainerSummary]) -> None:
        """Remove the containers (``summaries``, all of one pod) and networking of a pod
        that no longer exists."""
        for summary in summaries:
            if summary.state is ContainerState.RUNNING:
                await self.runtime.stop_container(summary.id, timeout=ORPHAN_GRACE_SECONDS)
        try:
            await self._remove_all(
                pod_uid, [s.id for s in summaries], [s.id for s in summaries if s.is_sandbox]
            )
        except MountError as err:  # the directory stays; the next clean-up tries again
            log.warning("pod %s: cannot remove its directory: %s", pod_uid, err)

    async def remove_orphan_dirs(self, keep: Callable[[str], bool]) -> list[str]:
        """Unmount and remove ``DATA_DIR/pods/<uid>`` of every pod ``keep`` refuses; asked
        right before each removal, so a pod that appeared meanwhile keeps its directory."""
        removed = []
        for uid in sorted(await asyncio.to_thread(volumes.pod_dir_uids, self.data_dir)):
            if keep(uid):
                continue
            try:
                await asyncio.to_thread(
                    volumes.remove_pod_dir, self.data_dir, uid, mounter=self.mounter
                )
            except MountError as err:
                log.warning("pod %s: cannot remove its directory: %s", uid, err)
                continue
            removed.append(uid)
        return removed

    async def _remove_all(
        self, pod_uid: str, container_ids: Sequence[str], sandbox_ids: Sequence[str]
    ) -> None:
        for container_id in container_ids:
            await self.runtime.remove_container(container_id)
        await self.network.teardown(pod_uid=pod_uid, sandbox_ids=list(sandbox_ids))
        await asyncio.to_thread(
            volumes.remove_pod_dir, self.data_dir, pod_uid, mounter=self.mounter
        )

    async def _pre_stop(
        self, record: PodRecord, kill: ContainerToKill, grace: int, pod_ip: str | None
    ) -> None:
        spec = find_container(record.pod, kill.name)
        hook = ((spec or {}).get("lifecycle") or {}).get("preStop")
        if not hook or grace <= 0:
            return
        try:
            if "exec" in hook:
                await self.runtime.exec_in_container(
                    kill.container_id, list(hook["exec"]["command"]), timeout=grace
                )
            elif "httpGet" in hook and pod_ip:
                get = hook["httpGet"]
                url = f"http://{get.get('host') or pod_ip}:{get['port']}{get.get('path', '/')}"
                timeout = aiohttp.ClientTimeout(total=grace)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(url) as response,
                ):
                    await response.read()
        except (ContainerRuntimeError, aiohttp.ClientError, TimeoutError) as err:
            record.event("Warning", "FailedPreStopHook", f"PreStopHook failed: {err}")
