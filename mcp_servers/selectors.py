from __future__ import annotations

import bisect
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Count, Prefetch, Q, QuerySet

from core.errors import NotFound, ValidationError
from mcp_servers import tool_catalog
from mcp_servers.models import (
    AccessMode,
    McpServer,
    McpServerAccess,
    McpServerGroupAccess,
    McpTool,
    SetupState,
    SyncStatus,
    ToolCall,
    ToolCallStatus,
)
from organizations.models import GroupMembership, Membership, Organization

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
    """The members granted the server directly, oldest grant first."""
    return McpServerAccess.objects.filter(server=server).select_related("user").order_by("created_at", "pk")


def mcp_server_group_access_list(*, server: McpServer) -> QuerySet[McpServerGroupAccess]:
    """The groups granted the server, oldest grant first, each with its group and `member_count`: one query."""
    return (
        McpServerGroupAccess.objects.filter(server=server)
        .select_related("group")
        .annotate(member_count=Count("group__memberships"))
        .order_by("created_at", "pk")
    )


def servers_usable_by(*, organization: Organization, user_id: int, is_admin: bool) -> QuerySet[McpServer]:
    """The servers a member's models may use: connected, and every one for an admin, else those everyone in the
    organization may use, those the member was granted directly, and those granted to any group the member is in.

    The one rule the catalog, tool calls (and their approvals) and the MCP endpoint share. It is one query whatever
    the number of grants, groups and members (the grants are subqueries, so a member granted a server twice, or
    through several groups, still sees it once), and it reads the grants as they stand: a deleted group, a removed
    member or a revoked grant counts no more on the next read.
    """
    servers = McpServer.objects.filter(organization=organization, setup_state=SetupState.CONNECTED)
    if not is_admin:
        granted = McpServerAccess.objects.filter(user_id=user_id).values("server_id")
        through_groups = McpServerGroupAccess.objects.filter(
            group__memberships__membership__user_id=user_id,
            group__memberships__membership__organization=organization,
        ).values("server_id")
        servers = servers.filter(
            Q(everyone_in_organization_can_access=True) | Q(pk__in=granted) | Q(pk__in=through_groups)
        )
    return servers


@dataclass(frozen=True)
class ServerUser:
    """A member who may use a server, and why: `everyone`, `admin`, `direct` and the names of the granting groups."""

    user_id: int
    email: str
    role: str
    everyone: bool
    admin: bool
    direct: bool
    groups: tuple[str, ...]


def mcp_server_users(*, server: McpServer) -> list[ServerUser]:
    """Every member of the server's organization who may use it, with the reasons, by email (the admin's "who may
    use it"; the rule is `servers_usable_by`'s). Three queries whatever the number of members, groups and grants."""
    memberships = Membership.objects.filter(organization_id=server.organization_id)
    everyone = server.everyone_in_organization_can_access
    if not everyone:
        memberships = memberships.filter(
            Q(role=Membership.Role.ADMIN)
            | Q(user_id__in=McpServerAccess.objects.filter(server=server).values("user_id"))
            | Q(pk__in=GroupMembership.objects.filter(group__mcp_server_grants__server=server).values("membership_id"))
        )
    rows = list(memberships.select_related("user").only("user_id", "role", "user__email").order_by("user__email", "pk"))
    direct = set(McpServerAccess.objects.filter(server=server).values_list("user_id", flat=True))
    groups: dict[int, list[str]] = {}
    for user_id, group_name in (
        GroupMembership.objects.filter(group__mcp_server_grants__server=server)
        .order_by("group__name")
        .values_list("membership__user_id", "group__name")
    ):
        groups.setdefault(user_id, []).append(group_name)
    return [
        ServerUser(
            user_id=membership.user_id,
            email=membership.user.email,
            role=membership.role,
            everyone=everyone,
            admin=membership.role == Membership.Role.ADMIN,
            direct=membership.user_id in direct,
            groups=tuple(groups.get(membership.user_id, ())),
        )
        for membership in rows
    ]


_CATALOG_FIELDS = (
    "id",
    "name",
    "title",
    "description",
    "input_schema",
    "output_schema",
    "annotations",
    "access_mode",
    "server__id",
    "server__server_label",
)


