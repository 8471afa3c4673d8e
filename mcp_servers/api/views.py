from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mcp_servers.api.serializers import McpServerCreateInputSerializer, mcp_server_output, validated_input
from mcp_servers.oauth_services import mcp_server_reauthorize_request
from mcp_servers.selectors import mcp_server_get, mcp_server_wait_for_new_auth_url, mcp_server_wait_for_sync
from mcp_servers.services import mcp_server_create
from mcp_servers.validation import HeaderInput
from organizations.authentication import authenticated_user
from organizations.selectors import organization_get_for_admin


class McpServerCollectionApi(APIView):
    def post(self, request: Request, org_id: str) -> Response:
        user = authenticated_user(request)
        organization = organization_get_for_admin(user=user, organization_id=org_id)
        data = validated_input(McpServerCreateInputSerializer(data=request.data))
        server = mcp_server_create(
            organization=organization,
            created_by=user,
            display_name=data["displayName"],
            server_url=data["serverUrl"],
            headers=[HeaderInput(key=h["key"], value=h["value"]) for h in data["headers"]],
            everyone_in_organization_can_access=data["everyoneInOrganizationCanAccess"],
        )
        mcp_server_wait_for_sync(server_id=server.pk, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)}, status=201)


class McpServerDetailApi(APIView):
    def get(self, request: Request, org_id: str, server_id: str) -> Response:
        organization = organization_get_for_admin(user=authenticated_user(request), organization_id=org_id)
        server = mcp_server_get(organization=organization, server_id=server_id)
        return Response({"data": mcp_server_output(server)})


class McpServerReauthorizeApi(APIView):
    """A fresh authorization URL for a server that uses OAuth (its tokens keep working until replaced)."""

    def post(self, request: Request, org_id: str, server_id: str) -> Response:
        organization = organization_get_for_admin(user=authenticated_user(request), organization_id=org_id)
        server = mcp_server_get(organization=organization, server_id=server_id)
        previous = server.auth_url
        mcp_server_reauthorize_request(server=server)
        mcp_server_wait_for_new_auth_url(server_id=server.pk, previous=previous, timeout=settings.MCP_SYNC_WAIT_SECONDS)
        server = mcp_server_get(organization=organization, server_id=server.pk)
        return Response({"data": mcp_server_output(server)})
