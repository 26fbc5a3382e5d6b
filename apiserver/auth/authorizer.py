"""May this user do this: request attributes, decisions, the authorizer chain, 403 texts.

Why: kube-apiserver answers every request in two steps, "who is calling" (authn.py) and
"may they" (this module and its authorizers: RBAC, the Node authorizer). This module is
the pure core those authorizers share, written from k8s.io/apiserver's ``authorizer``
package, so that a Kubernetes user finds the same decisions and the same words:

- :class:`Attributes` is kube's ``authorizer.AttributesRecord``: verb, API group, resource,
  subresource, namespace, name for resource requests; verb and path for the others.
- An :class:`Authorizer` answers ``(Decision, reason)``. :class:`UnionAuthorizer` asks its
  members in order and the first ``ALLOW`` or ``DENY`` wins (kube's union authorizer);
  when all have no opinion the reasons are joined with newlines.
- :func:`forbidden_message` and :func:`forbidden_details` produce exactly what
  kube-apiserver puts in a 403 ``Status`` (``responsewriters.Forbidden`` wrapped in
  ``apierrors.NewForbidden``), e.g. ``pods "web" is forbidden: User "alice" cannot get
  resource "pods" in API group "" in the namespace "shop"``.

Invariants:
- Nothing here does I/O or keeps state: authorizers are fed by the apiserver, and a
  decision depends only on the attributes and that fed state.
- A ``Decision`` coming from an authorizer that defines its own enum with the same values
  (``"Allow"``, ``"Deny"``, ``"NoOpinion"``) is understood too, so authorizers written
  before this module can join the chain unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from apiserver.auth.authn import UserInfo

# Well-known identities (k8s.io/apiserver/pkg/authentication/user).
PRIVILEGED_GROUP = "system:masters"
AUTHENTICATED_GROUP = "system:authenticated"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"


class Decision(enum.Enum):
    """An authorizer's answer (kube ``authorizer.Decision``)."""

    DENY = "Deny"
    ALLOW = "Allow"
    NO_OPINION = "NoOpinion"


@dataclass(frozen=True)
class Attributes:
    """What is being asked, as kube's ``authorizer.AttributesRecord``.

    For a resource request (``resource_request=True``) ``verb`` is the API verb (``get``,
    ``list``, ``watch``, ``create``, ``update``, ``patch``, ``delete``,
    ``deletecollection``, or a special verb such as ``bind``, ``escalate``,
    ``impersonate``); for any other request it is the lower-cased HTTP method and
    ``path`` is the URL path. ``field_selector`` is the request's ``fieldSelector`` text,
    read only by authorizers that look at it (the Node authorizer).
    """

    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    field_selector: str = ""


Result = tuple[Decision, str]


class Authorizer(Protocol):
    """Anything that can decide: ``(Decision, reason)``; the reason may be empty."""

    def authorize(self, attrs: Attributes) -> Result: ...


class UnionAuthorizer:
    """Asks each authorizer in turn; the first ALLOW or DENY wins (kube's union)."""

    def __init__(self, *authorizers: Authorizer) -> None:
        self.authorizers: tuple[Authorizer, ...] = authorizers

    def authorize(self, attrs: Attributes) -> Result:
        reasons: list[str] = []
        for authorizer in self.authorizers:
            decision, reason = authorizer.authorize(attrs)
            if decision is not Decision.NO_OPINION:
                return decision, reason
            if reason:
                reasons.append(reason)
        return Decision.NO_OPINION, "\n".join(reasons)


class PrivilegedGroupAuthorizer:
    """ALLOW for members of any of the groups (kube's ``NewPrivilegedGroups``).

    kube-apiserver puts one for ``system:masters`` first in its chain, so that group can
    do anything whatever RBAC holds (and cannot be locked out by deleting a binding).
    """

    def __init__(self, *groups: str) -> None:
        self.groups = frozenset(groups)

    def authorize(self, attrs: Attributes) -> Result:
        if self.groups.intersection(attrs.user.groups):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""


class AlwaysAllowAuthorizer:
    """kube's ``--authorization-mode=AlwaysAllow``."""

    def authorize(self, attrs: Attributes) -> Result:
        return Decision.ALLOW, ""


class AlwaysDenyAuthorizer:
    """kube's ``--authorization-mode=AlwaysDeny`` (no opinion, with kube's reason)."""

    def authorize(self, attrs: Attributes) -> Result:
        return Decision.NO_OPINION, "Everything is forbidden."


# --- Go formatting helpers ----------------------------------------------------------------

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` (``strconv.Quote``) prints it."""
    out = ['"']
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def go_quote_list(items: Iterable[str]) -> str:
    """A string slice as Go's ``%q`` prints it: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(item) for item in items) + "]"


def aggregate_error_text(messages: Sequence[str]) -> str:
    """apimachinery's ``utilerrors.NewAggregate(errs).Error()``: one message as is,
    several de-duplicated inside brackets."""
    if len(messages) == 1:
        return messages[0]
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


# --- the 403 --------------------------------------------------------------------------------

# responsewriters' sanitizer: a message must never look like HTML (quotes are fine).
_SANITIZE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _denial(attrs: Attributes) -> str:
    """responsewriters ``forbiddenMessage``: what was refused, without the resource prefix."""
    user = go_quote(attrs.user.name if attrs.user is not None else "")
    if not attrs.resource_request:
        return f"User {user} cannot {attrs.verb} path {go_quote(attrs.path)}"
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = (f"in the namespace {go_quote(attrs.namespace)}" if attrs.namespace
             else "at the cluster scope")
    return (f"User {user} cannot {attrs.verb} resource {go_quote(resource)} "
            f"in API group {go_quote(attrs.api_group)} {where}")


def qualified_resource(group: str, resource: str) -> str:
    """``schema.GroupResource.String()``: ``pods``, ``deployments.apps``."""
    return f"{resource}.{group}" if group else resource


def forbidden_status_message(group: str, resource: str, name: str, error: str) -> str:
    """``apierrors.NewForbidden(GroupResource{group, resource}, name, error).Error()``."""
    if not group and not resource:
        return f"forbidden: {error}"
    if not name:
        return f"{qualified_resource(group, resource)} is forbidden: {error}"
    return f"{qualified_resource(group, resource)} {go_quote(name)} is forbidden: {error}"


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """The ``message`` of kube-apiserver's 403 for a refused request.

    The reason (the authorizers' text, e.g. ``RBAC: clusterrole.rbac.authorization.k8s.io
    "x" not found``) follows after ``": "`` when there is one.
    """
    error = _denial(attrs).translate(_SANITIZE)
    if reason:
        error = f"{error}: {reason}"
    group, resource = (attrs.api_group, attrs.resource) if attrs.resource_request else ("", "")
    return forbidden_status_message(group, resource, attrs.name, error)


def forbidden_details(attrs: Attributes) -> dict[str, str]:
    """The 403 ``Status.details`` kube sends: ``name``, ``group``, ``kind`` (the plural
    resource, without subresource), each only when non-empty; ``{}`` for a non-resource
    request (kube sends ``"details": {}`` then, not no details)."""
    if not attrs.resource_request:
        return {}
    details = {"name": attrs.name, "group": attrs.api_group, "kind": attrs.resource}
    return {key: value for key, value in details.items() if value}


def forbidden_status(attrs: Attributes, reason: str = "") -> dict[str, Any]:
    """The whole 403 ``Status`` object, keys in kube's order."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": forbidden_message(attrs, reason),
        "reason": "Forbidden",
        "details": forbidden_details(attrs),
        "code": 403,
    }
