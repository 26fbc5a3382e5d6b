"""What a write's strategy and admission plugins know of the request: who asks, and how
to check what they hold.

Why: kube's RBAC storage refuses a Role or binding granting more than its author holds,
and NodeRestriction admission refuses a kubelet's write to another node's objects; both
need the requesting user and the apiserver's authorizer, which the generic REST store
does not otherwise see (kube carries them in the request ``context.Context``). The
authorization filter (:mod:`apiserver.auth.filters`) puts one :class:`RequestContext` on
every authorized request; the resource handlers pass it to the store, which hands it,
unread, to the kind's strategy and to admission.

Invariant: a write without a context (``None``) is the server's own (bootstrap, its own
loops) and is treated as privileged.
"""

from __future__ import annotations

from dataclasses import dataclass

from apiserver.auth.authn import UserInfo
from apiserver.auth.authorizer import Authorizer
from apiserver.auth.rbac import RBACAuthorizer


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The requesting user, the apiserver's whole authorizer chain (for ``escalate`` /
    ``bind`` checks) and RBAC's rule resolver (for "does the user hold these rules")."""

    user: UserInfo
    authorizer: Authorizer
    rules: RBACAuthorizer
