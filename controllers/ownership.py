"""Controller references and the claim rule shared by the ReplicaSet and Deployment loops.

An object belongs to a controller through its one ownerReference with ``controller:
true`` (client-go's ``ControllerRefManager``). Claiming follows Kubernetes exactly:
an owned object whose labels stopped matching is *released* (the reference removed), an
orphan whose labels match is *adopted* (unless the owner is being deleted), and an object
controlled by someone else is never touched. Both writes carry the object's
resourceVersion and uid, so a stale cache cannot adopt or release the wrong thing.

:class:`Expectations` is client-go's ``ControllerExpectations`` made level-triggered:
after a controller creates or deletes pods it records the *names* it is waiting for and,
until the informer's store shows them (or a timeout passes), it does not act on the
stale store again — otherwise a reconcile racing the watch would create the same
replicas twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from apiclient.client import ApiClient
from apiclient.errors import ConflictError, NotFoundError
from apiclient.meta import owner_reference
from apiclient.resources import Resource
from apiclient.selectors import LabelSelector
from apiclient.store import Store

__all__ = ["Expectations", "claim", "controller_of", "labels_of", "uid_of"]

# How long a write may stay unobserved before the store is trusted again (client-go: 5 min;
# shorter here because a lost event costs only one extra reconcile).
EXPECTATIONS_TIMEOUT = 60.0


def uid_of(obj: Mapping) -> str:
    return (obj.get("metadata") or {}).get("uid", "")


def labels_of(obj: Mapping) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def controller_of(obj: Mapping) -> dict | None:
    """The ownerReference with controller=true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _being_deleted(obj: Mapping) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


async def claim(client: ApiClient, res: Resource, owner: dict, selector: LabelSelector,
                candidates: Iterable[dict]) -> list[dict]:
    """The candidates ``owner`` controls after adopting matching orphans and releasing
    owned objects that no longer match (ClaimPods / ClaimReplicaSets)."""
    owner_uid = uid_of(owner)
    claimed = []
    for obj in candidates:
        ref = controller_of(obj)
        matches = selector.matches(labels_of(obj))
        if ref is not None:
            if ref.get("uid") != owner_uid:
                continue
            if matches or _being_deleted(obj):
                claimed.append(obj)
            elif not _being_deleted(owner):
                await _release(client, res, obj, owner_uid)
        elif matches and not _being_deleted(owner) and not _being_deleted(obj):
            adopted = await _adopt(client, res, obj, owner)
            if adopted is not None:
                claimed.append(adopted)
    return claimed


async def _adopt(client: ApiClient, res: Resource, obj: dict, owner: dict) -> dict | None:
    meta = obj["metadata"]
    refs = [*(meta.get("ownerReferences") or []), owner_reference(owner)]
    patch = {"metadata": {"ownerReferences": refs, "uid": meta["uid"],
                          "resourceVersion": meta["resourceVersion"]}}
    try:
        return await client.patch(res, meta["name"], patch, namespace=meta.get("namespace"))
    except (ConflictError, NotFoundError):
        return None  # changed or gone meanwhile: the next reconcile sees the new state


async def _release(client: ApiClient, res: Resource, obj: dict, owner_uid: str) -> None:
    meta = obj["metadata"]
    refs = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") != owner_uid]
    patch = {"metadata": {"ownerReferences": refs or None, "uid": meta["uid"],
                          "resourceVersion": meta["resourceVersion"]}}
    # Changed or gone meanwhile: the next reconcile sees the new state.
    with contextlib.suppress(ConflictError, NotFoundError):
        await client.patch(res, meta["name"], patch, namespace=meta.get("namespace"))


@dataclass
class _Pending:
    creates: set[str] = field(default_factory=set)
    deletes: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


class Expectations:
    """Writes a controller made and has not yet seen in its informer's store."""

    def __init__(self, *, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self._pending: dict[str, _Pending] = {}
        self._timeout = timeout

    def expect(self, key: str, *, creates: Iterable[str] = (),
               deletes: Iterable[str] = ()) -> None:
        pending = self._pending.setdefault(key, _Pending())
        pending.creates.update(creates)
        pending.deletes.update(deletes)
        pending.since = time.monotonic()

    def satisfied(self, key: str, store: Store) -> bool:
        """True when every expected create is in ``store`` and every expected delete is gone
        from it or terminating (or the expectations timed out)."""
        pending = self._pending.get(key)
        if pending is None:
            return True
        pending.creates = {name for name in pending.creates if name not in store}
        pending.deletes = {name for name in pending.deletes
                           if (obj := store.get(name)) is not None and not _being_deleted(obj)}
        if (pending.creates or pending.deletes) and \
                time.monotonic() - pending.since < self._timeout:
            return False
        del self._pending[key]
        return True

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)
