from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import (
    AuthorizationRequired,
    Conflict,
    Forbidden,
    NotFound,
    UpstreamFailed,
    UpstreamTimeout,
    ValidationError,
)
from mcp_servers import tool_catalog
from mcp_servers.api import schema as doc
from mcp_servers.api.serializers import (
    AccessGrantInputSerializer,
    GroupCreateInputSerializer,
    GroupMemberInputSerializer,
    GroupUpdateInputSerializer,
    McpServerCreateInputSerializer,
    McpServerUpdateInputSerializer,
    ToolCallInputSerializer,
    ToolUpdateInputSerializer,
    access_output,
    group_member_output,
    group_output,
    list_params,
    mcp_server_output,
    tool_call_output,
    tool_detail_output,
    validated_input,
)
from mcp_servers.models import McpServer, ToolCall, ToolCallError, ToolCallStatus
from mcp_servers.selectors import (
    catalog_tool,
    mcp_server_access_list,
    mcp_server_find,
    mcp_server_get,
    mcp_server_group_access_list,
    mcp_server_tools,
    mcp_server_wait_for_new_auth_url,
    mcp_server_wait_for_sync,
    mcp_servers_page,
    mcp_tool_catalog,
    mcp_tool_get,
    tool_call_get,
    tool_call_target,
    tool_calls_page,
)
from mcp_servers.services import (
    mcp_server_access_grant,
    mcp_server_access_revoke,
    mcp_server_create,
    mcp_server_delete,
    mcp_server_group_access_revoke,
    mcp_server_reauthorize_request,
    mcp_server_sync_request,
    mcp_server_update,
    mcp_tool_set_access_mode,
)
from mcp_servers.services.tool_calls import (
    Caller,
    tool_call_decide,
    tool_call_expire_if_due,
    tool_call_request,
    tool_call_run,
)
from mcp_servers.validation import ClientCredentialsInput, HeaderInput
from organizations.api import OrganizationApi
from organizations.models import ApiKey
from organizations.selectors import group_get, group_members_page, groups_page, member_user_id_by_email
from organizations.services import group_create, group_delete, group_member_add, group_member_remove, group_update

_MAX_ID = 2**63 - 1  # the largest primary key any supported database stores


def _headers(items: list[dict[str, str]] | None) -> list[HeaderInput] | None:
    return None if items is None else [HeaderInput(key=h["key"], value=h["value"]) for h in items]


def _client_credentials(item: dict[str, str] | None) -> ClientCredentialsInput | None:
    if item is None:
        return None
    return ClientCredentialsInput(
        client_id=item["clientId"],
        client_secret=item.get("clientSecret"),
        private_key=item.get("privateKey"),
        signing_algorithm=item.get("signingAlgorithm"),
    )


class McpServerCollectionApi(OrganizationApi):
    @doc.LIST_SERVERS
    def get(self, request: Request, org_id: str) -> Response:
        organization = self.organization
        limit, cursor = list_params(request.query_params)
        servers, next_cursor = mcp_servers_page(organization=organization, limit=limit, cursor=cursor)
        return Response(
            {
                "data": [mcp_server_output(server) for server in servers],
                "pagination": {"nextCursor": next_cursor, "hasMore": next_cursor is not None},
            }
        )

    @doc.CREATE_SERVER
    def post(self, request: Request, org_id: str) -> Response:
        organization = self.organization
        data = validated_input(McpServerCreateInputSerializer(data=request.data))
        server = mcp_server_create(
            organization=organization,
            created_by=self.user,
            display_name=data["displayName"],
            server_url=data["serverUrl"],
            headers=_headers(data["headers"]) or [],
            everyone_in_organization_can_access=data["everyoneInOrganizationCanAccess"],
            client_credentials=_client_credentials(data.get("clientCredentials")),
        )
        if settings.MCP_SYNC_WAIT_SECONDS <= 0 and not settings.CELERY_TASK_ALWAYS_EAGER:
            # Nothing is awaited and the sync runs in a worker: the row as inserted is the answer, and a server
            # whose first sync has not run has no tools. Reading it back would cost two queries for nothing.
            return Response({"data": mcp_server_output(server, tools=())}, status=201)
        mcp_server_wait_for_sync(server_id=server.pk, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)}, status=201)


