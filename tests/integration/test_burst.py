"""A burst against several gunicorn processes sharing Redis: with a limit of N, exactly N get through."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
from django.conf import settings

from tests.conftest import Caller
from tests.contract import assert_matches_contract
from tests.integration.conftest import REPO_ROOT, database_url_for_processes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LIMIT = 25
REQUESTS = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gunicorn(services_available: None, django_db_setup: None) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_processes(),
        "REDIS_URL": settings.REDIS_URL,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "MCP_RATE_LIMIT": f"{LIMIT}/minute",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "3",
        "GUNICORN_ACCESS_LOG": "/dev/null",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("gunicorn did not start: " + (process.stderr.read() if process.stderr else b"").decode())
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


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
