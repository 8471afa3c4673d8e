"""The MCP endpoint: one MCP client's requests through the organization's endpoint against straight to the upstream.

Both sides are the official SDK's `Client` in this process, each with its session open before the clock starts (the
issue's condition: a client keeps its session; the service keeps its own with the upstream), in the same protocol
era (`--modes`: `auto` speaks 2026-07-28 to both, `legacy` the 2025-11-25 handshake). The service runs under
gunicorn on PostgreSQL with Redis, as production does; the upstream is the SDK-built test server
(tests/servers/mcp_server.py). Everything runs on the same cores, side by side in one run, so the ratios hold while the
machine's speed drifts.

- tools/call of `tool_0` (ALWAYS_ALLOW: governed, run and recorded in the audit trail), at concurrency 1 and 16;
  p50 and p99. Target: p50 through the endpoint within 1.5x of direct.
- tools/list of a 5,000-tool catalog, every page (1,000 tools a page on both sides: MCP_ENDPOINT_PAGE_SIZE and the
  upstream's page size), `--lists` times. Target: within 2x of the upstream listing the same tools.
- The floor under the first ratio: `/healthz` on the same gunicorn plus the direct call (any HTTP hop in front of
  the upstream costs at least that).

    .venv/bin/python -m bench.endpoint [--calls 300] [--lists 20] [--modes auto,legacy]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from bench import common
from bench.calls import ARGUMENTS, TOOL, gunicorn, load

CATALOG_TOOLS = 5000
PAGE_SIZE = 1000


async def _timed(
    connect: Callable[[], Any], request: Callable[[Any], Awaitable[Any]], count: int, concurrency: int
) -> tuple[list[float], float]:
    """`count` requests from `concurrency` tasks on one open session: (latencies in seconds, wall seconds)."""
    async with connect() as client:
        for _ in range(10):  # warm: the session, the connections, the service's session with the upstream
            await request(client)
        latencies: list[float] = []
        remaining = iter(range(count))

        async def worker() -> None:
            for _ in remaining:
                start = time.perf_counter()
                await request(client)
                latencies.append(time.perf_counter() - start)

        begun = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - begun


def _client(url: str, key: str | None, mode: str) -> Callable[[], Any]:
    from mcp.client.client import Client
    from mcp.client.streamable_http import streamable_http_client

    def connect() -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        http = httpx2.AsyncClient(headers=headers, timeout=60, trust_env=False)
        return Client(streamable_http_client(url, http_client=http), mode=mode, cache=None)

    return connect


async def _call(name: str, client: Any) -> None:
    result = await client.call_tool(name, ARGUMENTS)
    assert not result.is_error, result


async def _list_all(expected: int, client: Any) -> None:
    names: list[str] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor, cache_mode="refresh")
        names.extend(tool.name for tool in page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    assert len(names) == expected, (len(names), expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="tools/call requests per side and concurrency")
    parser.add_argument("--lists", type=int, default=20, help="full listings of the 5,000-tool catalog per side")
    parser.add_argument("--modes", default="auto,legacy", help="the SDK client's modes (protocol eras) to measure")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn process")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    with (
        common.database() as database_url,
        common.mcp_server(tools=4) as call_url,
        common.mcp_server(tools=CATALOG_TOOLS, page_size=PAGE_SIZE) as catalog_url,
    ):
        common.redis_flush()
        common.django_setup(database_url, MCP_OUTBOUND_ALLOWLIST="127.0.0.1", REDIS_URL="")
        from bench import seed
        from mcp_servers.models import McpServer, ToolCall
        from mcp_servers.services import SyncOutcome, mcp_server_sync

        # One organization whose catalog is the call server's tools, one whose catalog is the 5,000 tools alone.
        organization, key = seed.admin_access("bench-endpoint")
        catalog_organization, catalog_key = seed.admin_access("bench-endpoint-catalog")
        calls = seed.server_row(organization, call_url, "calls")
        catalog = seed.server_row(catalog_organization, catalog_url, "catalog")
        for server in (calls, catalog):
            assert mcp_server_sync(server_id=server.pk) == SyncOutcome.SUCCESS
        assert McpServer.objects.get(pk=catalog.pk).tools.count() == CATALOG_TOOLS
        call_rows: list[list[Any]] = []
        list_rows: list[list[Any]] = []
        targets: list[list[Any]] = []
        with gunicorn(database_url, args.workers, args.threads) as (base, _pid):
            ours = f"{base}/api/public/organizations/{organization.pk}/mcp"
            catalog_endpoint = f"{base}/api/public/organizations/{catalog_organization.pk}/mcp"
            for mode in modes:
                p50: dict[tuple[str, int], float] = {}
                for concurrency in (1, 16):
                    sides = (
                        ("direct to the upstream", call_url, None, TOOL),
                        ("through /organizations/{orgId}/mcp", ours, key, f"calls__{TOOL}"),
                    )
                    for label, url, token, name in sides:
                        latencies, wall = asyncio.run(
                            _timed(_client(url, token, mode), functools.partial(_call, name), args.calls, concurrency)
                        )
                        p50[label, concurrency] = common.percentile(latencies, 50)
                        call_rows.append([
                            mode, label, concurrency, len(latencies), f"{len(latencies) / wall:.0f}",
                            f"{p50[label, concurrency] * 1000:.2f}", f"{common.percentile(latencies, 99) * 1000:.2f}",
                        ])  # fmt: skip
                    if concurrency == 1:
                        healthz = load(f"{base}/healthz", args.calls, 1)
                        floor = common.percentile(healthz[0], 50) + p50["direct to the upstream", 1]
                for concurrency in (1, 16):
                    through, direct = (
                        p50["through /organizations/{orgId}/mcp", concurrency],
                        p50["direct to the upstream", concurrency],
                    )
                    targets.append([
                        f"tools/call p50, {mode}, concurrency {concurrency}",
                        f"{through * 1000:.2f} / {direct * 1000:.2f} ms", f"{through / direct:.2f}x", "at most 1.5x",
                    ])  # fmt: skip
                targets.append([
                    f"  floor: /healthz p50 + direct p50, {mode}", f"{floor * 1000:.2f} ms",
                    f"{floor / p50['direct to the upstream', 1]:.2f}x", "(any hop in front of the upstream)",
                ])  # fmt: skip

                listed: dict[str, float] = {}
                for label, url, token, expected in (
                    ("the upstream lists its tools", catalog_url, None, CATALOG_TOOLS),
                    ("through /organizations/{orgId}/mcp", catalog_endpoint, catalog_key, CATALOG_TOOLS),
                ):
                    latencies, _wall = asyncio.run(
                        _timed(_client(url, token, mode), functools.partial(_list_all, expected), args.lists, 1)
                    )
                    listed[label] = common.median(latencies)
                    list_rows.append([
                        mode, label, expected, len(latencies), f"{listed[label] * 1000:.1f}",
                        f"{common.percentile(latencies, 99) * 1000:.1f}",
                    ])  # fmt: skip
                ratio = listed["through /organizations/{orgId}/mcp"] / listed["the upstream lists its tools"]
                targets.append([
                    f"tools/list of {CATALOG_TOOLS:,} tools, {mode}",
                    f"{listed['through /organizations/{orgId}/mcp'] * 1000:.1f} / "
                    f"{listed['the upstream lists its tools'] * 1000:.1f} ms", f"{ratio:.2f}x", "at most 2x",
                ])  # fmt: skip
        recorded = ToolCall.objects.filter(status="COMPLETED", channel="MCP").count()
    print(f"\ncalibration: {common.calibration_ms():.0f} ms")
    print("\n## MCP endpoint: tools/call, through the endpoint and direct (same client, same tool, one run)\n")
    print(common.table(["mode", "side", "concurrency", "calls", "calls/s", "p50 ms", "p99 ms"], call_rows))
    print(f"\n{recorded} calls recorded COMPLETED with channel MCP in the audit trail.")
    print(f"\n## MCP endpoint: tools/list of every page ({PAGE_SIZE} tools a page on both sides)\n")
    print(common.table(["mode", "side", "tools", "listings", "median ms", "p99 ms"], list_rows))
    print("\n## MCP endpoint: the targets\n")
    print(common.table(["measure", "figures", "ratio", "target"], targets))


if __name__ == "__main__":
    main()
