"""Image presence per ``imagePullPolicy``, with a per-pod, per-image pull back-off.

``Never`` only checks; ``IfNotPresent`` pulls what is missing; ``Always`` pulls every time
a container is started. A failed pull is ``ErrImagePull`` and starts the back-off (10 s
doubling to 5 min, as kubelet); while it runs the container shows ``ImagePullBackOff``
and no pull is tried. A successful pull forgets the back-off. Time spent pulling is added
to the pod's record, because the start-up SLI excludes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from apiclient.backoff import KeyedBackoff
from nodeagent.api import PodRecord
from nodeagent.container_spec import default_pull_policy
from nodeagent.runtime.interface import ContainerRuntime, ImagePullError

# How long a container whose image may never be pulled waits before the next check.
NEVER_PULL_RETRY_SECONDS = 10.0


def pull_key(pod_uid: str, image: str) -> str:
    return f"{pod_uid}/pull/{image}"


class ImagePuller:
    def __init__(
        self, runtime: ContainerRuntime, *, backoff: KeyedBackoff, clock: Callable[[], float]
    ) -> None:
        self.runtime = runtime
        self.backoff = backoff
        self.clock = clock

    async def ensure(self, record: PodRecord, container: Mapping[str, Any]) -> float | None:
        """Make the image present per imagePullPolicy; a delay means "not yet, back off"."""
        image = container["image"]
        name = container["name"]
        policy = container.get("imagePullPolicy") or default_pull_policy(image)
        present = await self.runtime.image_present(image)
        if policy == "Never":
            if present:
                return None
            record.failed(
                name,
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never',
            )
            return NEVER_PULL_RETRY_SECONDS
        if present and policy == "IfNotPresent":
            return None
        key = pull_key(record.uid, image)
        remaining = self.backoff.remaining(key, now=self.clock())
        if remaining > 0:
            message = f'Back-off pulling image "{image}"'
            if record.waiting_reason(name) != "ImagePullBackOff":
                record.event("Normal", "BackOff", message)
            record.wait(name, "ImagePullBackOff", message)
            return remaining
        return await self._pull(record, name, image, key)

    async def _pull(self, record: PodRecord, name: str, image: str, key: str) -> float | None:
        record.event("Normal", "Pulling", f'Pulling image "{image}"')
        started = time.monotonic()
        try:
            await self.runtime.pull_image(image)
        except ImagePullError as err:
            record.pull_seconds += time.monotonic() - started
            self.backoff.attempted(key, now=self.clock())
            record.failed(name, "ErrImagePull", str(err))
            return self.backoff.current_delay(key)
        self.backoff.reset(key)
        took = time.monotonic() - started
        record.pull_seconds += took
        record.event("Normal", "Pulled", f'Successfully pulled image "{image}" in {took:.3f}s')
        return None
