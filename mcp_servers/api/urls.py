from django.urls import path

from mcp_servers.api import views

_SERVERS = "organizations/<str:org_id>/mcp-servers"
_SERVER = f"{_SERVERS}/<str:server_id>"
_CALLS = "organizations/<str:org_id>/tool-calls"
_CALL = f"{_CALLS}/<str:call_id>"
_GROUPS = "organizations/<str:org_id>/groups"
_GROUP = f"{_GROUPS}/<str:group_id>"

urlpatterns = [
    path(_SERVERS, views.McpServerCollectionApi.as_view(), name="mcp-server-collection"),
    path(_SERVER, views.McpServerDetailApi.as_view(), name="mcp-server-detail"),
    path(f"{_SERVER}/sync", views.McpServerSyncApi.as_view(), name="mcp-server-sync"),
    path(f"{_SERVER}/reauthorize", views.McpServerReauthorizeApi.as_view(), name="mcp-server-reauthorize"),
    path(f"{_SERVER}/tools", views.McpServerToolsApi.as_view(), name="mcp-server-tools"),
    path(f"{_SERVER}/tools/<str:tool_id>", views.McpToolDetailApi.as_view(), name="mcp-tool-detail"),
    path(f"{_SERVER}/access", views.McpServerAccessApi.as_view(), name="mcp-server-access"),
    path(f"{_SERVER}/access/<str:user_id>", views.McpServerAccessDetailApi.as_view(), name="mcp-server-access-detail"),
    path(
        f"{_SERVER}/access/groups/<str:group_id>",
        views.McpServerGroupAccessDetailApi.as_view(),
        name="mcp-server-group-access-detail",
    ),
    path("organizations/<str:org_id>/mcp-tools", views.McpToolCatalogApi.as_view(), name="mcp-tool-catalog"),
    path(_CALLS, views.ToolCallCollectionApi.as_view(), name="tool-call-collection"),
    path(_CALL, views.ToolCallDetailApi.as_view(), name="tool-call-detail"),
    path(f"{_CALL}/approve", views.ToolCallApproveApi.as_view(), name="tool-call-approve"),
    path(f"{_CALL}/deny", views.ToolCallDenyApi.as_view(), name="tool-call-deny"),
    path(_GROUPS, views.GroupCollectionApi.as_view(), name="group-collection"),
    path(_GROUP, views.GroupDetailApi.as_view(), name="group-detail"),
    path(f"{_GROUP}/members", views.GroupMemberCollectionApi.as_view(), name="group-member-collection"),
    path(f"{_GROUP}/members/<str:user_id>", views.GroupMemberDetailApi.as_view(), name="group-member-detail"),
]
