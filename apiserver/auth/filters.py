"""The HTTP filters between authentication and the handlers: impersonation, authorization.

Why: kube-apiserver's handler chain authenticates, then applies ``Impersonate-*``
headers (``WithImpersonation``), then asks the authorizer about *every* request
(``WithAuthorization``), resource and non-resource alike, before any handler runs. These
are those filters, as aiohttp middlewares, so that a refusal reads exactly as kube's:

- :func:`request_attributes` is kube's ``RequestInfoFactory``: the path grammar of
  ``/api`` and ``/apis`` decides verb, group, version, resource, subresource, namespace
  and name without knowing which resources exist (an unknown resource is authorized
  first, then 404s); any other path is a non-resource request with the lower-cased
  HTTP method as verb.
- :func:`impersonation_middleware` authorizes each requested identity with verb
  ``impersonate`` (``users``, ``groups``, ``serviceaccounts``, ``uids``,
  ``userextras/<key>``) against the *real* user, then replaces the request's user.
- :func:`authorization_middleware` answers ``403`` with kube's Status for anything the
  chain does not allow, and leaves a :class:`~.context.RequestContext` for the writes.

Invariants:
- A request without a user (the public health paths, let through unauthenticated by
  :mod:`.authn`) is not authorized here, as before.
- A refusal is re-checked once after the watch cache has caught up with storage, so a
  RoleBinding created a moment ago counts (the index is fed from the cache).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from apiserver.auth.authn import AUTHENTICATED_GROUP, USER, UserInfo
from apiserver.auth.authorization import Authorization
from apiserver.auth.authorizer import (
    ANONYMOUS_USER,
    UNAUTHENTICATED_GROUP,
    Attributes,
    Authorizer,
    Decision,
    forbidden_status,
)
from apiserver.auth.context import RequestContext
from apiserver.auth.rbac import SERVICE_ACCOUNT_PREFIX
from apiserver.status import encode_status

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

CONTEXT = web.RequestKey("request_context", RequestContext)
"""The authorized request's context, read by the resource handlers for writes."""
EXTRA = web.RequestKey("user_extra", dict)
"""An impersonated user's ``extra`` (``Impersonate-Extra-*``), for SelfSubjectReview."""

API_PREFIXES = ("api", "apis")
GROUPLESS_PREFIXES = ("api",)
SPECIAL_VERBS = ("proxy", "watch")
NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete"}

IMPERSONATE_USER = "Impersonate-User"
IMPERSONATE_GROUP = "Impersonate-Group"
IMPERSONATE_UID = "Impersonate-Uid"
IMPERSONATE_EXTRA_PREFIX = "impersonate-extra-"
AUTHENTICATION_GROUP = "authentication.k8s.io"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
CACHE_CATCH_UP_SECONDS = 1.0


# --- request attributes (k8s.io/apiserver endpoints/request RequestInfoFactory) ---------------

def _name_from_field_selector(selector: str) -> str:
    """kube's ``FieldSelector.RequiresExactMatch("metadata.name")`` for list and watch."""
    for term in selector.split(","):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and not key.endswith("!") and key.strip() == "metadata.name":
            value = value.strip()
            if value not in (".", "..") and "/" not in value and "%" not in value:
                return value
    return ""


def _is_true(values: list[str]) -> bool:
    """kube's bool query conversion: any first value but ``false``/``0`` is true."""
    return bool(values) and values[0].lower() not in ("false", "0")


def request_attributes(user: UserInfo, method: str, path: str,
                       query: Mapping[str, Any]) -> Attributes:
    """What a request asks for, as kube's RequestInfo + authorizer attributes.

    ``query`` is the request's query (a multidict with ``getall`` or a plain mapping).
    """
    non_resource = Attributes(user=user, verb=method.lower(), resource_request=False,
                              path=path)
    parts = [part for part in path.strip("/").split("/") if part] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in GROUPLESS_PREFIXES:
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts[0] in SPECIAL_VERBS:
        if len(parts) < 2:
            return non_resource
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    name = parts[1] if len(parts) >= 2 else ""
    resource = parts[0]
    verb = _collection_verb(verb, name, query)
    if not name and verb in ("list", "watch"):
        name = _name_from_field_selector(_first(query, "fieldSelector"))
    return Attributes(user=user, verb=verb, api_group=group, api_version=version,
                      resource=resource, subresource=subresource, namespace=namespace,
                      name=name, path=path, field_selector=_first(query, "fieldSelector"))


