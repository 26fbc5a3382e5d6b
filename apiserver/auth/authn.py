"""Who is calling: client-certificate and bearer-token authentication, like kube-apiserver.

Why: kubectl and the node agent present a client certificate signed by the cluster CA
(CN = user name, O = groups); scripts and test clients may use a static bearer token from
a ``--token-auth-file``-style CSV; pods present ServiceAccount tokens (signed JWTs, checked
by a :class:`TokenAuthenticator` such as :mod:`apiserver.auth.tokens`). The first
authenticator that recognises the request wins, in that order, as in kube-apiserver's
union authenticator; a bearer token nobody accepts is a 401.

Invariants:
- A certificate counts only when the TLS layer verified it against the CA (the server
  context is ``CERT_OPTIONAL``, so an unverified certificate never reaches this code:
  the handshake fails first).
- Every authenticated user also carries the group ``system:authenticated``.
- Unauthenticated requests get ``401`` with a Kubernetes ``Status`` body, except on the
  public health/version paths and their sub-paths.
"""

from __future__ import annotations

import csv
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiohttp import web

from apiserver.status import encode_status

AUTHENTICATED_GROUP = "system:authenticated"
DEFAULT_PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})

UNAUTHORIZED_STATUS = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class UserInfo:
    """The authenticated identity, as authorization and audit see it."""

    name: str
    groups: tuple[str, ...]
    uid: str = ""


USER = web.RequestKey("user", UserInfo)
"""Where the middleware leaves the authenticated user on the request."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenResponse:
    """A bearer token's user, with kube's user ``extra`` and the audiences it is valid for."""

    user: UserInfo
    audiences: tuple[str, ...] = ()
    extra: Mapping[str, list[str]] = field(default_factory=dict)


class InvalidTokenError(Exception):
    """The token is one the authenticator issues, but it is not (or no longer) valid."""


class TokenAuthenticator(Protocol):
    def authenticate_token(self, token: str, audiences: Sequence[str] | None = None
                           ) -> TokenResponse | None:
        """The token's user; None when the token is not one of ours; raise
        :class:`InvalidTokenError` (one line saying why) when it is ours but invalid.
        ``audiences`` are the ones the caller targets (default: the API's)."""


class Authenticator:
    """Authenticates a request by its verified client certificate or its bearer token."""

    def __init__(self, *, token_file: Path | None = None,
                 token_authenticators: Sequence[TokenAuthenticator] = ()) -> None:
        self._tokens: dict[str, UserInfo] = (
            load_token_file(token_file) if token_file is not None else {}
        )
        self._token_authenticators = tuple(token_authenticators)

    def authenticate(self, request: web.Request) -> UserInfo | None:
        """The caller's identity, or ``None`` when no credential is recognised."""
        user = _user_from_client_cert(request) or self._user_from_bearer_token(request)
        return None if user is None else _authenticated(user)

    def _user_from_bearer_token(self, request: web.Request) -> UserInfo | None:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return self.authenticate_token(token).user
        except InvalidTokenError as error:
            log.info("unable to authenticate the request: %s", error)
            return None

    def authenticate_token(self, token: str, audiences: Sequence[str] | None = None
                           ) -> TokenResponse:
        """Who a bearer token belongs to (requests and TokenReview alike).

        Raises :class:`InvalidTokenError` with the reasons when no authenticator accepts it.
        """
        # Constant-time comparison: a timing difference must not reveal a token's prefix.
        for known, user in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return TokenResponse(_authenticated(user), tuple(audiences or ()))
        reasons = ["invalid bearer token"]
        for authenticator in self._token_authenticators:
            try:
                response = authenticator.authenticate_token(token, audiences)
            except InvalidTokenError as error:
                reasons.append(str(error))
                continue
            if response is not None:
                return response
        raise InvalidTokenError(reasons[0] if len(reasons) == 1
                                else f"[{', '.join(reasons)}]")


def _authenticated(user: UserInfo) -> UserInfo:
    """Every authenticated user is also in ``system:authenticated``."""
    if AUTHENTICATED_GROUP in user.groups:
        return user
    return UserInfo(name=user.name, groups=(*user.groups, AUTHENTICATED_GROUP), uid=user.uid)


def load_token_file(path: Path) -> dict[str, UserInfo]:
    """Parse a kube-apiserver ``--token-auth-file``: CSV ``token,user,uid[,"g1,g2"]``.

    Raises :class:`ValueError` naming the file and line of a malformed entry.
    """
    tokens: dict[str, UserInfo] = {}
    with open(path, newline="") as file:
        for line_number, row in enumerate(csv.reader(file), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3 or not row[0].strip() or not row[1].strip():
                raise ValueError(
                    f"{path}:{line_number}: expected 'token,user,uid[,\"group1,group2\"]'"
                )
            group_field = row[3] if len(row) > 3 else ""
            groups = tuple(g.strip() for g in group_field.split(",") if g.strip())
            tokens[row[0].strip()] = UserInfo(
                name=row[1].strip(), groups=groups, uid=row[2].strip()
            )
    return tokens


def auth_middleware(authenticator: Authenticator, *,
                    public_paths: frozenset[str] = DEFAULT_PUBLIC_PATHS
                    ) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware setting ``request[USER]`` or answering 401."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = authenticator.authenticate(request)
        if user is not None:
            request[USER] = user
        elif not _is_public(request.path, public_paths):
            return web.Response(body=encode_status(UNAUTHORIZED_STATUS), status=401,
                                content_type="application/json")
        return await handler(request)

    return middleware


def _is_public(path: str, public_paths: frozenset[str]) -> bool:
    return any(path == public or path.startswith(public + "/") for public in public_paths)


def _user_from_client_cert(request: web.Request) -> UserInfo | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    # getpeercert() returns a non-empty dict only for a certificate the handshake verified.
    peer = ssl_object.getpeercert() if ssl_object is not None else None
    if not peer:
        return None
    common_names: list[str] = []
    organizations: list[str] = []
    for relative_name in peer.get("subject", ()):
        for attribute, value in relative_name:
            if attribute == "commonName":
                common_names.append(value)
            elif attribute == "organizationName":
                organizations.append(value)
    if not common_names or not common_names[0]:
        return None
    return UserInfo(name=common_names[0], groups=tuple(organizations))
