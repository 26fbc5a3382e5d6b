"""NodeRestriction on the REST store's write path (a :class:`~apiserver.rest.WriteAdmission`).

Why: :mod:`apiserver.admission.noderestriction` decides purely from the request's pieces;
this adapter feeds it what the store knows at the moment of a write (the request's
user, the object as it would be stored, the stored one) and the stored pods and nodes it
looks up, read from the watch cache as kube's plugin reads its informers' listers.

Only requests whose user is a node (``system:node:<name>`` in ``system:nodes``) are
looked at; the server's own writes (no request context) never are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from apiserver.admission.noderestriction import admit
from apiserver.auth.context import RequestContext
from apiserver.auth.node import node_identity
from apiserver.registry import ResourceType

if TYPE_CHECKING:
    from apiserver.rest import RestStore

Obj = dict[str, Any]
PLUGIN_NAME = "NodeRestriction"


class NodeRestriction:
    """kube's NodeRestriction admission plugin, on CREATE, UPDATE and DELETE."""

    name = PLUGIN_NAME

    async def validate(self, ctx: RequestContext | None, operation: str, rt: ResourceType,
                       subresource: str | None, new: Obj | None, old: Obj | None, *,
                       name: str, namespace: str | None, store: RestStore) -> None:
        if ctx is None or not node_identity(ctx.user)[1]:
            return
        admit(ctx.user, operation, rt.plural, subresource or "", new, old, name=name,
              namespace=namespace or "", api_group=rt.group,
              get_pod=lambda ns, pod: _cached(store, "pods", ns, pod),
              get_node=lambda node: _cached(store, "nodes", None, node))


def _cached(store: RestStore, plural: str, namespace: str | None, name: str) -> Obj | None:
    rt = store.registry.lookup("", "v1", plural)
    if rt is None or store.cache is None:
        return None
    cached = store.cache.get(rt.key(namespace, name))
    return orjson.loads(cached.raw) if cached is not None else None
