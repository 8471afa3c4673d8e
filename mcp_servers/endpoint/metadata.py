"""The MCP endpoints' protected-resource metadata (RFC 9728), which a 401's `WWW-Authenticate` points to.

`/.well-known/oauth-protected-resource/api/public/organizations/{orgId}/mcp` (and `.../mcp-servers/{id}/mcp`)
describes the endpoint as a resource: its URL, and that it takes a bearer token in the `Authorization` header.
The token is an API key of the organization, made by an admin (the API, the admin or `manage.py create_api_key`),
not one an authorization server issues: the document names no `authorization_servers`, so an MCP client learns
that it cannot get a token by OAuth here and must be given the key (as every client's "headers" setting allows).
The document says the same for any well-formed path: it reveals nothing about which organizations exist.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_safe

WELL_KNOWN = ".well-known/oauth-protected-resource"


@require_safe
def protected_resource_metadata(request: HttpRequest, org_id: str, server_id: str | None = None) -> JsonResponse:
    resource = f"{settings.PUBLIC_BASE_URL}/api/public/organizations/{org_id}"
    resource += f"/mcp-servers/{server_id}/mcp" if server_id is not None else "/mcp"
    document = {
        "resource": resource,
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP connectors" if server_id is None else "MCP connectors (one server)",
        "resource_documentation": f"{settings.PUBLIC_BASE_URL}/api/public/openapi",
    }
    response = JsonResponse(document)
    response["Cache-Control"] = "public, max-age=3600"
    response["Access-Control-Allow-Origin"] = "*"  # browser-based MCP clients read it too (it holds nothing secret)
    return response


urlpatterns: list[URLPattern] = [
    path(
        f"{WELL_KNOWN}/api/public/organizations/<str:org_id>/mcp",
        protected_resource_metadata,
        name="mcp-endpoint-metadata",
    ),
    path(
        f"{WELL_KNOWN}/api/public/organizations/<str:org_id>/mcp-servers/<str:server_id>/mcp",
        protected_resource_metadata,
        name="mcp-server-endpoint-metadata",
    ),
]
