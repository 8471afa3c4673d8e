from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from django.db.models import Prefetch, QuerySet

from core.exceptions import NotFound
from mcp_servers.models import McpServer, McpTool, SyncStatus
from organizations.models import Organization

_TOOL_FIELDS = ("id", "server_id", "name", "description", "read_only_hint", "access_mode", "found_in_server")


def mcp_servers_with_tools() -> QuerySet[McpServer]:
    """Servers with their tools in two queries, whatever the number of either."""
    return McpServer.objects.prefetch_related(
        Prefetch("tools", queryset=McpTool.objects.only(*_TOOL_FIELDS).order_by("name"))
    )


def mcp_server_get(*, organization: Organization, server_id: str | uuid.UUID) -> McpServer:
    """One server of `organization` with its tools; a malformed id, another org's id and a missing id look alike."""
    try:
        server_uuid = server_id if isinstance(server_id, uuid.UUID) else uuid.UUID(server_id)
    except ValueError:
        raise NotFound("MCP server not found.") from None
    server = mcp_servers_with_tools().filter(organization=organization, pk=server_uuid).first()
    if server is None:
        raise NotFound("MCP server not found.")
    return server


def mcp_server_wait_for_sync(*, server_id: uuid.UUID, timeout: float) -> None:
    """Wait up to `timeout` seconds for the server's pending sync to settle (in-process syncs already have)."""
    _wait(server_id, timeout, lambda status, _auth_url: status != SyncStatus.PENDING)


def mcp_server_wait_for_new_auth_url(*, server_id: uuid.UUID, previous: str | None, timeout: float) -> None:
    """Wait up to `timeout` seconds for the worker to hand out an authorization URL other than `previous`."""
    _wait(server_id, timeout, lambda _status, auth_url: auth_url is not None and auth_url != previous)


def _wait(server_id: uuid.UUID, timeout: float, done: Callable[[str | None, str | None], bool]) -> None:
    """Poll one primary-key lookup with a growing interval (20 ms up to 250 ms) until `done` or the timeout."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while True:
        row = McpServer.objects.filter(pk=server_id).values_list("last_sync_status", "auth_url").first()
        remaining = deadline - time.monotonic()
        if row is None or done(*row) or remaining <= 0:
            return
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 0.25)