def _catalog_tools(organization: Organization, user_id: int, is_admin: bool) -> QuerySet[McpTool]:
    servers = servers_usable_by(organization=organization, user_id=user_id, is_admin=is_admin)
    return McpTool.objects.filter(server__in=servers.values("pk"), found_in_server=True).exclude(
        access_mode=AccessMode.BLOCKED
    )


def mcp_tool_catalog(*, organization: Organization, user_id: int, is_admin: bool) -> list[McpTool]:
    """The tools a member's AI models may use: on servers they may use, still listed, nothing BLOCKED. One query."""
    return list(_catalog_tools(organization, user_id, is_admin).select_related("server").only(*_CATALOG_FIELDS))


def catalog_tool(tool: McpTool) -> tool_catalog.CatalogTool:
    """A catalog tool as `tool_catalog` names and renders it (`tool` read by `mcp_tool_catalog`)."""
    return tool_catalog.CatalogTool(
        server_id=str(tool.server.pk),
        server_label=tool.server.server_label,
        tool_id=str(tool.pk),
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema,
        needs_approval=tool.access_mode == AccessMode.NEEDS_APPROVAL,
        annotations=tool.annotations,
        output_schema=tool.output_schema,
    )


def mcp_tool_catalog_page(
    *, organization: Organization, user_id: int, is_admin: bool, after: str | None, limit: int
) -> tuple[list[tool_catalog.ModelTool], str | None]:
    """A page of the catalog in model-name order, after the model name `after` (the MCP endpoint's tools/list),
    and the last name of the page when more follow. The names are made over the whole catalog from its light
    columns (one query); the definitions are read for the page's tools only (a second)."""
    rows = _catalog_tools(organization, user_id, is_admin).values_list(
        "id", "name", "access_mode", "server_id", "server__server_label"
    )
    light = [
        tool_catalog.CatalogTool(
            server_id=str(server_id),
            server_label=label,
            tool_id=str(pk),
            name=name,
            title=None,
            description=None,
            input_schema={},
            needs_approval=mode == AccessMode.NEEDS_APPROVAL,
        )
        for pk, name, mode, server_id, label in rows
    ]
    named = tool_catalog.model_tool_names(light)
    start = bisect.bisect_right([model_tool.model_name for model_tool in named], after) if after is not None else 0
    page = named[start : start + limit]
    full = {
        str(tool.pk): tool
        for tool in McpTool.objects.filter(pk__in=[model_tool.tool.tool_id for model_tool in page])
        .select_related("server")
        .only(*_CATALOG_FIELDS)
    }
    tools = [
        tool_catalog.ModelTool(model_name=model_tool.model_name, tool=catalog_tool(full[model_tool.tool.tool_id]))
        for model_tool in page
        if model_tool.tool.tool_id in full  # gone between the two queries: left out
    ]
    more = start + limit < len(named)
    return tools, (page[-1].model_name if more and page else None)


def mcp_server_tools_page(*, server: McpServer, after: str | None, limit: int) -> tuple[list[McpTool], str | None]:
    """A page of one server's usable tools (listed, not BLOCKED) by name, after the name `after` (the per-server
    MCP endpoint's tools/list), and the last name of the page when more follow. One query."""
    tools = McpTool.objects.filter(server=server, found_in_server=True).exclude(access_mode=AccessMode.BLOCKED)
    if after is not None:
        tools = tools.filter(name__gt=after)
    rows = list(
        tools.only("id", "name", "title", "description", "input_schema", "output_schema", "annotations").order_by(
            "name"
        )[: limit + 1]
    )
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].name
    return rows, None


