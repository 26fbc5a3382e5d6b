"""Garbage collection of dead containers, so restarts do not fill the disk.

Containers: for every (pod, container) the newest instance and the one before it are kept:
the first is what status reports, the second is what ``kubectl logs --previous`` reads and
what ``lastState`` shows. Older exited instances go, as do exited sandboxes older than the
pod's newest one. Running containers and pods' newest objects are never touched, so GC can
never change what a pod looks like. (Container logs are size-capped by the runtime's log
options.)

Images (kubelet's image GC thresholds): when the image filesystem is more than 85 % used,
images that no container on the host uses are removed, largest first, until it is below
80 %. The pause image is never removed, and removal is never forced, so Docker itself
refuses an image that a container (ours or anyone's) still uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from dataclasses import dataclass

import psutil

from nodeagent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    ContainerSummary,
    ImageInfo,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskUsage:
    total: int
    used: int
    percent: float


GC_PERIOD_SECONDS = 60.0
KEEP_PER_CONTAINER = 2  # the current instance and the previous one
IMAGE_GC_HIGH_PERCENT = 85.0
IMAGE_GC_LOW_PERCENT = 80.0
DOCKER_ROOT = "/var/lib/docker"


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


def select_images(
    images: list[ImageInfo], *, in_use: set[str], protected: set[str], bytes_to_free: int
) -> list[str]:
    """Unused, unprotected images to remove (largest first) to free ``bytes_to_free`` (pure)."""
    candidates = sorted(
        (i for i in images if i.id not in in_use and not protected.intersection(i.tags)),
        key=lambda i: i.size,
        reverse=True,
    )
    chosen, freed = [], 0
    for image in candidates:
        if freed >= bytes_to_free:
            break
        chosen.append(image.id)
        freed += image.size
    return chosen


async def collect_images(
    runtime: ContainerRuntime, *, protected: set[str], usage: DiskUsage
) -> list[str]:
    """Remove unused images when the image filesystem is above the high threshold."""
    if usage.percent <= IMAGE_GC_HIGH_PERCENT:
        return []
    bytes_to_free = int(usage.used - usage.total * IMAGE_GC_LOW_PERCENT / 100)
    chosen = select_images(
        await runtime.list_images(),
        in_use=await runtime.all_container_image_ids(),
        protected=protected,
        bytes_to_free=bytes_to_free,
    )
    removed = []
    for image_id in chosen:
        try:
            await runtime.remove_image(image_id)
        except ContainerRuntimeError as err:  # in use after all, or already gone
            log.info("image GC kept %s: %s", image_id[:19], err)
            continue
        removed.append(image_id)
    if removed:
        log.info("image GC removed %d images (disk %.0f%% used)", len(removed), usage.percent)
    return removed


def image_fs_usage() -> DiskUsage:
    path = DOCKER_ROOT if os.path.exists(DOCKER_ROOT) else "/"
    usage = psutil.disk_usage(path)
    return DiskUsage(total=usage.total, used=usage.used, percent=usage.percent)


async def run_gc(
    runtime: ContainerRuntime, *, protected_images: set[str], period: float = GC_PERIOD_SECONDS
) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            await collect_containers(runtime)
            usage = await asyncio.to_thread(image_fs_usage)
            await collect_images(runtime, protected=protected_images, usage=usage)
        except ContainerRuntimeError as err:
            log.warning("container garbage collection failed: %s", err)
        except Exception:  # GC is best effort; it must never take the agent down
            log.exception("container garbage collection failed unexpectedly")
