from __future__ import annotations

from typing import cast

from django.conf import settings
from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import NotFound, ValidationError
from mcp_servers import tool_catalog
from mcp_servers.api import schema as doc
from mcp_servers.api.serializers import (
    AccessGrantInputSerializer,
    McpServerCreateInputSerializer,
    McpServerUpdateInputSerializer,
    ToolUpdateInputSerializer,
    access_output,
    list_params,
    mcp_server_output,
    tool_detail_output,
    validated_input,
)
from mcp_servers.models import AccessMode
from mcp_servers.oauth_services import mcp_server_reauthorize_request
from mcp_servers.selectors import (
    mcp_server_access_list,
    mcp_server_find,
    mcp_server_get,
    mcp_server_tools,
    mcp_server_wait_for_new_auth_url,
    mcp_server_wait_for_sync,
    mcp_servers_page,
    mcp_tool_catalog,
    mcp_tool_get,
)
from mcp_servers.services import (
    mcp_server_access_grant,
    mcp_server_access_revoke,
    mcp_server_create,
    mcp_server_delete,
    mcp_server_sync_request,
    mcp_server_update,
    mcp_tool_set_access_mode,
)
from mcp_servers.validation import HeaderInput
from organizations.authentication import authenticated_user
from organizations.models import Organization
from organizations.selectors import organization_get_for_admin, organization_get_for_member

_MAX_ID = 2**63 - 1  # the largest primary key any supported database stores


def _admin_org(request: Request, org_id: str) -> Organization:
    return organization_get_for_admin(user=authenticated_user(request), organization_id=org_id)


def _headers(items: list[dict[str, str]] | None) -> list[HeaderInput] | None:
    return None if items is None else [HeaderInput(key=h["key"], value=h["value"]) for h in items]


class McpServerCollectionApi(APIView):
    @extend_schema(
        operation_id="listMcpServers",
        summary="List MCP servers",
        description="The organization's MCP servers, newest first, `limit` at a time. Requires admin access.",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.LIMIT, doc.CURSOR],
        responses={
            200: OpenApiResponse(doc.McpServerListResponseSerializer, description="A page of MCP servers"),
            **doc.error_responses(400),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        organization = _admin_org(request, org_id)
        limit, cursor = list_params(request.query_params)
        servers, next_cursor = mcp_servers_page(organization=organization, limit=limit, cursor=cursor)
        return Response(
            {
                "data": [mcp_server_output(server) for server in servers],
                "pagination": {"nextCursor": next_cursor, "hasMore": next_cursor is not None},
            }
        )

    @extend_schema(
        operation_id="createMcpServer",
        summary="Create an MCP server",
        description=(
            "Creates a new MCP server for an organization. Requires admin access to the organization. The server "
            "URL is validated, static headers are encrypted, and tools are synced after creation."
        ),
        tags=[doc.TAG],
        parameters=[doc.ORG_ID],
        request=doc.McpServerCreateRequestSerializer,
        examples=[doc.CREATE_EXAMPLE],
        responses={
            201: OpenApiResponse(doc.McpServerResponseSerializer, description="MCP server created successfully"),
            **doc.error_responses(400),
        },
    )
    def post(self, request: Request, org_id: str) -> Response:
        user = authenticated_user(request)
        organization = organization_get_for_admin(user=user, organization_id=org_id)
        data = validated_input(McpServerCreateInputSerializer(data=request.data))
        server = mcp_server_create(
            organization=organization,
            created_by=user,
            display_name=data["displayName"],
            server_url=data["serverUrl"],
            headers=_headers(data["headers"]) or [],
            everyone_in_organization_can_access=data["everyoneInOrganizationCanAccess"],
        )
        if settings.MCP_SYNC_WAIT_SECONDS <= 0 and not settings.CELERY_TASK_ALWAYS_EAGER:
            # Nothing is awaited and the sync runs in a worker: the row as inserted is the answer, and a server
            # whose first sync has not run has no tools. Reading it back would cost two queries for nothing.
            return Response({"data": mcp_server_output(server, tools=())}, status=201)
        mcp_server_wait_for_sync(server_id=server.pk, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)}, status=201)


