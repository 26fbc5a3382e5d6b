"""Recording core/v1 Events about objects, the way Kubernetes components do.

One recorder per component (scheduler, kubelet, ...): an event repeated for the same
object, reason and message updates the existing Event's ``count`` and
``lastTimestamp`` instead of creating a new object (client-go's EventCorrelator, in
small). Recording is best effort: a failure is logged, never raised, because an event
must not break the loop that reports it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from .client import ApiClient
from .errors import ApiError, TransportError
from .meta import utc_now
from .resources import EVENTS

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, client: ApiClient, *, component: str, host: str | None = None) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._recorded: dict[tuple[str, str, str], dict] = {}

    async def record(self, obj: Mapping[str, Any], event_type: str, reason: str,
                     message: str) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), reason, message)
        now = utc_now()
        try:
            previous = self._recorded.get(key)
            if previous is not None:
                body = {**previous, "count": previous.get("count", 1) + 1, "lastTimestamp": now}
                self._recorded[key] = await self.client.replace(EVENTS, body,
                                                                namespace=namespace)
                return
            source: dict[str, str] = {"component": self.component}
            if self.host:
                source["host"] = self.host
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}",
                             "namespace": namespace},
                "involvedObject": {"kind": obj.get("kind", "Pod"),
                                   "apiVersion": obj.get("apiVersion", "v1"),
                                   "name": meta["name"], "namespace": meta.get("namespace"),
                                   "uid": meta.get("uid")},
                "type": event_type,
                "reason": reason,
                "message": message,
                "source": source,
                "reportingComponent": self.component,
                "reportingInstance": self.host or "",
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            self._recorded[key] = await self.client.create(EVENTS, body, namespace=namespace)
        except (ApiError, TransportError) as err:
            self._recorded.pop(key, None)
            log.info("could not record event %s for %s/%s: %s", reason, namespace,
                     meta.get("name"), err)

    def forget(self, uid: str) -> None:
        """Drop what is remembered about an object that is gone."""
        for key in [k for k in self._recorded if k[0] == uid]:
            del self._recorded[key]
