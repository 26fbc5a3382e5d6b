"""Writing the bootstrap RBAC policy at start, as kube-apiserver's ``rbac/bootstrap-roles``
post-start hook does.

Why: :mod:`apiserver.auth.bootstrap_policy` says what the default roles and bindings are
and how one stored object is reconciled with its default (add what is missing, never
take away what users added, leave ``autoupdate: "false"`` objects alone); this module
applies that to storage through the REST store, then settles the aggregated ClusterRoles
(``admin``, ``edit``, ``view``) with :func:`apiclient.rbac.aggregate_all` so they are
complete before the first request, not only once the controller manager runs.

Failures are logged per object and never stop the start: a cluster with a missing
default role still serves its ``system:masters`` users, who can repair it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from apiclient.rbac import aggregate_all
from apiserver import status
from apiserver.auth.bootstrap_policy import reconcile_result
from apiserver.registry import Registry
from apiserver.rest import DeleteOptions, RestStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]


async def reconcile_objects(store: RestStore, registry: Registry, wanted: Iterable[Obj]
                            ) -> dict[str, int]:
    """Create or update each default object as :func:`reconcile_result` says; counts of
    the operations done (``create``, ``update``, ``recreate``)."""
    done: dict[str, int] = {}
    for obj in wanted:
        rt = registry.by_kind(obj["apiVersion"], obj["kind"])
        assert rt is not None, obj["kind"]
        name = obj["metadata"]["name"]
        try:
            existing: Obj | None = await store.get(rt, None, name)
        except status.StatusError as error:
            if error.code != 404:
                raise
            existing = None
        result = reconcile_result(existing, obj)
        if result.protected or result.operation == "none" or result.obj is None:
            continue
        try:
            if result.operation == "update":
                await store.update(rt, None, name, result.obj)
            else:
                if result.operation == "recreate":
                    await store.delete(rt, None, name, DeleteOptions())
                result.obj["metadata"].pop("resourceVersion", None)
                await store.create(rt, None, result.obj)
        except status.StatusError as error:
            log.warning("bootstrap policy: could not %s %s %s: %s", result.operation,
                        obj["kind"], name, error.message)
            continue
        done[result.operation] = done.get(result.operation, 0) + 1
    return done


async def settle_aggregation(store: RestStore, registry: Registry) -> int:
    """Write the rules every aggregated ClusterRole should hold; how many changed."""
    rt = registry.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
    assert rt is not None and store.cache is not None
    await store.cache.wait_for_revision(await store.storage.current_revision())
    objects, _ = store.cache.list(rt.prefix)
    roles = [orjson.loads(cached.raw) for cached in objects]
    changed = aggregate_all(roles)
    for name, rules in changed.items():
        try:
            await store.update_with(rt, None, name,
                                    lambda role, rules=rules: {**role, "rules": rules})
        except status.StatusError as error:
            log.warning("bootstrap policy: could not aggregate ClusterRole %s: %s", name,
                        error.message)
    return len(changed)