class McpServerDetailApi(APIView):
    @extend_schema(
        operation_id="getMcpServer",
        summary="Get an MCP server",
        description="The server as it stands; poll it while `lastSyncStatus` is `PENDING`.",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID],
        responses={
            200: OpenApiResponse(doc.McpServerResponseSerializer, description="The MCP server"),
            **doc.error_responses(not_found="Organization or MCP server not found, or no admin access"),
        },
    )
    def get(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_get(organization=_admin_org(request, org_id), server_id=server_id)
        return Response({"data": mcp_server_output(server)})

    @extend_schema(
        operation_id="updateMcpServer",
        summary="Update an MCP server",
        description=(
            "Changes what is sent; `serverLabel` never changes. Header values stay write-only: replace them all "
            "(`headers`) or set and remove some by key (`setHeaders`, `removeHeaders`). A new URL or new headers "
            "re-sync the tools, with the same wait as a create."
        ),
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID],
        request=doc.McpServerUpdateRequestSerializer,
        responses={
            200: OpenApiResponse(doc.McpServerResponseSerializer, description="The updated MCP server"),
            **doc.error_responses(400, not_found="Organization or MCP server not found, or no admin access"),
        },
    )
    def patch(self, request: Request, org_id: str, server_id: str) -> Response:
        organization = _admin_org(request, org_id)
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
        )
        if result.resync_queued:
            mcp_server_wait_for_sync(server_id=server.pk, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)})

    @extend_schema(
        operation_id="deleteMcpServer",
        summary="Delete an MCP server",
        description="Deletes the server with its tools, headers and credentials; its OAuth tokens are revoked.",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID],
        request=None,
        responses={
            204: OpenApiResponse(None, description="MCP server deleted"),
            **doc.error_responses(not_found="Organization or MCP server not found, or no admin access"),
        },
    )
    def delete(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_find(organization=_admin_org(request, org_id), server_id=server_id)
        mcp_server_delete(server=server)
        return Response(status=204)


class McpServerSyncApi(APIView):
    """Re-sync now, with the same wait as a create."""

    @extend_schema(
        operation_id="syncMcpServer",
        summary="Re-sync an MCP server's tools",
        description="Syncs the tools now and answers once the sync settled (or after the same wait as a create).",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID],
        request=None,
        responses={
            200: OpenApiResponse(doc.McpServerResponseSerializer, description="The MCP server after the sync"),
            **doc.error_responses(not_found="Organization or MCP server not found, or no admin access"),
        },
    )
    def post(self, request: Request, org_id: str, server_id: str) -> Response:
        organization = _admin_org(request, org_id)
        server = mcp_server_find(organization=organization, server_id=server_id)
        mcp_server_sync_request(server=server)
        mcp_server_wait_for_sync(server_id=server.pk, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)})


class McpServerReauthorizeApi(APIView):
    """A fresh authorization URL for a server that uses OAuth (its tokens keep working until replaced)."""

    @extend_schema(
        operation_id="reauthorizeMcpServer",
        summary="Re-authorize an MCP server",
        description=(
            "Hands out a fresh OAuth authorization URL (`authUrl`) for a server that uses OAuth; its current "
            "tokens keep working until new ones arrive. A server that never asked for OAuth is a 400."
        ),
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID],
        request=None,
        responses={
            200: OpenApiResponse(doc.McpServerResponseSerializer, description="The MCP server with its new authUrl"),
            **doc.error_responses(400, not_found="Organization or MCP server not found, or no admin access"),
        },
    )
    def post(self, request: Request, org_id: str, server_id: str) -> Response:
        organization = _admin_org(request, org_id)
        server = mcp_server_find(organization=organization, server_id=server_id)
        previous = server.auth_url
        mcp_server_reauthorize_request(server=server)
        mcp_server_wait_for_new_auth_url(server_id=server.pk, previous=previous, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)})


class McpServerToolsApi(APIView):
    @extend_schema(
        operation_id="listMcpServerTools",
        summary="List an MCP server's tools",
        description="Every tool the server listed, with what an admin needs to review it, by name.",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID],
        responses={
            200: OpenApiResponse(doc.McpToolListResponseSerializer, description="The server's tools"),
            **doc.error_responses(not_found="Organization or MCP server not found, or no admin access"),
        },
    )
    def get(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_find(organization=_admin_org(request, org_id), server_id=server_id)
        return Response({"data": [tool_detail_output(tool) for tool in mcp_server_tools(server=server)]})


class McpToolDetailApi(APIView):
    @extend_schema(
        operation_id="updateMcpTool",
        summary="Set a tool's access mode",
        description="An admin's decision on a tool; the tool's current definition counts as reviewed.",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID, doc.TOOL_ID],
        request=doc.McpToolUpdateRequestSerializer,
        responses={
            200: OpenApiResponse(doc.McpToolDetailResponseSerializer, description="The updated tool"),
            **doc.error_responses(400, not_found="Organization, MCP server or tool not found, or no admin access"),
        },
    )
    def patch(self, request: Request, org_id: str, server_id: str, tool_id: str) -> Response:
        server = mcp_server_find(organization=_admin_org(request, org_id), server_id=server_id)
        tool = mcp_tool_get(server=server, tool_id=tool_id)
        data = validated_input(ToolUpdateInputSerializer(data=request.data))
        tool = mcp_tool_set_access_mode(tool=tool, access_mode=data["accessMode"])
        return Response({"data": tool_detail_output(tool)})


