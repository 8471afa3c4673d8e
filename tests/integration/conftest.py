"""The service-backed suite: PostgreSQL as the database, Redis as the broker, a real `celery worker` process.

Run by `make test-services` (which sets DATABASE_URL and REDIS_URL). With CI=true, a missing service
fails the run instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
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
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


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


@dataclass
class WorkerProcess:
    """A `celery worker` process (prefork pool) started by a test, with its log."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> list[int]:
        """The pool's child processes (their parent is the worker's main process), from /proc."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[1]) == self.pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
        return sorted(found)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once: nothing gets to clean up or requeue."""
        pids = [self.pid, *self.children()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def _start_worker(
    *, hostname: str, env: dict[str, str] | None = None, queues: str | None = None, concurrency: int = 2
) -> WorkerProcess:
    """Start a worker on the test database and the Redis broker; returns once it is ready."""
    db = connection.settings_dict  # the test database pytest-django created
    user, host, port = db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    database_url = f"postgres://{user}@{host}:{port}/{db['NAME']}"
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "MCP_OUTBOUND_ALLOWLIST": "127.0.0.1",
        "MCP_SYNC_TOTAL_SECONDS": "10",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "DEBUG",
        **(env or {}),
    }
    log_dir = Path(tempfile.mkdtemp(prefix="celery-worker-"))
    log_path = log_dir / "worker.log"
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=DEBUG", f"--concurrency={concurrency}",
        "--pool=prefork", "--without-gossip", "--without-mingle", f"--hostname={hostname}@%h",
    ]  # fmt: skip
    if queues:
        command.append(f"--queues={queues}")
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    worker = WorkerProcess(process=process, log_path=log_path)
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while b" ready." not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            pytest.fail(f"celery worker did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    return worker


@pytest.fixture(scope="session")
def celery_worker(
    services_available: None, django_db_setup: None, django_db_blocker: Any, redis_client: redis.Redis
) -> Iterator[Path]:
    """A real worker process on the test database and the Redis broker; yields the path of its log."""
    redis_client.flushdb()  # no message from an earlier run
    worker = _start_worker(hostname="test-worker")
    try:
        yield worker.log_path
    finally:
        worker.stop()


@pytest.fixture
def worker_factory(
    services_available: None, django_db_setup: None, redis_client: redis.Redis
) -> Iterator[Callable[..., WorkerProcess]]:
    """``start(env=..., queues=..., concurrency=...) -> WorkerProcess``: workers a test may kill; all are stopped
    when the test ends. `env` overrides the worker's environment, e.g.
    lower time limits and visibility timeout."""
    started: list[WorkerProcess] = []

    def start(**options: Any) -> WorkerProcess:
        worker = _start_worker(hostname=f"test-worker-{len(started) + 1}-{os.getpid()}", **options)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
def gunicorn_factory(services_available: None, django_db_setup: None) -> Iterator[Callable[..., str]]:
    """``start(**env) -> base URL``: gunicorn (three processes, as production runs it) on the test database and the
    Redis broker, with `env` on top; every one started is stopped when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**overrides: str) -> str:
        port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_processes(),
            "REDIS_URL": settings.REDIS_URL,
            "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
            "MCP_OUTBOUND_ALLOWLIST": "127.0.0.1",
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "3",
            "GUNICORN_ACCESS_LOG": "/dev/null",
            **overrides,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return base
            except httpx2.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("gunicorn did not start: " + (process.stderr.read() if process.stderr else b"").decode())
            time.sleep(0.2)

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