def _all(query: Mapping[str, Any], key: str) -> list[str]:
    getall = getattr(query, "getall", None)
    if getall is not None:
        return list(getall(key, []))
    value = query.get(key)
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _first(query: Mapping[str, Any], key: str) -> str:
    values = _all(query, key)
    return values[0] if values else ""


def _collection_verb(verb: str, name: str, query: Mapping[str, Any]) -> str:
    """GET without a name is list or watch; DELETE without a name is deletecollection.
    A GET of one object with ``watch=true`` (a watch of that object) is a watch too."""
    if verb == "get":
        watch = _is_true(_all(query, "watch"))
        if not name:
            return "watch" if watch else "list"
        return "watch" if watch else "get"
    if verb == "delete" and not name:
        return "deletecollection"
    return verb


def forbidden_response(attrs: Attributes, reason: str = "") -> web.Response:
    return web.Response(body=encode_status(forbidden_status(attrs, reason)), status=403,
                        content_type="application/json")


# --- impersonation (k8s.io/apiserver endpoints/filters WithImpersonation) ---------------------

class _Requested:
    """One thing the caller asks to impersonate (kube's ObjectReference of that request)."""

    def __init__(self, kind: str, name: str, *, namespace: str = "", extra_key: str = "",
                 group: str = "") -> None:
        self.kind, self.name, self.namespace = kind, name, namespace
        self.extra_key, self.group = extra_key, group

    def go_text(self) -> str:
        """Go's ``%v`` of the ObjectReference (Kind Namespace Name UID APIVersion
        ResourceVersion FieldPath), as kube prints it in its error."""
        api_version = f"{self.group}/v1" if self.group else ""
        return "{" + " ".join((self.kind, self.namespace, self.name, "", api_version, "",
                               self.extra_key)) + "}"

    def attributes(self, requestor: UserInfo) -> Attributes:
        resource = {"ServiceAccount": "serviceaccounts", "User": "users", "Group": "groups",
                    "UserExtra": "userextras", "UID": "uids"}[self.kind]
        return Attributes(user=requestor, verb="impersonate", api_group=self.group,
                          api_version="v1" if self.group else "", resource=resource,
                          subresource=self.extra_key, namespace=self.namespace,
                          name=self.name)


class ImpersonationError(Exception):
    """Impersonation headers kube refuses before authorizing (500, as kube answers)."""


def impersonation_requests(headers: Mapping[str, str]) -> list[_Requested]:
    """kube ``buildImpersonationRequests``: what the ``Impersonate-*`` headers ask for."""
    requests: list[_Requested] = []
    user = _header_values(headers, IMPERSONATE_USER)
    requested_user = user[0] if user else ""
    if requested_user:
        namespace, name = _split_service_account(requested_user)
        requests.append(_Requested("ServiceAccount", name, namespace=namespace)
                        if name else _Requested("User", requested_user))
    groups = _header_values(headers, IMPERSONATE_GROUP)
    requests += [_Requested("Group", group) for group in groups]
    extras = 0
    for header in dict.fromkeys(key.lower() for key in headers):
        if not header.startswith(IMPERSONATE_EXTRA_PREFIX):
            continue
        key = unquote(header[len(IMPERSONATE_EXTRA_PREFIX):])
        for value in _header_values(headers, header):
            extras += 1
            requests.append(_Requested("UserExtra", value, extra_key=key,
                                       group=AUTHENTICATION_GROUP))
    uid = _header_values(headers, IMPERSONATE_UID)
    if uid and uid[0]:
        requests.append(_Requested("UID", uid[0], group=AUTHENTICATION_GROUP))
    if (groups or extras or (uid and uid[0])) and not requested_user:
        listed = " ".join(request.go_text() for request in requests)
        raise ImpersonationError(f"requested [{listed}] without impersonating a user")
    return requests


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    return [value for key, value in headers.items() if key.lower() == name.lower()]


