"""The few API calls a node agent makes about pods: status PATCH, final delete, ConfigMaps,
Secrets, ServiceAccount tokens (TokenRequest) and Events; and ``PodRecord``, what a pod
worker tells about its pod besides runtime state.

Events are recorded fire-and-forget: losing one must never stall or fail a pod worker.
Identical events (same object, reason and message) are folded into one Event whose
``count`` grows, as Kubernetes' event recorder does, so a crash loop does not flood etcd.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any

from apiclient.client import ApiClient
from apiclient.errors import NotFoundError
from apiclient.events import EventRecorder
from apiclient.resources import CONFIGMAPS, PODS, SECRETS, SERVICEACCOUNTS
from nodeagent.container_spec import all_containers
from nodeagent.status import Waiting

log = logging.getLogger(__name__)


class PodApi:
    def __init__(self, client: ApiClient, *, node_name: str) -> None:
        self.client = client
        self.node_name = node_name
        self._tasks: set[asyncio.Task] = set()
        self._events = EventRecorder(client, component="kubelet", host=node_name)

    async def patch_status(self, pod: Mapping[str, Any], status: Mapping[str, Any]) -> dict:
        meta = pod["metadata"]
        return await self.client.patch(
            PODS,
            meta["name"],
            {"status": dict(status)},
            namespace=meta["namespace"],
            subresource="status",
            patch_type="merge",
        )

    async def delete_pod(self, pod: Mapping[str, Any]) -> None:
        """Final delete (grace 0) once every container is gone; a missing pod is fine."""
        meta = pod["metadata"]
        try:
            await self.client.delete(
                PODS, meta["name"], namespace=meta["namespace"], grace_period_seconds=0
            )
        except NotFoundError:
            return

    async def config_maps(self, namespace: str, names: set[str]) -> dict[str, dict]:
        """``GET .../configmaps/{name}`` each; a missing one is left out."""
        found: dict[str, dict] = {}
        for name in sorted(names):
            try:
                found[name] = await self.client.get(CONFIGMAPS, name, namespace=namespace)
            except NotFoundError:
                continue
        return found

    async def secrets(self, namespace: str, names: set[str]) -> dict[str, dict]:
        """``GET .../secrets/{name}`` each; a missing one is left out."""
        found: dict[str, dict] = {}
        for name in sorted(names):
            try:
                found[name] = await self.client.get(SECRETS, name, namespace=namespace)
            except NotFoundError:
                continue
        return found

    async def request_token(
        self, namespace: str, service_account: str, body: dict[str, Any]
    ) -> dict:
        """``POST .../serviceaccounts/{name}/token`` with a TokenRequest; the answer has
        ``status.token`` and ``status.expirationTimestamp``."""
        body = {**body, "metadata": {**body.get("metadata", {}), "name": service_account}}
        return await self.client.create(
            SERVICEACCOUNTS, body, namespace=namespace, subresource="token"
        )

    def record_event(
        self, pod: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._events.record(pod, event_type, reason, message)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget_pod(self, pod_uid: str) -> None:
        self._events.forget(pod_uid)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class PodRecord:
    """One pod as its worker reports it beyond what the runtime shows: Events, and the
    waiting reason (ErrImagePull, CrashLoopBackOff, ...) of each container that is not
    running. The executors write here; status reads ``waiting``. ``pod`` is always the
    newest version the worker has."""

    def __init__(self, pod: dict[str, Any], api: PodApi) -> None:
        self.pod = pod
        self.api = api
        self.waiting: dict[str, Waiting] = {}
        self.pull_seconds = 0.0  # time spent pulling images: excluded from the start-up SLI

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    def event(self, event_type: str, reason: str, message: str) -> None:
        self.api.record_event(self.pod, event_type, reason, message)

    def waiting_reason(self, name: str) -> str:
        waiting = self.waiting.get(name)
        return waiting.reason if waiting is not None else ""

    def wait(self, name: str, reason: str, message: str = "") -> None:
        self.waiting[name] = Waiting(reason, message)

    def wait_all(self, reason: str, message: str, *, running: Collection[str] = ()) -> None:
        """Every container of the pod waits for the same thing (sandbox, volumes); the
        ``running`` ones go on running and keep showing so."""
        for container in all_containers(self.pod):
            if container["name"] not in running:
                self.wait(container["name"], reason, message)

    def failed(self, name: str, reason: str, message: str) -> None:
        """A step towards running the container failed: waiting reason plus an Event."""
        self.wait(name, reason, message)
        self.event("Warning", "Failed", f"Error: {message}")

    def clear(self, name: str) -> None:
        self.waiting.pop(name, None)
