"""Shared plumbing for the benchmarks: a throwaway PostgreSQL database, Django setup, MCP test servers, /proc reads.

Every process started here is stopped by the context manager that started it. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
PG_BASE = PG_ADMIN_URL.rsplit("/", 1)[0]
REDIS_BASE = os.environ.get("BENCH_REDIS_BASE", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "13"))
REDIS_URL = f"{REDIS_BASE}/{REDIS_DB}"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN_URL, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        timeout=60,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
    )


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database ``bench_<pid>``, dropped on exit; or BENCH_DATABASE_URL as given."""
    given = os.environ.get("BENCH_DATABASE_URL")
    if given:
        yield given
        return
    name = f"bench_{os.getpid()}"
    _psql(f"DROP DATABASE IF EXISTS {name}")
    _psql(f"CREATE DATABASE {name}")
    url = f"{PG_BASE}/{name}"
    try:
        env = {**os.environ, "DATABASE_URL": url}
        env.pop("REDIS_URL", None)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        yield url
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def django_setup(database_url: str, **extra_env: str) -> None:
    """Configure this process's Django on the given database (call before importing app modules)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for key, value in extra_env.items():
        os.environ[key] = value
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()


def like_a_worker_process() -> None:
    """Load what a Celery worker process loads and tune its garbage collector as config/celery.py does, so an
    in-process sync runs as it would in the worker (call after django_setup)."""
    import mcp_servers.tasks  # noqa: F401 - the task modules, as the worker imports them at start
    from core.runtime import tune_garbage_collector

    tune_garbage_collector()


def redis_flush() -> None:
    subprocess.run(["redis-cli", "-u", REDIS_URL, "FLUSHDB"], check=True, timeout=30, stdout=subprocess.DEVNULL)


def _readline_within(process: subprocess.Popen[bytes], timeout: float) -> str | None:
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout).decode().strip()
    except queue.Empty:
        return None


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def mcp_server(tools: int, page_size: int = 0) -> Iterator[str]:
    """The SDK-built test server (tests/servers/mcp_server.py) on 127.0.0.1; yields its MCP URL."""
    args = [sys.executable, "-m", "tests.servers.mcp_server", "--exit-with-parent", "--port", "0"]
    args += ["--tools", str(tools), "--page-size", str(page_size)]
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = _readline_within(process, START_TIMEOUT)
        if not line or not line.startswith("LISTENING "):
            raise RuntimeError(f"MCP test server did not start: {line!r}")
        yield line.split(" ", 1)[1]
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def tree_cpu_ms(pid: int) -> float:
    """CPU milliseconds (user + system) of a process and its direct children."""
    ticks = sum(cpu_ticks(p) for p in [pid, *children(pid)])
    return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")


def calibration_ms() -> float:
    """The best of five runs of a fixed pure-Python loop, in ms: a yardstick for comparing machines (and one
    machine's noisy moments), printed next to figures that depend on the CPU's speed."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i % 7
        best = min(best, time.perf_counter() - start)
    return best * 1000


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (printable as is, and pasteable into BENCHMARKS.md)."""
    text = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in text]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