def tool_call_target(
    *,
    organization: Organization,
    user_id: int,
    is_admin: bool,
    exported_name: str | None = None,
    server_id: str | None = None,
    tool_name: str | None = None,
) -> McpTool:
    """The tool a call names, on a server the caller may use, with its server: by the name the catalog exports
    (`serverLabel__tool`), or by server id and the tool's own name. Three queries whatever the number of tools.

    A BLOCKED tool and one the server no longer lists are returned (the caller says why they cannot run); an
    unknown tool, and one on a server the caller may not use, are a NotFound alike.
    """
    # With the server's OAuth row (or its absence), which the call reads next.
    servers = servers_usable_by(organization=organization, user_id=user_id, is_admin=is_admin).select_related("oauth")
    if exported_name is not None:
        label, separator, _ = exported_name.partition(tool_catalog.SEPARATOR)
        server = servers.filter(server_label=label).first() if separator else None
        tool_id = _tool_id_by_exported_name(server, exported_name) if server is not None else None
        missing = f"No tool named '{exported_name}' is available (see GET /mcp-tools)."
    else:
        server = None
        with contextlib.suppress(ValueError):  # not a UUID: no such server
            server = servers.filter(pk=uuid.UUID(str(server_id))).first()
        tool_id = None
        if server is not None:
            tool_id = McpTool.objects.filter(server=server, name=tool_name).values_list("pk", flat=True).first()
        missing = f"The MCP server has no tool named '{tool_name}', or you may not use it."
    if server is None or tool_id is None:
        raise NotFound(missing)
    # What governing and running the call reads (the input schema only when its validator is not cached).
    tool = McpTool.objects.only(*_CALL_TARGET_FIELDS).get(pk=tool_id)
    tool.server = server
    return tool


_CALL_TARGET_FIELDS = ("id", "server_id", "name", "access_mode", "found_in_server", "definition_hash", "input_schema")


def _tool_id_by_exported_name(server: McpServer, exported_name: str) -> uuid.UUID | None:
    rows = list(McpTool.objects.filter(server=server).values_list("pk", "name", "access_mode", "found_in_server"))
    # The catalog's own names for this server's tools (names of different servers never collide, so this server's
    # tools alone decide them; see tool_catalog's naming algorithm).
    offered = [
        tool_catalog.CatalogTool(
            server_id=str(server.pk),
            server_label=server.server_label,
            tool_id=str(pk),
            name=name,
            title=None,
            description=None,
            input_schema={},
            needs_approval=mode == AccessMode.NEEDS_APPROVAL,
        )
        for pk, name, mode, found in rows
        if found and mode != AccessMode.BLOCKED
    ]
    for named in tool_catalog.model_tool_names(offered):
        if named.model_name == exported_name:
            return uuid.UUID(named.tool.tool_id)
    # A tool the catalog left out (BLOCKED, or no longer listed) answers to the name it had.
    for pk, name, mode, found in rows:
        if (mode == AccessMode.BLOCKED or not found) and tool_catalog.base_name(
            server.server_label, name
        ) == exported_name:
            return uuid.UUID(str(pk))
    return None


def tool_calls_page(
    *,
    organization: Organization,
    user_id: int,
    is_admin: bool,
    status: str | None,
    server_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[ToolCall], str | None]:
    """The audit trail, newest first: every call for an admin, a member's own otherwise. Two queries."""
    calls = ToolCall.objects.filter(organization=organization).select_related("requested_by", "api_key", "decided_by")
    calls = calls.defer("arguments", "result")
    if not is_admin:
        calls = calls.filter(requested_by_id=user_id)
    if status:
        if status not in ToolCallStatus.values:
            raise ValidationError("status", f"must be one of {', '.join(ToolCallStatus.values)}.")
        calls = calls.filter(status=status)
    if server_id:
        try:
            calls = calls.filter(server_id=uuid.UUID(server_id))
        except ValueError:
            raise ValidationError("serverId", "is not a valid MCP server id.") from None
    if cursor:
        try:
            calls = calls.filter(pk__lt=uuid.UUID(cursor))
        except ValueError:
            raise ValidationError("cursor", "is not a valid cursor (use pagination.nextCursor).") from None
    rows = list(calls.order_by("-id")[: limit + 1])
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1].pk)
    return rows, None


def tool_call_get(*, organization: Organization, user_id: int, is_admin: bool, call_id: str) -> ToolCall:
    """One call of the organization: any for an admin, a member's own otherwise (else NotFound, alike)."""
    try:
        call_uuid = uuid.UUID(call_id)
    except ValueError:
        raise NotFound("Tool call not found.") from None
    calls = ToolCall.objects.filter(organization=organization, pk=call_uuid)
    if not is_admin:
        calls = calls.filter(requested_by_id=user_id)
    call = calls.select_related("requested_by", "api_key", "decided_by").first()
    if call is None:
        raise NotFound("Tool call not found.")
    return call