def _split_service_account(user: str) -> tuple[str, str]:
    """kube ``serviceaccount.SplitUsername``: ("", "") unless a valid SA user name."""
    if not user.startswith(SERVICE_ACCOUNT_PREFIX):
        return "", ""
    parts = user[len(SERVICE_ACCOUNT_PREFIX):].split(":")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return "", ""
    return parts[0], parts[1]


def impersonated_user(requests: list[_Requested], *, groups_specified: bool
                      ) -> tuple[UserInfo, dict[str, list[str]]]:
    """The user the request continues as, and its extra (kube's ``newUser``)."""
    name, uid = "", ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for request in requests:
        if request.kind == "ServiceAccount":
            name = f"{SERVICE_ACCOUNT_PREFIX}{request.namespace}:{request.name}"
            if not groups_specified:
                groups = [SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{request.namespace}"]
        elif request.kind == "User":
            name = request.name
        elif request.kind == "Group":
            groups.append(request.name)
        elif request.kind == "UserExtra":
            extra.setdefault(request.extra_key, []).append(request.name)
        else:
            uid = request.name
    if name != ANONYMOUS_USER:
        if AUTHENTICATED_GROUP not in groups and UNAUTHENTICATED_GROUP not in groups:
            groups.append(AUTHENTICATED_GROUP)
    elif UNAUTHENTICATED_GROUP not in groups:
        groups.append(UNAUTHENTICATED_GROUP)
    return UserInfo(name=name, groups=tuple(groups), uid=uid), extra


def impersonation_middleware(authorizer: Authorizer) -> Middleware:
    """Switch the request's user to the impersonated one, each part authorized first."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            requests = impersonation_requests(request.headers)
        except ImpersonationError as error:
            return web.Response(status=500, text=f"Internal Server Error: "
                                                 f'"{request.path_qs}": {error}\n')
        if not requests:
            return await handler(request)
        requestor = request.get(USER)
        if requestor is None:
            requestor = UserInfo(name=ANONYMOUS_USER, groups=(UNAUTHENTICATED_GROUP,))
        for wanted in requests:
            attrs = wanted.attributes(requestor)
            decision, reason = authorizer.authorize(attrs)
            if decision is not Decision.ALLOW:
                return forbidden_response(attrs, reason)
        user, extra = impersonated_user(
            requests, groups_specified=bool(_header_values(request.headers, IMPERSONATE_GROUP)))
        request[USER] = user
        if extra:
            request[EXTRA] = extra
        return await handler(request)

    return middleware


# --- authorization (k8s.io/apiserver endpoints/filters WithAuthorization) ---------------------

CatchUp = Callable[[], Awaitable[bool]]


def authorization_middleware(authorization: Authorization, *,
                             catch_up: CatchUp | None = None) -> Middleware:
    """403 unless the chain allows the request; ``catch_up()`` waits for the watch cache
    to reach storage and says whether it moved (then the decision is asked again)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = request.get(USER)
        if user is None:
            return await handler(request)
        attrs = request_attributes(user, request.method, request.path, request.query)
        decision, reason = authorization.authorize(attrs)
        if decision is not Decision.ALLOW and catch_up is not None and await catch_up():
            decision, reason = authorization.authorize(attrs)
        if decision is not Decision.ALLOW:
            # A component refused is a misconfiguration worth seeing; users are routine.
            log.log(logging.INFO if user.name.startswith("system:") else logging.DEBUG,
                    "forbidden: %s", forbidden_status(attrs, reason)["message"])
            return forbidden_response(attrs, reason)
        request[CONTEXT] = authorization.context(user)
        return await handler(request)

    return middleware


def cache_catch_up(current_revision: Callable[[], Awaitable[int]],
                   cache_revision: Callable[[], int],
                   wait_for_revision: Callable[[int], Awaitable[None]]) -> CatchUp:
    """A ``catch_up`` for :func:`authorization_middleware` over storage and watch cache."""

    async def catch_up() -> bool:
        revision = await current_revision()
        if cache_revision() >= revision:
            return False
        try:
            await asyncio.wait_for(wait_for_revision(revision), CACHE_CATCH_UP_SECONDS)
        except TimeoutError:
            return False
        return True

    return catch_up
