from django.urls import path

from mcp_servers.api.views import McpServerCollectionApi, McpServerDetailApi, McpServerReauthorizeApi

urlpatterns = [
    path("organizations/<str:org_id>/mcp-servers", McpServerCollectionApi.as_view(), name="mcp-server-collection"),
    path(
        "organizations/<str:org_id>/mcp-servers/<str:server_id>",
        McpServerDetailApi.as_view(),
        name="mcp-server-detail",
    ),
    path(
        "organizations/<str:org_id>/mcp-servers/<str:server_id>/reauthorize",
        McpServerReauthorizeApi.as_view(),
        name="mcp-server-reauthorize",
    ),
]
