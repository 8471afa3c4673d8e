"""Pages outside the JSON API: the OAuth callback, and the client ID metadata document (their URLs are fixed by
`mcp_servers.services.oauth_authorization`: the callback is PUBLIC_BASE_URL + CALLBACK_PATH)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from mcp_servers.models import McpServer, SyncStatus
from mcp_servers.selectors import mcp_server_wait_for_sync
from mcp_servers.services import client_metadata_document, oauth_callback_accept
from mcp_servers.services.oauth_authorization import CALLBACK_PATH, CLIENT_METADATA_PATH


@never_cache
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where the authorization server sends the user back. The worker exchanges the code; this page waits for
    the result like a create does and says what happened."""
    params = request.GET
    result = oauth_callback_accept(
        state=params.get("state"), code=params.get("code"), error=params.get("error"), iss=params.get("iss")
    )
    if not result.accepted or result.server_id is None:
        context = {"ok": False, "title": "Authorization failed", "message": result.message}
        return render(request, "oauth/callback.html", context, status=400)
    mcp_server_wait_for_sync(server_id=result.server_id, timeout=settings.MCP_SYNC_WAIT_SECONDS)
    server = McpServer.objects.filter(pk=result.server_id).first()
    if server is None:
        context = {"ok": False, "title": "Authorization failed", "message": "The MCP server no longer exists."}
        return render(request, "oauth/callback.html", context, status=404)
    if server.last_sync_status == SyncStatus.SUCCESS:
        tools = server.tools.filter(found_in_server=True).count()
        title, message, ok = "Connected", f"{server.display_name} is connected with {tools} tools.", True
    elif server.last_sync_status == SyncStatus.PENDING:
        title, message, ok = "Authorized", f"{server.display_name} is authorized; its tools are being synced.", True
    else:
        title, ok = "Authorization did not complete", False
        message = server.sync_error_message or "The server could not be connected."
    return render(request, "oauth/callback.html", {"ok": ok, "title": title, "message": message, "server": server})


@require_GET
def client_metadata(request: HttpRequest) -> JsonResponse:
    """The client ID metadata document: authorization servers that support them fetch it to learn who we are."""
    response = JsonResponse(client_metadata_document())
    response["Cache-Control"] = "public, max-age=3600"
    return response


urlpatterns: list[URLPattern] = [
    path(CALLBACK_PATH.lstrip("/"), oauth_callback, name="oauth-callback"),
    path(CLIENT_METADATA_PATH.lstrip("/"), client_metadata, name="oauth-client-metadata"),
]
