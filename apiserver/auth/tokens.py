"""ServiceAccount token authentication: a valid JWT whose bound objects still exist.

kube's ``pkg/serviceaccount`` JWT authenticator with its "legacy-free" validator: the
signature, issuer, time and audience checks are :class:`TokenAuthority`'s (signature
results cached per token); then, on every request, the ServiceAccount and the Pod,
Secret or Node the token is bound to are looked up — in the watch cache, as kube looks
them up in its informer caches — so a token stops working as soon as its pod or
ServiceAccount is deleted or replaced by a namesake with another uid.

A token from another issuer, or one that is no JWT at all, is "not ours" (``None``: the
next authenticator may know it); a token of ours that fails a check raises
:class:`InvalidTokenError` with kube's reason (``service account token has expired``,
``service account token has been invalidated``, …).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from apiserver.auth.authn import InvalidTokenError, TokenResponse
from apiserver.auth.serviceaccount import (
    TokenAuthority,
    TokenError,
    TokenIssuerError,
    TokenMalformedError,
    bound_refs,
    check_bound_objects,
    user_from_claims,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ObjectGetter = Callable[[str, str | None, str], Obj | None]
"""(plural, namespace or None, name) -> the stored core/v1 object, or None."""


class ServiceAccountTokenAuthenticator:
    """A :class:`~apiserver.auth.authn.TokenAuthenticator` for our signed tokens."""

    def __init__(self, authority: TokenAuthority, get_object: ObjectGetter) -> None:
        self.authority = authority
        self._get = get_object

    def authenticate_token(self, token: str, audiences: Sequence[str] | None = None
                           ) -> TokenResponse | None:
        wanted = list(audiences) if audiences else list(self.authority.api_audiences)
        try:
            claims = self.authority.validate_token(token, audiences=wanted)
        except (TokenIssuerError, TokenMalformedError):
            return None
        except TokenError as error:
            raise InvalidTokenError(str(error)) from None
        refs = bound_refs(claims)
        namespace = refs.namespace
        try:
            check_bound_objects(
                claims,
                service_account=self._get("serviceaccounts", namespace,
                                          refs.service_account.name),
                pod=self._get("pods", namespace, refs.pod.name) if refs.pod else None,
                secret=self._get("secrets", namespace, refs.secret.name) if refs.secret
                else None,
                node=self._get("nodes", None, refs.node.name) if refs.node else None)
        except TokenError as error:
            raise InvalidTokenError(str(error)) from None
        user, extra = user_from_claims(claims)
        token_audiences = claims.get("aud") or []
        if isinstance(token_audiences, str):
            token_audiences = [token_audiences]
        return TokenResponse(user, tuple(a for a in wanted if a in token_audiences), extra)
