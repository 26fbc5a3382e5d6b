"""The pod sandbox: the infra container that holds a pod's network and IPC namespaces.

``create`` makes the infra image present, runs the sandbox and wires it to the bridge with
an IP; when either step fails nothing is left behind (the network manager gives the IP
back, the sandbox is removed) and every container of the pod waits in
``ContainerCreating`` with a ``FailedCreatePodSandBox`` Event. ``remove`` takes out a
sandbox being replaced; ``release`` stops a finished pod's sandbox and frees its IP while
its containers stay for ``kubectl logs``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from nodeagent.api import PodRecord
from nodeagent.container_spec import sandbox_labels, sandbox_name
from nodeagent.network.manager import PodNetworkManager
from nodeagent.runtime.interface import (
    ContainerInfo,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    RuntimeUnavailableError,
    SandboxConfig,
)

log = logging.getLogger(__name__)


class SandboxManager:
    def __init__(
        self,
        runtime: ContainerRuntime,
        network: PodNetworkManager,
        *,
        infra_image: str,
        clock: Callable[[], float],
    ) -> None:
        self.runtime = runtime
        self.network = network
        self.infra_image = infra_image
        self.clock = clock

    async def create(self, record: PodRecord) -> ContainerInfo | None:
        """A running sandbox with an IP, or None (the failure is recorded on the pod)."""
        pod = record.pod
        try:
            if not await self.runtime.image_present(self.infra_image):
                await self.runtime.pull_image(self.infra_image)
            sandbox_id = await self.runtime.run_sandbox(
                SandboxConfig(
                    name=sandbox_name(pod, f"{int(self.clock() * 1000) % 10**9}"),
                    image=self.infra_image,
                    labels=sandbox_labels(pod),
                    hostname=pod["metadata"]["name"],
                )
            )
        except RuntimeUnavailableError:
            raise
        except ContainerRuntimeError as err:
            self._failed(record, f"failed to create pod sandbox: {err}")
            return None
        info = await self.runtime.inspect_container(sandbox_id)
        try:
            await self.network.setup(
                pod_uid=record.uid, sandbox_id=sandbox_id, sandbox_pid=info.pid
            )
        except Exception as err:
            meta = pod["metadata"]
            log.warning(
                "pod %s/%s: network set-up failed: %s", meta.get("namespace"), meta["name"], err
            )
            await self.runtime.remove_container(sandbox_id)
            self._failed(record, f"failed to set up pod network: {err}")
            return None
        return info

    @staticmethod
    def _failed(record: PodRecord, message: str) -> None:
        record.event("Warning", "FailedCreatePodSandBox", message)
        record.wait_all("ContainerCreating", message)

    async def remove(self, pod_uid: str, sandbox_ids: Sequence[str]) -> None:
        """Stop, unwire and remove sandboxes (their containers were stopped already)."""
        for sandbox_id in sandbox_ids:
            await self.runtime.stop_container(sandbox_id, timeout=0)
            await self.network.teardown(pod_uid=pod_uid, sandbox_ids=[sandbox_id])
            await self.runtime.remove_container(sandbox_id)

    async def release(self, pod_uid: str, sandboxes: Sequence[ContainerInfo]) -> None:
        """Stop the sandboxes and free the pod's IP; the containers are kept."""
        for sandbox in sandboxes:
            if sandbox.state is ContainerState.RUNNING:
                await self.runtime.stop_container(sandbox.id, timeout=0)
        if sandboxes:
            await self.network.teardown(pod_uid=pod_uid, sandbox_ids=[s.id for s in sandboxes])
