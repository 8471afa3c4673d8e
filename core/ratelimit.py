"""Rate limits: per API key, and per client address for failed authentication.

Counting uses the `limits` library's moving window: on Redis (REDIS_URL) it is one Lua script per hit,
atomic across every web process and host; without Redis (the embedded default) it counts in process.
A refusal is a 429 in the contract's envelope (title `RateLimitExceeded`, `retryAfterMs`) with a
`Retry-After` header, and every limited response carries the IETF draft's `RateLimit-Policy` and
`RateLimit` headers (draft-ietf-httpapi-ratelimit-headers).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.errors import ApplicationError

API_KEY_POLICY = "api-key"
AUTH_FAILURE_POLICY = "auth-failures"


@dataclass(frozen=True)
class Decision:
    policy: str
    allowed: bool
    limit: int
    window_seconds: int
    remaining: int
    reset_seconds: float

    def headers(self) -> dict[str, str]:
        reset = max(0, math.ceil(self.reset_seconds))
        return {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={self.window_seconds}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={reset}',
        }


class RateLimited(ApplicationError):
    status_code = 429
    title = "RateLimitExceeded"

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"Too many requests; try again in {max(1, math.ceil(decision.reset_seconds))} seconds.")
        self.decision = decision

    @property
    def retry_after_ms(self) -> int:
        return max(1, math.ceil(self.decision.reset_seconds * 1000))


_limiters: dict[str, MovingWindowRateLimiter] = {}
_limiters_lock = threading.Lock()


def _limiter(storage_uri: str) -> MovingWindowRateLimiter:
    # Built under a lock: `limits` checks its optional dependencies lazily, and two threads doing that at once
    # (the first requests of a threaded gunicorn worker) can see a half-imported redis client.
    limiter = _limiters.get(storage_uri)
    if limiter is None:
        with _limiters_lock:
            limiter = _limiters.get(storage_uri)
            if limiter is None:
                limiter = _limiters[storage_uri] = MovingWindowRateLimiter(storage_from_string(storage_uri))
    return limiter


@functools.cache
def _rule(text: str) -> RateLimitItem:
    return parse(text)


def _storage_uri() -> str:
    return settings.REDIS_URL or "memory://"


def _decide(
    policy: str, rule_text: str, identifier: str, *, hit: bool, stats_if_allowed: bool = True
) -> Decision | None:
    """The limiter's answer for one identifier; None when the rule is off, or when it allows and
    `stats_if_allowed` is false (the window's stats are a second round trip, spent only when they are used)."""
    if not rule_text:
        return None  # limits off
    rule = _rule(rule_text)
    limiter = _limiter(_storage_uri())
    allowed = limiter.hit(rule, policy, identifier) if hit else limiter.test(rule, policy, identifier)
    if allowed and not stats_if_allowed:
        return None
    stats = limiter.get_window_stats(rule, policy, identifier)
    return Decision(
        policy=policy,
        allowed=allowed,
        limit=rule.amount,
        window_seconds=rule.get_expiry(),
        remaining=max(0, stats.remaining),
        reset_seconds=max(0.0, stats.reset_time - time.time()),
    )


def count_api_key_request(request: HttpRequest, key_prefix: str) -> Decision | None:
    """Count one request for this key and keep the decision on the request (for the headers and a refusal's body);
    None when the limit is off."""
    decision = _decide(API_KEY_POLICY, settings.MCP_RATE_LIMIT, key_prefix, hit=True)
    if decision is not None:
        request.rate_limit = decision  # type: ignore[attr-defined]
    return decision


def refuse_if_auth_failures_exceeded(request: HttpRequest) -> None:
    """Before checking a key: a client address that failed too often is refused outright (no oracle)."""
    decision = _decide(
        AUTH_FAILURE_POLICY,
        settings.MCP_AUTH_FAILURE_RATE_LIMIT,
        client_address(request),
        hit=False,
        stats_if_allowed=False,
    )
    if decision is not None and not decision.allowed:
        raise RateLimited(decision)


def record_auth_failure(request: HttpRequest) -> None:
    _decide(
        AUTH_FAILURE_POLICY,
        settings.MCP_AUTH_FAILURE_RATE_LIMIT,
        client_address(request),
        hit=True,
        stats_if_allowed=False,
    )


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the entry MCP_TRUSTED_PROXIES hops from the right of X-Forwarded-For."""
    hops = settings.MCP_TRUSTED_PROXIES
    if hops > 0:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return str(request.META.get("REMOTE_ADDR", "unknown"))


class RateLimitHeadersMiddleware:
    """Adds the RateLimit headers to responses whose request was counted."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        decision: Decision | None = getattr(request, "rate_limit", None)
        if decision is not None:
            for name, value in decision.headers().items():
                response.setdefault(name, value)
        return response


def reset() -> None:
    """Forget every count (tests; an operator clearing a lockout)."""
    _limiter(_storage_uri()).storage.reset()