class McpServerDetailApi(OrganizationApi):
    @doc.GET_SERVER
    def get(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_get(organization=self.organization, server_id=server_id)
        return Response({"data": mcp_server_output(server)})

    @doc.UPDATE_SERVER
    def patch(self, request: Request, org_id: str, server_id: str) -> Response:
        organization = self.organization
        server = mcp_server_find(organization=organization, server_id=server_id)
        data = validated_input(McpServerUpdateInputSerializer(data=request.data))
        result = mcp_server_update(
            server=server,
            display_name=data.get("displayName"),
            server_url=data.get("serverUrl"),
            headers=_headers(data.get("headers")),
            set_headers=_headers(data.get("setHeaders")) or [],
            remove_headers=data.get("removeHeaders") or [],
            everyone_in_organization_can_access=data.get("everyoneInOrganizationCanAccess"),
            client_credentials=_client_credentials(data.get("clientCredentials")),
            remove_client_credentials="clientCredentials" in data and data["clientCredentials"] is None,
        )
        if result.resync_queued:
            mcp_server_wait_for_sync(server_id=server.pk, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)})

    @doc.DELETE_SERVER
    def delete(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_find(organization=self.organization, server_id=server_id)
        mcp_server_delete(server=server)
        return Response(status=204)


class McpServerSyncApi(OrganizationApi):
    """Re-sync now, with the same wait as a create."""

    @doc.SYNC_SERVER
    def post(self, request: Request, org_id: str, server_id: str) -> Response:
        organization = self.organization
        server = mcp_server_find(organization=organization, server_id=server_id)
        mcp_server_sync_request(server=server)
        mcp_server_wait_for_sync(server_id=server.pk, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)})


class McpServerReauthorizeApi(OrganizationApi):
    """A fresh authorization URL for a server that uses OAuth (its tokens keep working until replaced)."""

    @doc.REAUTHORIZE_SERVER
    def post(self, request: Request, org_id: str, server_id: str) -> Response:
        organization = self.organization
        server = mcp_server_find(organization=organization, server_id=server_id)
        previous = server.auth_url
        mcp_server_reauthorize_request(server=server)
        mcp_server_wait_for_new_auth_url(server_id=server.pk, previous=previous, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)})


