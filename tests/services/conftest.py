"""The service-backed suite: PostgreSQL as the database, Redis as the broker, a real `celery worker` process.

Run by `make test-services` (which sets DATABASE_URL and REDIS_URL). With CI=true, a missing service
fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_START_TIMEOUT = 60.0


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"service-backed suite cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/services/" in str(item.fspath):
            item.add_marker(pytest.mark.services)


def database_url_for_processes() -> str:
    """The URL of the test database pytest-django created, for processes the tests start."""
    db = connection.settings_dict
    user, host, port = db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


@pytest.fixture(scope="session")
def services_available() -> None:
    if connection.vendor != "postgresql":
        _unavailable("DATABASE_URL does not point at PostgreSQL (run `make test-services`)")
    if not settings.REDIS_URL:
        _unavailable("REDIS_URL is not set (run `make test-services`)")
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at REDIS_URL is not reachable: {exc}")


@pytest.fixture(scope="session")
def redis_client(services_available: None) -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@pytest.fixture(scope="session")
def celery_worker(
    services_available: None, django_db_setup: None, django_db_blocker: Any, redis_client: redis.Redis
) -> Iterator[Path]:
    """A real worker process on the test database and the Redis broker; yields the path of its log."""
    database_url = database_url_for_processes()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "MCP_OUTBOUND_ALLOWLIST": "127.0.0.1",
        "MCP_SYNC_TOTAL_SECONDS": "10",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "DEBUG",
    }
    redis_client.flushdb()  # no message from an earlier run
    log_dir = Path(tempfile.mkdtemp(prefix="celery-worker-"))
    log_path = log_dir / "worker.log"
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=DEBUG", "--concurrency=2",
        "--pool=prefork", "--without-gossip", "--without-mingle", "--hostname=test-worker@%h",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while b" ready." not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"celery worker did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)
        yield log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
