"""Who is calling: client-certificate and bearer-token authentication, like kube-apiserver.

Why: kubectl and the node agent present a client certificate signed by the cluster CA
(CN = user name, O = groups); scripts and test clients may use a static bearer token from
a ``--token-auth-file``-style CSV. The first authenticator that recognises the request
wins, in that order, as in kube-apiserver's union authenticator.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

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


class Authenticator:
    """Authenticates a request by its verified client certificate or its bearer token."""

    def __init__(self, *, token_file: Path | None = None) -> None:
        self._tokens: dict[str, UserInfo] = (
            load_token_file(token_file) if token_file is not None else {}
        )

    def authenticate(self, request: web.Request) -> UserInfo | None:
        """The caller's identity, or ``None`` when no credential is recognised."""
        user = _user_from_client_cert(request) or self._user_from_bearer_token(request)
        if user is None:
            return None
        if AUTHENTICATED_GROUP in user.groups:
            return user
        return UserInfo(name=user.name, groups=(*user.groups, AUTHENTICATED_GROUP),
                        uid=user.uid)

    def _user_from_bearer_token(self, request: web.Request) -> UserInfo | None:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        # Constant-time comparison: a timing difference must not reveal a token's prefix.
        for known, user in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        return None


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
            return web.json_response(UNAUTHORIZED_STATUS, status=401)
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
