from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from django.db.models import Prefetch, Q, QuerySet

from core.errors import NotFound, ValidationError
from mcp_servers.models import AccessMode, McpServer, McpServerAccess, McpTool, SetupState, SyncStatus
from organizations.models import Organization

_TOOL_FIELDS = ("id", "server_id", "name", "description", "read_only_hint", "access_mode", "found_in_server")


def mcp_servers_with_tools() -> QuerySet[McpServer]:
    """Servers with their tools in two queries, whatever the number of either."""
    return McpServer.objects.prefetch_related(
        Prefetch("tools", queryset=McpTool.objects.only(*_TOOL_FIELDS).order_by("name"))
    )


def mcp_server_get(*, organization: Organization, server_id: str | uuid.UUID) -> McpServer:
    """One server of `organization` with its tools, to render; a malformed id, another org's id and a missing id
    look alike (404)."""
    return _one(mcp_servers_with_tools(), organization, server_id)


def mcp_server_find(*, organization: Organization, server_id: str | uuid.UUID) -> McpServer:
    """One server of `organization` without its tools, for writes and sub-resources (same 404 rules)."""
    return _one(McpServer.objects.all(), organization, server_id)


def _one(servers: QuerySet[McpServer], organization: Organization, server_id: str | uuid.UUID) -> McpServer:
    try:
        server_uuid = server_id if isinstance(server_id, uuid.UUID) else uuid.UUID(server_id)
    except ValueError:
        raise NotFound("MCP server not found.") from None
    server = servers.filter(organization=organization, pk=server_uuid).first()
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
    if timeout <= 0:
        return  # nothing to wait for: the lookup's answer could not change what the caller does
    deadline = time.monotonic() + timeout
    interval = 0.02
    while True:
        row = McpServer.objects.filter(pk=server_id).values_list("last_sync_status", "auth_url").first()
        remaining = deadline - time.monotonic()
        if row is None or done(*row) or remaining <= 0:
            return
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 0.25)


def mcp_servers_page(
    *, organization: Organization, limit: int, cursor: str | None
) -> tuple[list[McpServer], str | None]:
    """Newest first (ids are UUIDv7), `limit` at a time after the `cursor` id; two queries whatever the sizes."""
    servers = mcp_servers_with_tools().filter(organization=organization).order_by("-id")
    if cursor:
        try:
            servers = servers.filter(pk__lt=uuid.UUID(cursor))
        except ValueError:
            raise ValidationError("cursor", "is not a valid cursor (use pagination.nextCursor).") from None
    rows = list(servers[: limit + 1])
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1].pk)
    return rows, None


def mcp_server_tools(*, server: McpServer) -> QuerySet[McpTool]:
    return McpTool.objects.filter(server=server).order_by("name")


def mcp_tool_get(*, server: McpServer, tool_id: str) -> McpTool:
    try:
        tool_uuid = uuid.UUID(tool_id)
    except ValueError:
        raise NotFound("Tool not found.") from None
    tool = McpTool.objects.filter(server=server, pk=tool_uuid).first()
    if tool is None:
        raise NotFound("Tool not found.")
    return tool


def mcp_server_access_list(*, server: McpServer) -> QuerySet[McpServerAccess]:
    return McpServerAccess.objects.filter(server=server).select_related("user").order_by("created_at")


def mcp_tool_catalog(*, organization: Organization, user_id: int, is_admin: bool) -> list[McpTool]:
    """The tools a member's AI models may use: connected servers the member may access (every server for an
    admin), tools the server still lists, nothing BLOCKED. One query."""
    servers = McpServer.objects.filter(organization=organization, setup_state=SetupState.CONNECTED)
    if not is_admin:
        servers = servers.filter(Q(everyone_in_organization_can_access=True) | Q(access_grants__user_id=user_id))
    return list(
        McpTool.objects.filter(server__in=servers.values("pk"), found_in_server=True)
        .exclude(access_mode=AccessMode.BLOCKED)
        .select_related("server")
        .only(
            "id",
            "name",
            "title",
            "description",
            "input_schema",
            "annotations",
            "access_mode",
            "server__id",
            "server__server_label",
        )
    )
