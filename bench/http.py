"""The create and list endpoints under gunicorn (several processes) on PostgreSQL + Redis, sync deferred.

MCP_SYNC_WAIT_SECONDS=0 and REDIS_URL=<db 13>: a create only queues its sync (no worker runs, nothing is fetched).
Rate limits are on, at the production defaults (600 requests a minute per key, counted in Redis); the load is
spread over enough API keys that none reaches its limit, as many clients each within their limit would be.
The load generator is a bounded thread pool in this process, on the same cores as the server.

    .venv/bin/python -m bench.http [--workers 2] [--requests 2000] [--concurrency 8] [--rate-limit off]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2

from bench import common


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(
    database_url: str, workers: int, threads: int, conn_max_age: int, rate_limit: str
) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": common.REDIS_URL,
        "MCP_RATE_LIMIT": rate_limit,
        "MCP_SYNC_WAIT_SECONDS": "0",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "GUNICORN_ACCESS_LOG": "/dev/null",
        "LOG_LEVEL": "WARNING",
        "DATABASE_CONN_MAX_AGE": str(conn_max_age),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=common.REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + common.START_TIMEOUT
        while True:
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)
        # Every worker up (each imports the app on its own) before anything is measured.
        while len(common.children(process.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        yield base, process.pid
    finally:
        common.stop(process)


def load(
    request: Callable[[httpx2.Client, int], httpx2.Response],
    total: int,
    concurrency: int,
    max_seconds: float,
    expect: int,
) -> tuple[list[float], float, int]:
    """Send at most ``total`` requests from ``concurrency`` threads for at most ``max_seconds``.

    Returns (latencies in seconds, wall seconds, failures)."""
    lock = threading.Lock()
    issued = iter(range(total))
    latencies: list[float] = []
    failures = [0]
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        with httpx2.Client(timeout=30) as http:
            while time.monotonic() < deadline:
                with lock:
                    i = next(issued, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    status = request(http, i).status_code
                except httpx2.HTTPError:
                    status = 0
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if status != expect:
                        failures[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + 60)
    return latencies, time.perf_counter() - start, failures[0]


def scenario(
    name: str,
    pid: int,
    request: Callable[[httpx2.Client, int], httpx2.Response],
    total: int,
    concurrency: int,
    max_seconds: float,
    expect: int,
) -> list[Any]:
    load(request, min(50, total), concurrency, 30, expect)  # warm-up, not counted
    before = common.tree_cpu_ms(pid)
    latencies, wall, failures = load(request, total, concurrency, max_seconds, expect)
    cpu = common.tree_cpu_ms(pid) - before
    n = len(latencies)
    return [
        name,
        n,
        concurrency,
        failures,
        f"{n / wall:.0f}",
        f"{common.percentile(latencies, 50) * 1000:.1f}",
        f"{common.percentile(latencies, 99) * 1000:.1f}",
        f"{cpu / max(n, 1):.2f}",
    ]


PRODUCTION_RATE_LIMIT = "600/minute"  # config/settings.py's default


def _per_minute(rule: str) -> float:
    from limits import parse

    item = parse(rule)
    return item.amount * 60 / item.get_expiry()


HEADERS = [
    "CONN_MAX_AGE",
    "endpoint",
    "requests",
    "concurrency",
    "non-2xx",
    "req/s",
    "p50 ms",
    "p99 ms",
    "server CPU ms/req",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--list-requests", type=int, default=300)
    parser.add_argument("--floor-requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=60)
    parser.add_argument("--conn-max-age", default="0,60", help="DATABASE_CONN_MAX_AGE values to run (0: the default)")
    parser.add_argument(
        "--rate-limit", default=PRODUCTION_RATE_LIMIT, help="MCP_RATE_LIMIT for the server ('off': no per-key limit)"
    )
    args = parser.parse_args()
    rate_limit = "" if args.rate_limit == "off" else args.rate_limit
    rows = []
    with common.database() as url:
        common.django_setup(url)
        from bench import seed

        # Enough keys that none passes its limit (with 20% to spare: warm-up requests count too).
        keys = max(1, math.ceil((args.requests + 50) / (_per_minute(rate_limit) * 0.8))) if rate_limit else 1
        organization, first_key = seed.admin_access("bench-http")
        auths = [{"Authorization": f"Bearer {k}"} for k in [first_key, *seed.more_keys(organization, keys - 1)]]
        list_org, list_key = seed.admin_access("bench-http-list")
        seed.synced_servers(list_org, 50, 100, "list")
        list_auth = {"Authorization": f"Bearer {list_key}"}
        common.redis_flush()
        print(f"calibration: {common.calibration_ms():.0f} ms (pure-Python loop; lower is a faster machine)")
        try:
            for age in [int(a) for a in args.conn_max_age.split(",")]:
                common.redis_flush()  # each configuration starts with fresh rate-limit windows (and no queue)
                with gunicorn(url, args.workers, args.threads, age, rate_limit) as (base, pid):
                    create_url = f"{base}/api/public/organizations/{organization.pk}/mcp-servers"

                    # Zero-padded: "Bench 1" would otherwise share its label prefix with "Bench 10", "Bench 100", ...
                    def create(http: httpx2.Client, i: int, age: int = age, url: str = create_url) -> httpx2.Response:
                        body = {"displayName": f"Bench {age} {i:05d}", "serverUrl": f"https://mcp-{i}.example.com/mcp"}
                        return http.post(url, json=body, headers=auths[i % len(auths)])

                    list_url = f"{base}/api/public/organizations/{list_org.pk}/mcp-servers?limit=50"

                    def listing(http: httpx2.Client, i: int, url: str = list_url) -> httpx2.Response:
                        return http.get(url, headers=list_auth)

                    def floor(http: httpx2.Client, i: int, url: str = f"{base}/healthz") -> httpx2.Response:
                        return http.get(url)

                    scenarios: list[tuple[str, Callable[[httpx2.Client, int], httpx2.Response], int, int]] = [
                        ("GET /healthz (floor: no DB, no auth)", floor, args.floor_requests, 200),
                        ("POST create (wait 0)", create, args.requests, 201),
                        ("GET list (50 servers x 100 tools)", listing, args.list_requests, 200),
                    ]
                    for name, fn, total, expect in scenarios:
                        if total <= 0:
                            continue
                        row = scenario(name, pid, fn, total, args.concurrency, args.max_seconds, expect)
                        rows.append([age, *row])
                        print(common.table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
        finally:
            common.redis_flush()
    print(
        f"\n## HTTP under gunicorn (WEB_CONCURRENCY={args.workers}, {args.threads} threads; PostgreSQL + Redis; "
        f"MCP_SYNC_WAIT_SECONDS=0; MCP_RATE_LIMIT={rate_limit or 'off'!r} over {keys} API key(s))"
    )
    print(common.table(HEADERS, rows))


if __name__ == "__main__":
    main()
