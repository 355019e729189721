"""Who may call: API tokens with the web app's roles, a rate limit per token, and the signed
download links of the pages.

The rate limit is a token bucket per API token (or per user, for signed links): it holds
``STATIONMANAGER_API_RATE_LIMIT_PER_MINUTE`` requests and refills at that rate, so a client
may burst up to the limit and then keeps to it; a request over it gets 429 with
``Retry-After`` (whole seconds until one request is allowed again). The buckets live in
this process: two API processes allow twice the rate.

>>> bucket = Buckets(per_minute=2)
>>> [bucket.take("t", now=0.0), bucket.take("t", now=0.0), bucket.take("t", now=0.0)]
[0, 0, 30]
>>> bucket.take("t", now=30.0), bucket.take("other", now=30.0)
(0, 0)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core import api_tokens, auth, db, signed_links
from core.api_tokens import Caller, TokenRefused
from core.errors import PermissionDenied, StationManagerError
from core.settings import get_settings

__all__ = ["Caller", "RateLimited", "TokenRefused", "caller", "downloader", "role"]


class RateLimited(StationManagerError):
    """Too many requests with this token."""

    def __init__(self, retry_after: int, per_minute: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"more than {per_minute} requests a minute with this token "
                         f"(STATIONMANAGER_API_RATE_LIMIT_PER_MINUTE); try again in {retry_after} s")


class Buckets:
    """Token buckets, one per key (thread-safe: sync routes run in a thread pool)."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(max(per_minute, 1))
        self.rate = self.capacity / 60.0
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str, now: float) -> int:
        """Take one request from ``key``'s bucket: 0 when allowed, else the seconds to wait."""
        with self._lock:
            tokens, when = self._state.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - when) * self.rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return 0
            self._state[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))


_buckets: Buckets | None = None


def _limit(key: str) -> None:
    global _buckets
    settings = get_settings()
    if _buckets is None:
        _buckets = Buckets(settings.api_rate_limit_per_minute)
    wait = _buckets.take(key, time.monotonic())
    if wait:
        raise RateLimited(wait, settings.api_rate_limit_per_minute)


_bearer = HTTPBearer(auto_error=False, description="An API token: stationmanager tokens add NAME --role ROLE")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def caller(credentials: Credentials) -> Caller:
    """The caller of the request's bearer token (401 without a valid one), rate-limited."""
    with db.connection() as conn:
        who = api_tokens.authenticate(conn, credentials.credentials if credentials else None)
    _limit(f"token:{who.token_id}")
    return who


def role(needed: str) -> Callable[[Caller], Caller]:
    """A dependency: the caller, refused (403) unless its token's role includes ``needed``."""
    def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if not auth.allowed(who.role, needed):
            raise PermissionDenied(f"this needs a token with the {needed} role; the token {who.name!r} "
                                   f"has the {who.role} role")
        return who
    return check


Viewer = Annotated[Caller, Depends(role("viewer"))]
Analyst = Annotated[Caller, Depends(role("analyst"))]


def downloader(kind: str) -> Callable[..., str]:
    """A dependency for a download: a signed link's ``sig`` (made by a page for a signed-in
    user, who must still be in the user file) or a viewer's token. Returns who downloads."""
    def check(request: Request, credentials: Credentials,
              sig: Annotated[str | None, Query(description="A signed link's signature (from the web app's "
                                                           "pages); instead of a token", max_length=2000)] = None,
              ) -> str:
        if sig is None:
            who = role("viewer")(caller(credentials))
            return who.actor
        item_id = int(request.path_params["item_id"])
        settings = get_settings()
        user = signed_links.verify(signed_links.key(settings), sig, kind, item_id)
        if auth.user(auth.load_cached(settings.users_file), user) is None:
            raise signed_links.LinkRefused(f"this download link was made for {user!r}, who is no longer a user")
        _limit(f"user:{user}")
        return user
    return check
