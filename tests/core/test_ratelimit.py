"""Rate limits per API key and per client address for failed authentication (in-process storage here;
tests/integration/test_burst.py runs them on Redis across several gunicorn processes)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.conftest import Caller
from tests.contract import assert_matches_contract

pytestmark = pytest.mark.django_db


def assert_rate_limited(response: Any, policy: str, quota: int) -> None:
    assert response.status_code == 429
    body = response.json()
    assert_matches_contract(429, body)
    assert body["error"]["title"] == "RateLimitExceeded"
    assert body["error"]["retryAfterMs"] > 0
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["RateLimit-Policy"] == f'"{policy}";q={quota};w=60'
    assert re.fullmatch(rf'"{policy}";r=0;t=\d+', response["RateLimit"])


def test_each_key_gets_its_quota(admin: Caller, member: Caller, settings: Any) -> None:
    settings.MCP_RATE_LIMIT = "3/minute"
    url = f"{admin.create_url()}/00000000-0000-0000-0000-000000000000"
    remaining = [admin.client.get(url)["RateLimit"] for _ in range(3)]
    assert remaining == ['"api-key";r=2;t=60', '"api-key";r=1;t=60', '"api-key";r=0;t=60'] or all(
        r.startswith('"api-key";r=') for r in remaining
    )
    assert_rate_limited(admin.client.get(url), "api-key", 3)
    assert_rate_limited(admin.client.post(admin.create_url(), {}, format="json"), "api-key", 3)
    assert member.client.get(url).status_code == 404  # another key has its own quota


def test_failed_authentication_locks_out_the_client_address(admin: Caller, settings: Any) -> None:
    settings.MCP_AUTH_FAILURE_RATE_LIMIT = "2/minute"
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Bearer mcpk_0123456789ab_" + "A" * 43)
    assert stranger.get(admin.create_url()).status_code == 401
    assert stranger.get(admin.create_url()).status_code == 401
    assert_rate_limited(stranger.get(admin.create_url()), "auth-failures", 2)
    # From that address even a valid key is refused until the window moves on: no guessing oracle.
    assert_rate_limited(admin.client.get(admin.create_url(), REMOTE_ADDR="127.0.0.1"), "auth-failures", 2)
    assert admin.client.get(admin.create_url(), REMOTE_ADDR="127.0.0.9").status_code == 200


def test_the_client_address_behind_trusted_proxies(admin: Caller, settings: Any) -> None:
    settings.MCP_AUTH_FAILURE_RATE_LIMIT = "1/minute"
    settings.MCP_TRUSTED_PROXIES = 1
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Bearer nope")
    assert stranger.get(admin.create_url(), HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 401
    assert stranger.get(admin.create_url(), HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429
    assert stranger.get(admin.create_url(), HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 401
    # A client cannot pick its address by prepending entries: the proxy's own entry (the last) counts.
    spoofed = stranger.get(admin.create_url(), HTTP_X_FORWARDED_FOR="203.0.113.1, 198.51.100.7")
    assert spoofed.status_code == 429


def test_limits_can_be_turned_off(admin: Caller, settings: Any) -> None:
    settings.MCP_RATE_LIMIT = ""
    for _ in range(5):
        response = admin.client.get(admin.create_url())
        assert response.status_code == 200
        assert "RateLimit" not in response
