"""A burst against several gunicorn processes sharing Redis: with a limit of N, exactly N get through."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest

from tests.conftest import Caller
from tests.contract import assert_matches_contract

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LIMIT = 25
REQUESTS = 90


@pytest.fixture
def gunicorn(gunicorn_factory: Callable[..., str]) -> str:
    return gunicorn_factory(MCP_RATE_LIMIT=f"{LIMIT}/minute")


def test_exactly_the_limit_is_admitted_across_processes(admin: Caller, gunicorn: str) -> None:
    from core import ratelimit

    ratelimit.reset()  # the Redis counters
    url = f"{gunicorn}{admin.create_url()}"
    headers = {"Authorization": f"Bearer {admin.key}"}

    def call(_: int) -> httpx2.Response:
        return httpx2.get(url, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=30) as pool:
        responses: list[Any] = list(pool.map(call, range(REQUESTS)))
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == REQUESTS - LIMIT
    for response in responses:
        assert response.headers["RateLimit-Policy"] == f'"api-key";q={LIMIT};w=60'
        if response.status_code == 429:
            body = response.json()
            assert_matches_contract(429, body)
            assert body["error"]["title"] == "RateLimitExceeded"
            assert body["error"]["retryAfterMs"] > 0
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["RateLimit"].startswith('"api-key";r=0;t=')
