"""Per-key rate limits for the native API, with the `limits` library.

Every /v1 request that presents a valid API key spends one unit of that key's
budget (`settings.rate_limit`, e.g. "1200/minute", several separated by ';').
The key is authenticated before it is counted, so a caller who knows only a
key's public prefix cannot spend somebody else's budget; requests without a
valid key are not counted here and get their 401 from the route.

Counts live in memory (one API process) or in Redis when
`settings.rate_limit_url` names one (several API processes share the counts).
The moving-window strategy is used: no burst of twice the limit across a
window boundary, as a fixed window would allow.

Answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
(seconds); a refused request is a 429 problem with `Retry-After` as well.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobdock.access import Principal
from jobdock.api import problems
from jobdock.api.deps import bearer_token, get_access
from jobdock.config import Settings
from jobdock.errors import JobdockError

log = logging.getLogger("jobdock.api.ratelimit")

PREFIX = "/v1/"
_STORAGE_WARNING_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request against a key's limits."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until a unit of the budget comes back

    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit),
                   "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset_s)}
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_s))
        return headers


class KeyRateLimiter:
    """Counts requests per API key id against one or more limits."""

    def __init__(self, limits: str, storage_url: str | None = None) -> None:
        self.items: list[RateLimitItem] = parse_many(limits)
        if not self.items:
            raise ValueError(f"no rate limit in {limits!r}")
        self.storage: Storage = (
            MemoryStorage() if not storage_url
            # Short timeouts: an unreachable Redis must not hold requests for long.
            else RedisStorage(storage_url, key_prefix="jobdock", wrap_exceptions=True,
                              socket_timeout=1.0, socket_connect_timeout=1.0))
        self.strategy = MovingWindowRateLimiter(self.storage)
        self._warned_at = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRateLimiter:
        return cls(settings.rate_limit, settings.rate_limit_url)

    def hit(self, key_id: str) -> Decision | None:
        """Spend one unit of each limit of `key_id`; None when the storage cannot be reached.

        Limits are spent in order and the first one exhausted refuses the
        request. The answer describes the refusing limit, else the one with the
        least left."""
        try:
            tightest: Decision | None = None
            for item in self.items:
                allowed = self.strategy.hit(item, key_id)
                reset_time, remaining = self.strategy.get_window_stats(item, key_id)
                decision = Decision(allowed, item.amount, max(0, remaining),
                                    max(0, math.ceil(reset_time - time.time())))
                if not allowed:
                    return decision
                if tightest is None or decision.remaining < tightest.remaining:
                    tightest = decision
            return tightest
        except StorageError as exc:
            # Fail open: a rate-limit store that is down must not take the API down with it.
            now = time.monotonic()
            if now - self._warned_at >= _STORAGE_WARNING_EVERY_S:
                self._warned_at = now
                log.warning("rate limits are not enforced: their storage failed: %s",
                            exc.storage_error)
            return None


class RateLimitMiddleware:
    """ASGI middleware: counts every /v1 request made with a valid key."""

    def __init__(self, app: ASGIApp, limiter: KeyRateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = bearer_token(request)
        if token is None:
            await self.app(scope, receive, send)
            return
        principal, decision = self._check_in_memory(request, token)
        if principal is None:
            principal, decision = await run_in_threadpool(self._check, request, token)
        if principal is not None:
            # deps.get_principal takes it from here instead of looking the key up again.
            request.state.principal = principal
        if decision is None:
            await self.app(scope, receive, send)
            return
        headers = decision.headers()
        if not decision.allowed:
            response = problems.problem(
                429, problems.title_of(429),
                f"this API key has made more than {decision.limit} requests in its rate-limit"
                f" window; retry in {headers['Retry-After']} s", "rate_limited", headers)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in headers.items():
                    response_headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check_in_memory(self, request: Request,
                         token: str) -> tuple[Principal | None, Decision | None]:
        """`_check` on the event loop when it needs no I/O: the key is in the access
        cache and the counts are in memory. (None, None) otherwise: `_check` in the
        thread pool then, as a hop there costs more than both checks."""
        if not isinstance(self.limiter.storage, MemoryStorage):
            return None, None
        try:
            principal = get_access(request).cached_principal(token)
        except JobdockError:
            return None, None
        if principal is None:
            return None, None
        return principal, self.limiter.hit(principal.key_id)

    def _check(self, request: Request, token: str) -> tuple[Principal | None, Decision | None]:
        try:
            principal = get_access(request).authenticate(token)
        except JobdockError:
            return None, None  # not counted; the route answers 401 (or 503)
        return principal, self.limiter.hit(principal.key_id)


def install(api: FastAPI, settings: Settings) -> KeyRateLimiter:
    """Count the requests of every key on `api`; return the limiter (tests inspect it)."""
    limiter = KeyRateLimiter.from_settings(settings)
    api.add_middleware(RateLimitMiddleware, limiter=limiter)
    api.state.rate_limiter = limiter
    return limiter
