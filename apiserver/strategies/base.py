"""What one kind does differently from the others, asked by the generic REST store.

This is Kubernetes' ``registry/rest`` strategy interfaces (RESTCreateStrategy,
RESTUpdateStrategy, RESTGracefulDeleteStrategy) together with the generic store's
BeginCreate/BeginUpdate and BeforeDelete/AfterDelete hooks, as one small class. The
store (:mod:`apiserver.rest`) owns object metadata, optimistic concurrency and storage,
and never asks which kind it holds: every per-kind decision is a method here.

:class:`Strategy` does nothing kind-specific, so a kind without behaviour of its own is a
registry row with ``Strategy(default=..., validate=...)``; a kind with a ``/status``
subresource uses :class:`StatusStrategy`; a kind with more (pods, services, namespaces,
nodes) has a module in this package with a subclass.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apiserver.auth.context import RequestContext
    from apiserver.rest import RestStore

Obj = dict[str, Any]
Cause = dict[str, str]
Defaulter = Callable[[Obj], None]
Validator = Callable[[Obj, Obj | None], list[Cause]]
Finish = Callable[[bool], Awaitable[None]]
"""Called once a write begun by :meth:`Strategy.begin_write` has succeeded (True) or
failed (False): commit or give back what the write reserved (Kubernetes' FinishFunc)."""


@dataclass(slots=True)
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    dry_run: bool = False


async def nothing_to_finish(success: bool) -> None:
    """The :data:`Finish` of a write that reserved nothing."""


class Strategy:
    """The hooks of one kind; every default is "nothing special".

    ``default`` and ``validate`` are the kind's functions from :mod:`apiserver.admission`
    (SetDefaults_* and Validate*); ``create_on_update`` is Kubernetes'
    AllowCreateOnUpdate (a PUT to a missing object creates it).
    """

    # Deleting with nothing to wait for first stores the object as being deleted and only
    # then removes it, so that nothing new is made inside it meanwhile (namespaces).
    terminate_before_remove = False
    # ``validate`` reports JSON type errors as 422 field causes, so the handlers' 400 type
    # check is skipped (RBAC, whose validation kube's issue asks to answer with paths).
    validates_types = False

    def __init__(self, *, default: Defaulter | None = None, validate: Validator | None = None,
                 create_on_update: bool = False) -> None:
        self._default = default
        self._validate = validate
        self.allow_create_on_update = create_on_update

    # --- create and update (RESTCreateStrategy, RESTUpdateStrategy) ------------------

    def default(self, obj: Obj) -> None:
        """Fill in what the client left out, in place."""
        if self._default is not None:
            self._default(obj)

    def validate(self, new: Obj, old: Obj | None) -> list[Cause]:
        """The causes that make ``new`` Invalid (``old`` is None on create)."""
        return [] if self._validate is None else self._validate(new, old)

    def prepare_for_create(self, obj: Obj) -> None:
        """Change a new object before validation; the store has set its metadata."""
        self.default(obj)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        """Change an update of the main resource before validation; the store has put
        back the metadata users cannot change."""
        self.default(new)

    def check_write(self, ctx: RequestContext | None, new: Obj, old: Obj | None) -> None:
        """Refuse, by raising a StatusError, a write the requester may not make although
        they may write this kind at all (kube's RBAC escalation guard); runs after
        validation, ``old`` is None on create, ``ctx`` None for the server's own writes."""

    async def begin_write(self, new: Obj, old: Obj | None, store: RestStore) -> Finish:
        """Reserve what ``new`` needs before it is stored (``old`` is None on create),
        filling it into ``new``; the returned :data:`Finish` settles the reservation."""
        return nothing_to_finish

    # --- delete (RESTDeleteStrategy, RESTGracefulDeleteStrategy) ---------------------

    def check_delete(self, name: str) -> None:
        """Raise a StatusError when the object called ``name`` may never be deleted."""

    def grace_period(self, obj: Obj, options: DeleteOptions) -> int:
        """Seconds the object stays, marked as being deleted, for its owner to finish."""
        return 0

    def prepare_for_delete(self, obj: Obj) -> None:
        """Change an object as it is marked as being deleted (deletionTimestamp set)."""

    async def before_remove(self, obj: Obj, store: RestStore) -> None:
        """Work that must be done before the object leaves storage."""

    async def after_remove(self, obj: Obj, store: RestStore) -> None:
        """Work done once the object has left storage."""


class StatusStrategy(Strategy):
    """A kind with a ``/status`` subresource: users write the spec, the status is written
    by its owner (controller, node agent) through ``/status`` only.

    So a create starts from :meth:`initial_status` whatever the client sent, and an update
    of the main resource keeps the stored status. ``status`` is that initial status when
    it does not depend on the object.
    """

    def __init__(self, *, status: Obj | None = None, default: Defaulter | None = None,
                 validate: Validator | None = None, create_on_update: bool = False) -> None:
        super().__init__(default=default, validate=validate, create_on_update=create_on_update)
        self._status = status or {}

    def initial_status(self, obj: Obj) -> Obj:
        return copy.deepcopy(self._status)

    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj["status"] = self.initial_status(obj)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().prepare_for_update(new, old)
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