class McpServerToolsApi(OrganizationApi):
    @doc.LIST_SERVER_TOOLS
    def get(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_find(organization=self.organization, server_id=server_id)
        return Response({"data": [tool_detail_output(tool) for tool in mcp_server_tools(server=server)]})


class McpToolDetailApi(OrganizationApi):
    @doc.UPDATE_TOOL
    def patch(self, request: Request, org_id: str, server_id: str, tool_id: str) -> Response:
        server = mcp_server_find(organization=self.organization, server_id=server_id)
        tool = mcp_tool_get(server=server, tool_id=tool_id)
        data = validated_input(ToolUpdateInputSerializer(data=request.data))
        tool = mcp_tool_set_access_mode(tool=tool, access_mode=data["accessMode"])
        return Response({"data": tool_detail_output(tool)})


def _access(server: McpServer) -> dict[str, Any]:
    return access_output(server, mcp_server_access_list(server=server), mcp_server_group_access_list(server=server))


class McpServerAccessApi(OrganizationApi):
    """Who may use a server that not everyone in the organization can access: members granted it directly, and
    groups, whose every member may (admins always can)."""

    @doc.GET_ACCESS
    def get(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_find(organization=self.organization, server_id=server_id)
        return Response({"data": _access(server)})

    @doc.GRANT_ACCESS
    def post(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_find(organization=self.organization, server_id=server_id)
        data = validated_input(AccessGrantInputSerializer(data=request.data))
        user_id = None
        if "email" in data:
            user_id = member_user_id_by_email(organization=self.organization, email=data["email"])
            if user_id is None:
                raise ValidationError("email", "is not a member of this organization.")
        mcp_server_access_grant(server=server, user_id=user_id, group_ids=data.get("groupIds") or ())
        return Response({"data": _access(server)}, status=201)


class McpServerAccessDetailApi(OrganizationApi):
    @doc.REVOKE_ACCESS
    def delete(self, request: Request, org_id: str, server_id: str, user_id: str) -> Response:
        server = mcp_server_find(organization=self.organization, server_id=server_id)
        if not (user_id.isascii() and user_id.isdigit()):  # "²".isdigit(), but int("²") fails
            raise ValidationError("userId", "is not a valid user id.")
        if len(user_id) > 20 or int(user_id) > _MAX_ID:  # no user has it, and the database cannot even compare it
            raise NotFound("No such access grant.")
        mcp_server_access_revoke(server=server, user_id=int(user_id))
        return Response(status=204)


class McpServerGroupAccessDetailApi(OrganizationApi):
    @doc.REVOKE_GROUP_ACCESS
    def delete(self, request: Request, org_id: str, server_id: str, group_id: str) -> Response:
        server = mcp_server_find(organization=self.organization, server_id=server_id)
        mcp_server_group_access_revoke(server=server, group_id=group_id)
        return Response(status=204)


class McpToolCatalogApi(OrganizationApi):
    """The tools this caller's AI models may use, named and shaped as a model sees them (any member's key)."""

    member_access = True

    @doc.TOOL_CATALOG
    def get(self, request: Request, org_id: str) -> Response:
        fmt = request.query_params.get("format", "default")
        if fmt not in tool_catalog.FORMATS:
            raise ValidationError("format", f"must be one of {', '.join(tool_catalog.FORMATS)}.")
        fmt = cast(tool_catalog.Format, fmt)
        tools = [
            catalog_tool(tool)
            for tool in mcp_tool_catalog(organization=self.organization, user_id=self.user.pk, is_admin=self.is_admin)
        ]
        return Response({"data": tool_catalog.render(tool_catalog.model_tool_names(tools), fmt)})


# --- Tool calls -----------------------------------------------------------------------------------------------------


def _caller(view: OrganizationApi, request: Request) -> Caller:
    api_key = request.auth if isinstance(request.auth, ApiKey) else None
    return Caller(organization=view.organization, user=view.user, api_key=api_key, is_admin=view.is_admin)


def _call_answer(call: ToolCall, org_id: str) -> Response:
    """A call's outcome as HTTP: its result (200), or still to come (202: poll it), or the error that stopped it."""
    call_id = str(call.pk)
    if call.status == ToolCallStatus.COMPLETED:
        return Response({"data": tool_call_output(call)})
    if call.status in (ToolCallStatus.AWAITING_APPROVAL, ToolCallStatus.RUNNING):
        location = f"/api/public/organizations/{org_id}/tool-calls/{call_id}"
        return Response({"data": tool_call_output(call)}, status=202, headers={"Location": location})
    message = call.error_message or f"The call is {call.status}."
    if call.status == ToolCallStatus.AUTH_REQUIRED:
        raise AuthorizationRequired(message, callId=call_id, requiresAuth=True, authUrl=call.auth_url)
    if call.status == ToolCallStatus.REFUSED and call.error_code == ToolCallError.BLOCKED:
        raise Forbidden(message, callId=call_id, code=call.error_code)
    if call.status == ToolCallStatus.FAILED:
        error = UpstreamTimeout if call.error_code == ToolCallError.TIMEOUT else UpstreamFailed
        raise error(message, callId=call_id, code=call.error_code)
    raise Conflict(message, callId=call_id, status=call.status, code=call.error_code)


class ToolCallCollectionApi(OrganizationApi):
    """Call a tool through the service (any member's key, on the servers they may use), and the audit trail."""

    member_access = True

    @doc.CALL_TOOL
    def post(self, request: Request, org_id: str) -> Response:
        data = validated_input(ToolCallInputSerializer(data=request.data))
        tool = tool_call_target(
            organization=self.organization,
            user_id=self.user.pk,
            is_admin=self.is_admin,
            exported_name=data.get("tool"),
            server_id=data.get("serverId"),
            tool_name=data.get("toolName"),
        )
        call = tool_call_request(caller=_caller(self, request), tool=tool, arguments=data["arguments"])
        if call.status == ToolCallStatus.RUNNING:
            call = tool_call_run(call=call, wait=settings.MCP_CALL_WAIT_SECONDS)
        return _call_answer(call, org_id)

    @doc.LIST_TOOL_CALLS
    def get(self, request: Request, org_id: str) -> Response:
        limit, cursor = list_params(request.query_params)
        calls, next_cursor = tool_calls_page(
            organization=self.organization,
            user_id=self.user.pk,
            is_admin=self.is_admin,
            status=request.query_params.get("status") or None,
            server_id=request.query_params.get("serverId") or None,
            limit=limit,
            cursor=cursor,
        )
        return Response(
            {
                "data": [tool_call_output(tool_call_expire_if_due(call), detail=False) for call in calls],
                "pagination": {"nextCursor": next_cursor, "hasMore": next_cursor is not None},
            }
        )


class ToolCallDetailApi(OrganizationApi):
    member_access = True

    @doc.GET_TOOL_CALL
    def get(self, request: Request, org_id: str, call_id: str) -> Response:
        call = tool_call_get(
            organization=self.organization, user_id=self.user.pk, is_admin=self.is_admin, call_id=call_id
        )
        return Response({"data": tool_call_output(tool_call_expire_if_due(call))})


class ToolCallApproveApi(OrganizationApi):
    """Approve a call awaiting approval: it runs now, exactly as requested (the member it was made for, or an admin)."""

    member_access = True

    @doc.APPROVE_TOOL_CALL
    def post(self, request: Request, org_id: str, call_id: str) -> Response:
        call = tool_call_get(
            organization=self.organization, user_id=self.user.pk, is_admin=self.is_admin, call_id=call_id
        )
        call = tool_call_decide(call=call, user=self.user, is_admin=self.is_admin, approve=True)
        call = tool_call_run(call=call, wait=settings.MCP_CALL_WAIT_SECONDS)
        return _call_answer(call, org_id)


class ToolCallDenyApi(OrganizationApi):
    member_access = True

    @doc.DENY_TOOL_CALL
    def post(self, request: Request, org_id: str, call_id: str) -> Response:
        call = tool_call_get(
            organization=self.organization, user_id=self.user.pk, is_admin=self.is_admin, call_id=call_id
        )
        call = tool_call_decide(call=call, user=self.user, is_admin=self.is_admin, approve=False)
        return Response({"data": tool_call_output(call)})


# --- Groups ---------------------------------------------------------------------------------------------------------
# Admins only, reads included: a group's members and their emails are the organization's to see, not every member's.


class GroupCollectionApi(OrganizationApi):
    @doc.LIST_GROUPS
    def get(self, request: Request, org_id: str) -> Response:
        limit, cursor = list_params(request.query_params)
        groups, next_cursor = groups_page(organization=self.organization, limit=limit, cursor=cursor)
        return Response(
            {
                "data": [group_output(group) for group in groups],
                "pagination": {"nextCursor": next_cursor, "hasMore": next_cursor is not None},
            }
        )

    @doc.CREATE_GROUP
    def post(self, request: Request, org_id: str) -> Response:
        data = validated_input(GroupCreateInputSerializer(data=request.data))
        group = group_create(organization=self.organization, name=data["name"], description=data["description"])
        return Response({"data": group_output(group)}, status=201)


class GroupDetailApi(OrganizationApi):
    @doc.GET_GROUP
    def get(self, request: Request, org_id: str, group_id: str) -> Response:
        return Response({"data": group_output(group_get(organization=self.organization, group_id=group_id))})

    @doc.UPDATE_GROUP
    def patch(self, request: Request, org_id: str, group_id: str) -> Response:
        group = group_get(organization=self.organization, group_id=group_id)
        data = validated_input(GroupUpdateInputSerializer(data=request.data))
        group = group_update(group=group, name=data.get("name"), description=data.get("description"))
        return Response({"data": group_output(group)})

    @doc.DELETE_GROUP
    def delete(self, request: Request, org_id: str, group_id: str) -> Response:
        group_delete(group=group_get(organization=self.organization, group_id=group_id))
        return Response(status=204)


class GroupMemberCollectionApi(OrganizationApi):
    @doc.LIST_GROUP_MEMBERS
    def get(self, request: Request, org_id: str, group_id: str) -> Response:
        group = group_get(organization=self.organization, group_id=group_id)
        limit, cursor = list_params(request.query_params)
        members, next_cursor = group_members_page(group=group, limit=limit, cursor=cursor)
        return Response(
            {
                "data": [group_member_output(member) for member in members],
                "pagination": {"nextCursor": next_cursor, "hasMore": next_cursor is not None},
            }
        )

    @doc.ADD_GROUP_MEMBER
    def post(self, request: Request, org_id: str, group_id: str) -> Response:
        group = group_get(organization=self.organization, group_id=group_id)
        data = validated_input(GroupMemberInputSerializer(data=request.data))
        if "email" in data:
            user_id = member_user_id_by_email(organization=self.organization, email=data["email"])
            if user_id is None:
                raise ValidationError("email", "is not a member of this organization.")
        else:
            user_id = data["userId"]
            if user_id > _MAX_ID:  # no user has it, and the database cannot even compare it
                raise ValidationError("userId", "is not a member of this organization.")
        member = group_member_add(group=group, user_id=user_id)
        return Response({"data": group_member_output(member)}, status=201)


class GroupMemberDetailApi(OrganizationApi):
    @doc.REMOVE_GROUP_MEMBER
    def delete(self, request: Request, org_id: str, group_id: str, user_id: str) -> Response:
        group = group_get(organization=self.organization, group_id=group_id)
        if not (user_id.isascii() and user_id.isdigit()):  # "²".isdigit(), but int("²") fails
            raise ValidationError("userId", "is not a valid user id.")
        if len(user_id) > 20 or int(user_id) > _MAX_ID:
            raise NotFound("No such group member.")
        group_member_remove(group=group, user_id=int(user_id))
        return Response(status=204)
