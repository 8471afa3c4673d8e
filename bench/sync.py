"""Tool sync against real SDK servers: our mcp_server_sync (probe + list + upsert on PostgreSQL) next to the bare
SDK's connect-and-list of the same server, interleaved, with the sync's DB query count.

    .venv/bin/python -m bench.sync [--sizes 10,100,1000,5000] [--runs 7] [--page-size 0]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from typing import Any

import anyio

from bench import common


def sdk_list(url: str, mode: str) -> int:
    """The bare SDK: Client(url, mode=...) with its defaults, list_tools following cursors."""
    from mcp.client.client import Client

    async def run() -> int:
        count = 0
        async with Client(url, mode=mode) as client:
            cursor: str | None = None
            for _ in range(1000):
                page = await client.list_tools(cursor=cursor)
                count += len(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        return count

    return anyio.run(run)


def _no_setup(fn: Callable[[], None]) -> Callable[[], Callable[[], None]]:
    return lambda: fn


def measure(sizes: list[int], runs: int, page_size: int, deadline: float) -> list[list[Any]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench import seed
    from integrations import mcp
    from mcp_servers import services
    from mcp_servers.limits import mcp_client_factory, sync_limits

    organization, _ = seed.admin_access("bench-sync")
    rows: list[list[Any]] = []
    for size in sizes:
        with common.mcp_server(size, page_size) as url:
            queries: list[int] = []
            counter = iter(range(10**6))

            def ours(url: str = url, size: int = size, counter: Any = counter) -> Callable[[], None]:
                # The server row is made here, before the clock starts: the sync is what is timed.
                server = seed.server_row(organization, url, f"s{size}_{next(counter)}")

                def sync() -> None:
                    outcome = services.mcp_server_sync(server_id=server.pk)
                    if outcome != services.SyncOutcome.SUCCESS:
                        raise RuntimeError(f"sync of {size} tools: {outcome}")

                return sync

            def ours_list(url: str = url, size: int = size) -> None:
                listing = mcp.list_remote_tools(url, {}, http_client_factory=mcp_client_factory(), limits=sync_limits())
                assert len(listing.tools) == size

            def auto(url: str = url, size: int = size) -> None:
                assert sdk_list(url, "auto") == size

            def legacy(url: str = url, size: int = size) -> None:
                assert sdk_list(url, "legacy") == size

            def count_queries(queries: list[int] = queries) -> None:
                # Untimed: Django's capturing cursor renders every statement with its parameters (the upsert's
                # is the whole tool list), which would otherwise be timed as part of the sync.
                sync = ours()
                with CaptureQueriesContext(connection) as ctx:
                    sync()
                queries.append(len(ctx.captured_queries))

            # Each contender's setup returns what is timed.
            contenders: list[tuple[str, Callable[[], Callable[[], None]]]] = [
                ("ours", ours),
                ("ours_list", _no_setup(ours_list)),
                ("auto", _no_setup(auto)),
                ("legacy", _no_setup(legacy)),
            ]
            count_queries()
            for _, setup in contenders:  # warm-up: imports, connection pools, the server's caches
                setup()()
            count_queries()
            times: dict[str, list[float]] = {name: [] for name, _ in contenders}
            for run in range(runs):
                if time.monotonic() > deadline:
                    break
                shift = run % len(contenders)
                for name, setup in contenders[shift:] + contenders[:shift]:  # rotate the order each run
                    timed = setup()
                    gc.collect()  # each starts from a clean heap: no one pays for the previous one's garbage
                    start = time.perf_counter()
                    timed()
                    times[name].append(time.perf_counter() - start)
            if os.environ.get("BENCH_VERBOSE"):
                for name, values in times.items():
                    print(name, " ".join(f"{v * 1000:.0f}" for v in values), flush=True)
            n = len(times["ours"])
            ratio_auto = common.median([o / a for o, a in zip(times["ours"], times["auto"], strict=False)])
            ratio_legacy = common.median([o / b for o, b in zip(times["ours"], times["legacy"], strict=False)])
            # Noise on shared cores only ever adds time, so the fastest runs are the steadiest comparison.
            best_auto = min(times["ours"]) / min(times["auto"])
            rows.append(
                [
                    size,
                    n,
                    f"{common.median(times['ours']) * 1000:.1f}",
                    f"{common.median(times['ours_list']) * 1000:.1f}",
                    f"{common.median(times['auto']) * 1000:.1f}",
                    f"{common.median(times['legacy']) * 1000:.1f}",
                    f"{ratio_auto:.2f}x",
                    f"{best_auto:.2f}x",
                    f"{ratio_legacy:.2f}x",
                    "/".join(str(q) for q in sorted(set(queries))),
                ]
            )
            print(common.table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
    return rows


HEADERS = [
    "tools",
    "runs",
    "our sync ms",
    "our list only ms",
    "SDK auto ms",
    "SDK legacy ms",
    "sync/auto",
    "best/best auto",
    "sync/legacy",
    "sync DB queries",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--page-size",
        type=int,
        default=1000,
        help="server page size (0: one page; the bare SDK then fails at 5,000 tools: 1 MiB SSE event limit)",
    )
    parser.add_argument("--max-seconds", type=float, default=240)
    args = parser.parse_args()
    deadline = time.monotonic() + args.max_seconds
    with common.database() as url:
        common.django_setup(url, MCP_OUTBOUND_ALLOWLIST="127.0.0.1", MCP_SYNC_MAX_TOOLS="10000")
        common.like_a_worker_process()  # the bare SDK runs in this process too, so it gets the same collector
        rows = measure([int(s) for s in args.sizes.split(",")], args.runs, args.page_size, deadline)
    print(
        f"\n## Tool sync (PostgreSQL, page size {args.page_size or 'unpaginated'}; times are medians; sync/x is the "
        "median of per-run ratios, best/best the fastest run's over the fastest run's)"
    )
    print(common.table(HEADERS, rows))


if __name__ == "__main__":
    main()
