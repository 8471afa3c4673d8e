"""DB queries per operation at two sizes each (CaptureQueriesContext): they must not grow with tools or servers.

In process, on PostgreSQL, with REDIS_URL set (a create only queues its sync) and MCP_SYNC_WAIT_SECONDS=0.

    .venv/bin/python -m bench.queries
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench import common

HEADERS = ["operation", "small", "queries", "large", "queries", "constant"]


def count(fn: Callable[[], Any]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def warm_up(http: Any, url: str) -> None:
    """One request first: a key's last_used_at is written at most once a minute (one UPDATE), not per request."""
    assert http.get(url + "?limit=1").status_code == 200


def measure() -> list[list[Any]]:
    from django.test import Client

    from bench import seed
    from mcp_servers import services

    rows: list[list[Any]] = []

    def row(name: str, small: str, n_small: int, large: str, n_large: int) -> None:
        rows.append([name, small, n_small, large, n_large, "yes" if n_small == n_large else "NO"])

    # Sync: real SDK servers.
    organization, _ = seed.admin_access("bench-queries-sync")
    counts = []
    for size in (10, 1000):
        with common.mcp_server(size) as url:
            server = seed.server_row(organization, url, f"q_sync_{size}")

            def sync(pk: Any = server.pk) -> None:
                services.mcp_server_sync(server_id=pk)

            counts.append(count(sync))
    row("mcp_server_sync", "10 tools", counts[0], "1000 tools", counts[1])

    # Create: into an organization with 1, then 100, servers (100 tools each).
    counts = []
    for existing in (1, 100):
        org, key = seed.admin_access(f"bench-queries-create-{existing}")
        seed.synced_servers(org, existing, 100, f"c{existing}")
        http = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
        url = f"/api/public/organizations/{org.pk}/mcp-servers"
        warm_up(http, url)
        body = {"displayName": "Bench", "serverUrl": "https://mcp-1.example.com/mcp"}

        def create(http: Client = http, url: str = url, body: dict[str, str] = body) -> None:
            assert http.post(url, body, content_type="application/json").status_code == 201

        counts.append(count(create))
    row("POST create", "1 server in org", counts[0], "100 servers in org", counts[1])

    # Get: one server with 10, then 1000, tools.
    org, key = seed.admin_access("bench-queries-get")
    http = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    warm_up(http, f"/api/public/organizations/{org.pk}/mcp-servers")
    counts = []
    for tools in (10, 1000):
        [server_id] = seed.synced_servers(org, 1, tools, f"g{tools}")

        def get(server_id: Any = server_id) -> None:
            assert http.get(f"/api/public/organizations/{org.pk}/mcp-servers/{server_id}").status_code == 200

        counts.append(count(get))
    row("GET server", "10 tools", counts[0], "1000 tools", counts[1])

    # List: 5 servers x 10 tools, then 50 servers x 100 tools.
    counts = []
    for servers, tools in ((5, 10), (50, 100)):
        org, key = seed.admin_access(f"bench-queries-list-{servers}")
        seed.synced_servers(org, servers, tools, f"l{servers}")
        http = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
        warm_up(http, f"/api/public/organizations/{org.pk}/mcp-servers")

        def listing(http: Client = http, org_id: Any = org.pk) -> None:
            assert http.get(f"/api/public/organizations/{org_id}/mcp-servers?limit=50").status_code == 200

        counts.append(count(listing))
    row("GET list (limit 50)", "5 servers x 10 tools", counts[0], "50 servers x 100 tools", counts[1])
    return rows


def main() -> None:
    with common.database() as url:
        common.django_setup(
            url,
            REDIS_URL=common.REDIS_URL,
            MCP_SYNC_WAIT_SECONDS="0",
            MCP_RATE_LIMIT="",
            MCP_OUTBOUND_ALLOWLIST="127.0.0.1",
        )
        common.redis_flush()
        try:
            rows = measure()
        finally:
            common.redis_flush()
    print("\n## DB queries per operation (PostgreSQL)")
    print(common.table(HEADERS, rows))


if __name__ == "__main__":
    main()