class McpServerAccessApi(APIView):
    """Who may use a server that not everyone in the organization can access (admins always can)."""

    @extend_schema(
        operation_id="getMcpServerAccess",
        summary="List who may use an MCP server",
        description="Members granted access to a server that not everyone in the organization can use.",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID],
        responses={
            200: OpenApiResponse(doc.McpServerAccessResponseSerializer, description="The server's access list"),
            **doc.error_responses(not_found="Organization or MCP server not found, or no admin access"),
        },
    )
    def get(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_find(organization=_admin_org(request, org_id), server_id=server_id)
        return Response({"data": access_output(server, mcp_server_access_list(server=server))})

    @extend_schema(
        operation_id="grantMcpServerAccess",
        summary="Grant a member access to an MCP server",
        description="Grants a member of the organization, by email, access to the server (idempotent).",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID],
        request=doc.McpServerAccessGrantRequestSerializer,
        responses={
            201: OpenApiResponse(doc.McpServerAccessResponseSerializer, description="The server's access list"),
            **doc.error_responses(400, not_found="Organization or MCP server not found, or no admin access"),
        },
    )
    def post(self, request: Request, org_id: str, server_id: str) -> Response:
        server = mcp_server_find(organization=_admin_org(request, org_id), server_id=server_id)
        data = validated_input(AccessGrantInputSerializer(data=request.data))
        user = get_user_model().objects.filter(email__iexact=data["email"].strip()).first()
        if user is None:
            raise ValidationError("email", "is not a member of this organization.")
        mcp_server_access_grant(server=server, user_id=user.pk)
        return Response({"data": access_output(server, mcp_server_access_list(server=server))}, status=201)


class McpServerAccessDetailApi(APIView):
    @extend_schema(
        operation_id="revokeMcpServerAccess",
        summary="Revoke a member's access to an MCP server",
        description="Removes one member's grant; a `userId` that is not a whole number is a 400.",
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.SERVER_ID, doc.USER_ID],
        request=None,
        responses={
            204: OpenApiResponse(None, description="Access revoked"),
            **doc.error_responses(
                400, not_found="Organization, MCP server or access grant not found, or no admin access"
            ),
        },
    )
    def delete(self, request: Request, org_id: str, server_id: str, user_id: str) -> Response:
        server = mcp_server_find(organization=_admin_org(request, org_id), server_id=server_id)
        if not (user_id.isascii() and user_id.isdigit()):  # "²".isdigit(), but int("²") fails
            raise ValidationError("userId", "is not a valid user id.")
        if int(user_id) > _MAX_ID:  # no user has it, and the database cannot even compare it
            raise NotFound("No such access grant.")
        mcp_server_access_revoke(server=server, user_id=int(user_id))
        return Response(status=204)


class McpToolCatalogApi(APIView):
    """The tools this caller's AI models may use, named and shaped as a model sees them (any member's key)."""

    @extend_schema(
        operation_id="listMcpToolCatalog",
        summary="The tools an AI model may use",
        description=(
            "The tools this caller's AI models may use (connected servers the caller may access, tools the server "
            "still lists, nothing BLOCKED), with unique model-facing names, in the shape `format` asks for. Any "
            "member's key."
        ),
        tags=[doc.TAG],
        parameters=[doc.ORG_ID, doc.FORMAT],
        responses={
            200: OpenApiResponse(doc.McpToolCatalogResponseSerializer, description="The tool catalog"),
            **doc.error_responses(400, not_found="Organization not found, or not a member"),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        user = authenticated_user(request)
        organization, is_admin = organization_get_for_member(user=user, organization_id=org_id)
        fmt = request.query_params.get("format", "default")
        if fmt not in tool_catalog.FORMATS:
            raise ValidationError("format", f"must be one of {', '.join(tool_catalog.FORMATS)}.")
        fmt = cast(tool_catalog.Format, fmt)
        tools = [
            tool_catalog.CatalogTool(
                server_id=str(tool.server.pk),
                server_label=tool.server.server_label,
                tool_id=str(tool.pk),
                name=tool.name,
                title=tool.title,
                description=tool.description,
                input_schema=tool.input_schema,
                needs_approval=tool.access_mode == AccessMode.NEEDS_APPROVAL,
                annotations=tool.annotations,
            )
            for tool in mcp_tool_catalog(organization=organization, user_id=user.pk, is_admin=is_admin)
        ]
        return Response({"data": tool_catalog.render(tool_catalog.model_tool_names(tools), fmt)})
