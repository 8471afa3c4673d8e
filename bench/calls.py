"""Tool calls: a call through the service against the bare SDK's call of the same tool on the same server.

The floor is the SDK's own `Client.call_tool` with its session already open (the fair floor: a client that keeps a
session pays no handshake per call), from this process. The service runs under gunicorn (as production does) on
PostgreSQL, its calls going through each web process's background loop over sessions it keeps open; the load comes
from threads in this process with keep-alive HTTP connections. Both sides call `tool_0` of the SDK-built test server
(tests/servers/mcp_server.py), at concurrency 1 and 16, all on the same cores; the ratios are side by side in one run.
The per-key rate limit is off here (bench.http measures it); everything else is as configured by default.

    .venv/bin/python -m bench.calls [--calls 400] [--workers 2] [--threads 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2

from bench import common

TOOL = "tool_0"
ARGUMENTS = {"text": "hello", "repeat": 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(database_url: str, workers: int, threads: int) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": common.REDIS_URL,
        "MCP_RATE_LIMIT": "",
        "MCP_OUTBOUND_ALLOWLIST": "127.0.0.1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "GUNICORN_ACCESS_LOG": "/dev/null",
        "LOG_LEVEL": "WARNING",
        "DATABASE_CONN_MAX_AGE": "60",
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
        while len(common.children(process.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        yield base, process.pid
    finally:
        common.stop(process)


def sdk_floor(url: str, calls: int, concurrency: int) -> tuple[list[float], float]:
    """The SDK's own calls on one open session: (latencies in seconds, wall seconds)."""
    from mcp.client.client import Client

    async def run() -> tuple[list[float], float]:
        async with Client(url, cache=None) as client:
            for _ in range(20):  # warm: the session, the connection, the tool listing the client keeps
                await client.call_tool(TOOL, ARGUMENTS)
            latencies: list[float] = []
            remaining = iter(range(calls))

            async def worker() -> None:
                for _ in remaining:
                    start = time.perf_counter()
                    result = await client.call_tool(TOOL, ARGUMENTS)
                    latencies.append(time.perf_counter() - start)
                    assert not result.is_error

            begun = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return latencies, time.perf_counter() - begun

    return asyncio.run(run())


def load(
    url: str, calls: int, concurrency: int, *, body: dict[str, Any] | None = None, key: str = ""
) -> tuple[list[float], float, int]:
    """`calls` requests (POST with `body`, else GET) from `concurrency` threads, each with a keep-alive connection:
    (latencies in seconds, wall seconds, answers other than 200)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    lock = threading.Lock()
    remaining = iter(range(calls))
    latencies: list[float] = []
    failures = [0]

    def worker() -> None:
        with httpx2.Client(timeout=60) as http:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                start = time.perf_counter()
                if body is None:
                    response = http.get(url, headers=headers)
                else:
                    response = http.post(url, json=body, headers=headers)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        failures[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    begun = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - begun, failures[0]


def row(side: str, concurrency: int, measured: tuple[list[float], float, int], cpu_ms: float | None) -> list[Any]:
    latencies, wall, failures = measured
    return [
        side,
        concurrency,
        len(latencies),
        failures,
        f"{len(latencies) / wall:.0f}",
        f"{common.percentile(latencies, 50) * 1000:.2f}",
        f"{common.percentile(latencies, 99) * 1000:.2f}",
        "" if cpu_ms is None else f"{cpu_ms / len(latencies):.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=400, help="calls per side and concurrency")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn process")
    args = parser.parse_args()
    with common.database() as database_url, common.mcp_server(tools=4) as mcp_url:
        common.django_setup(database_url, MCP_OUTBOUND_ALLOWLIST="127.0.0.1", REDIS_URL="")
        from bench import seed
        from mcp_servers.models import ToolCall
        from mcp_servers.services import SyncOutcome, mcp_server_sync

        organization, key = seed.admin_access("bench-calls")
        server = seed.server_row(organization, mcp_url, "bench_calls")
        assert mcp_server_sync(server_id=server.pk) == SyncOutcome.SUCCESS
        rows = []
        results: dict[tuple[str, int], tuple[list[float], float, int]] = {}
        with gunicorn(database_url, args.workers, args.threads) as (base, pid):
            calls_url = f"{base}/api/public/organizations/{organization.pk}/tool-calls"
            body = {"tool": f"bench_calls__{TOOL}", "arguments": ARGUMENTS}
            for concurrency in (1, 16):
                # Warm every web process's session and connection pools first (not counted).
                load(calls_url, 4 * args.workers * concurrency, concurrency, body=body, key=key)
                load(f"{base}/healthz", 4 * args.workers * concurrency, concurrency)
                for side in ("healthz", "sdk", "service"):
                    cpu_before = common.tree_cpu_ms(pid)
                    if side == "healthz":
                        measured = load(f"{base}/healthz", args.calls, concurrency)
                    elif side == "sdk":
                        latencies, wall = sdk_floor(mcp_url, args.calls, concurrency)
                        measured = (latencies, wall, 0)
                    else:
                        measured = load(calls_url, args.calls, concurrency, body=body, key=key)
                    cpu = common.tree_cpu_ms(pid) - cpu_before if side != "sdk" else None
                    results[side, concurrency] = measured
                    label = {
                        "healthz": "GET /healthz, same gunicorn (the HTTP floor)",
                        "sdk": "bare SDK, session open",
                        "service": "through the service",
                    }[side]
                    rows.append(row(label, concurrency, measured, cpu))
            recorded = ToolCall.objects.filter(status="COMPLETED").count()
    print(f"\ncalibration: {common.calibration_ms():.0f} ms")
    print("\n## Tool calls: the service against the bare SDK (same tool, same server, one run)\n")
    headers = ["side", "concurrency", "calls", "failed", "calls/s", "p50 ms", "p99 ms", "web CPU ms/request"]
    print(common.table(headers, rows))
    print(f"\n{recorded} calls recorded COMPLETED in the audit trail.")

    def p50(side: str, concurrency: int) -> float:
        return common.percentile(results[side, concurrency][0], 50)

    def throughput(side: str, concurrency: int) -> float:
        latencies, wall, _ = results[side, concurrency]
        return len(latencies) / wall

    floor = p50("healthz", 1) + p50("sdk", 1)
    ratios = [
        ["p50 at concurrency 1, service / SDK", f"{p50('service', 1) * 1000:.2f} / {p50('sdk', 1) * 1000:.2f} ms",
         f"{p50('service', 1) / p50('sdk', 1):.2f}x", "at most 1.5x"],
        ["calls/s at concurrency 16, service / SDK", f"{throughput('service', 16):.0f} / {throughput('sdk', 16):.0f}",
         f"{throughput('service', 16) / throughput('sdk', 16):.2f}x", "at least 0.5x"],
        ["added latency at concurrency 1 (p50)", f"{(p50('service', 1) - p50('sdk', 1)) * 1000:.2f} ms", "", ""],
        ["any view in front of the SDK: /healthz p50 + SDK p50, over SDK", f"{floor * 1000:.2f} ms",
         f"{floor / p50('sdk', 1):.2f}x", "(the floor of the first ratio)"],
    ]  # fmt: skip
    print("\n## Tool calls: the targets\n")
    print(common.table(["measure", "figures", "ratio", "target"], ratios))


if __name__ == "__main__":
    main()
