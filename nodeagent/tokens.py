"""ServiceAccount tokens for projected volumes, kept and refreshed like kubelet's token manager.

A ``serviceAccountToken`` projection asks the TokenRequest API for a token bound to the
pod (``boundObjectRef`` kind Pod, name and UID), so the token dies with the pod. Tokens are
cached per (namespace, service account, audiences, expirationSeconds, pod) and fetched
again when ``requires_refresh`` says so (kubelet's ``requiresRefresh``):

- the token is older than 24 hours, or
- less than 20 % of its lifetime is left (it is older than 80 % of it), or
- the clock is before its issue time (the system time leapt back),

each threshold moved earlier by a random jitter of up to 10 s so that many pods do not
refresh at the same second. The lifetime is the ``expirationSeconds`` the server answered
with (it may grant more than asked), the issue time its ``expirationTimestamp`` minus that.
A failed refresh keeps the old token while it is valid and is an error once it expired.
``refresh_at`` tells the pod worker when its next pass must come to rewrite the file.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from apiclient.errors import ApiError, TransportError
from apiclient.meta import parse_time

log = logging.getLogger(__name__)

MAX_TTL_SECONDS = 24 * 3600
MAX_JITTER_SECONDS = 10.0
DEFAULT_EXPIRATION_SECONDS = 3600  # the API's default for a serviceAccountToken projection

RequestToken = Callable[[str, str, dict[str, Any]], Awaitable[Mapping[str, Any]]]


class TokenError(Exception):
    """No valid token can be had; the message is kubelet's."""


@dataclass(frozen=True)
class TokenKey:
    namespace: str
    service_account: str
    audiences: tuple[str, ...]
    expiration_seconds: int
    pod_name: str
    pod_uid: str

    def __str__(self) -> str:  # non-confidential, safe to log
        return (
            f"{self.namespace}/{self.service_account} audiences={list(self.audiences)} "
            f"exp={self.expiration_seconds} pod={self.pod_name}({self.pod_uid})"
        )

    def request_body(self) -> dict[str, Any]:
        """The TokenRequest kubelet sends (audiences omitted: the API server's default)."""
        spec: dict[str, Any] = {
            "expirationSeconds": self.expiration_seconds,
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": self.pod_name,
                "uid": self.pod_uid,
            },
        }
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": self.service_account, "namespace": self.namespace},
            "spec": spec,
        }


@dataclass(frozen=True)
class Token:
    token: str
    expiration: float  # epoch seconds
    lifetime: int  # the expirationSeconds the server granted

    @property
    def issued_at(self) -> float:
        return self.expiration - self.lifetime

    def refresh_at(self, *, jitter: float = 0.0) -> float:
        """The moment from which ``requires_refresh`` is true (ignoring clock leaps)."""
        return min(
            self.issued_at + MAX_TTL_SECONDS - jitter,
            self.expiration - (self.lifetime * 20) // 100 - jitter,
        )

    def requires_refresh(self, now: float, *, jitter: float = 0.0) -> bool:
        return now > self.refresh_at(jitter=jitter) or now < self.issued_at

    def expired(self, now: float) -> bool:
        return now > self.expiration


def token_from_response(answer: Mapping[str, Any], requested_seconds: int) -> Token:
    status = answer.get("status") or {}
    token = status.get("token")
    stamp = status.get("expirationTimestamp")
    if not token or not stamp:
        raise TokenError("the TokenRequest answer has no status.token or expirationTimestamp")
    try:
        expiration = parse_time(stamp).timestamp()
    except ValueError as err:
        raise TokenError(f"the TokenRequest answer has a bad expirationTimestamp: {err}") from None
    granted = (answer.get("spec") or {}).get("expirationSeconds") or requested_seconds
    return Token(str(token), expiration, int(granted))


class TokenManager:
    """The node's token cache (one for all pods); ``request`` POSTs a TokenRequest."""

    def __init__(
        self,
        request: RequestToken,
        *,
        clock: Callable[[], float],
        jitter: Callable[[], float] = lambda: random.random() * MAX_JITTER_SECONDS,
    ) -> None:
        self._request = request
        self._clock = clock
        self._jitter = jitter
        self._cache: dict[TokenKey, Token] = {}

    async def get(self, key: TokenKey) -> Token:
        """The cached token, or a fresh one when it needs a refresh (see the module doc)."""
        now = self._clock()
        self._drop_expired(now, keep=key)
        cached = self._cache.get(key)
        if cached is not None and not cached.requires_refresh(now, jitter=self._jitter()):
            return cached
        try:
            answer = await self._request(key.namespace, key.service_account, key.request_body())
            fresh = token_from_response(answer, key.expiration_seconds)
        except (ApiError, TransportError, TokenError) as err:
            if cached is None:
                raise TokenError(f"failed to fetch token: {err}") from err
            if cached.expired(now):
                raise TokenError(f"token {key} expired and refresh failed: {err}") from err
            log.warning("could not refresh token %s, keeping the current one: %s", key, err)
            return cached
        self._cache[key] = fresh
        return fresh

    def next_refresh(self, pod_uid: str) -> float | None:
        """The earliest moment one of the pod's tokens needs a refresh (None: it has none)."""
        moments = [t.refresh_at() for k, t in self._cache.items() if k.pod_uid == pod_uid]
        return min(moments) if moments else None

    def forget_pod(self, pod_uid: str) -> None:
        """The pod is gone: drop its tokens (kubelet's ``DeleteServiceAccountToken``)."""
        for key in [k for k in self._cache if k.pod_uid == pod_uid]:
            del self._cache[key]

    def _drop_expired(self, now: float, *, keep: TokenKey) -> None:
        """kubelet's cache clean-up: expired tokens of pods that no longer ask for them."""
        for key in [k for k, t in self._cache.items() if t.expired(now) and k != keep]:
            del self._cache[key]
