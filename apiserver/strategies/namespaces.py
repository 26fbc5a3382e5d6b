"""Namespaces: Active on create; deleting one deletes its content first.

Deletion is two steps. The namespace is first stored as Terminating (deletionTimestamp
set), so that the store refuses new content in it from then on; then everything in it is
deleted and only then the namespace itself. No object outlives its namespace, except one
a finalizer holds: it is marked deleted and goes when the finalizer is removed. This is
the namespace controller's work done inline, at once rather than gracefully.
``default``, ``kube-system`` and ``kube-public`` can never be deleted.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import orjson

from apiserver import status
from apiserver.admission import defaulting, validation
from apiserver.strategies.base import DeleteOptions, Obj, StatusStrategy

if TYPE_CHECKING:
    from apiserver.rest import RestStore

IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})


class NamespaceStrategy(StatusStrategy):
    terminate_before_remove = True

    def __init__(self) -> None:
        super().__init__(status={"phase": "Active"}, default=defaulting.namespace,
                         validate=validation.namespace)

    def check_delete(self, name: str) -> None:
        if name in IMMORTAL_NAMESPACES:
            raise status.StatusError(403, "Forbidden", f'namespaces "{name}" is forbidden: '
                                     "this namespace may not be deleted",
                                     details={"name": name, "kind": "namespaces"})

    def prepare_for_delete(self, obj: Obj) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"

    async def before_remove(self, obj: Obj, store: RestStore) -> None:
        name = obj["metadata"]["name"]
        now = DeleteOptions(grace_period_seconds=0)
        for rt in store.registry.resources:
            if not rt.namespaced:
                continue
            for item in (await store.storage.range(rt.namespace_prefix(name))).kvs:
                item_name = orjson.loads(item.value)["metadata"]["name"]
                with contextlib.suppress(status.StatusError):
                    await store.delete(rt, name, item_name, now)


STRATEGY = NamespaceStrategy()
