"""The per-key rate limit, as a DRF throttle: every request made with an API key counts against that key."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core import ratelimit
from organizations.models import ApiKey


class ApiKeyRateThrottle(BaseThrottle):
    """MCP_RATE_LIMIT per API key (`core.ratelimit`: a moving window, atomic on Redis). The decision is kept on the
    request: the RateLimit headers of every counted response, and a refusal's 429 body, are made from it."""

    def allow_request(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            return True  # not an API-key request (the OpenAPI document): nothing to count
        decision = ratelimit.count_api_key_request(request._request, request.auth.prefix)
        return decision is None or decision.allowed

    def wait(self) -> float | None:
        return None  # the refusal's wait is in the decision kept on the request
