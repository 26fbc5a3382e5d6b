"""Garbage collection of dead containers, so restarts do not fill the disk.

For every (pod, container) the newest instance and the one before it are kept: the first
is what status reports, the second is what ``kubectl logs --previous`` reads and what
``lastState`` shows. Older exited instances go, as do exited sandboxes older than the pod's
newest one. Running containers are never touched, and neither are pods' newest objects, so
GC can never change what a pod looks like. (Container logs are size-capped by the runtime's
log options; unused-image GC is not implemented yet.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from nodeagent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    ContainerSummary,
)

log = logging.getLogger(__name__)

GC_PERIOD_SECONDS = 60.0
KEEP_PER_CONTAINER = 2  # the current instance and the previous one


def select_garbage(containers: list[ContainerSummary]) -> list[str]:
    """Ids of exited containers that no status or log request can need any more (pure)."""
    groups: dict[tuple[str, str], list[ContainerSummary]] = defaultdict(list)
    for container in containers:
        kind = "sandbox" if container.is_sandbox else container.labels.get(LABEL_CONTAINER_NAME, "")
        groups[(container.pod_uid, kind)].append(container)
    garbage = []
    for (_, kind), instances in groups.items():
        keep = 1 if kind == "sandbox" else KEEP_PER_CONTAINER
        instances.sort(key=lambda c: c.created, reverse=True)
        garbage += [c.id for c in instances[keep:] if c.state is ContainerState.EXITED]
    return garbage


async def collect_containers(runtime: ContainerRuntime) -> list[str]:
    garbage = select_garbage(await runtime.list_containers())
    for container_id in garbage:
        with contextlib.suppress(ContainerRuntimeError):
            await runtime.remove_container(container_id)
    if garbage:
        log.info("garbage collection removed %d exited containers", len(garbage))
    return garbage


async def run_gc(runtime: ContainerRuntime, *, period: float = GC_PERIOD_SECONDS) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            await collect_containers(runtime)
        except ContainerRuntimeError as err:
            log.warning("container garbage collection failed: %s", err)
