from django.urls import path

from mcp_servers.endpoint import views

urlpatterns = [
    path("organizations/<str:org_id>/mcp", views.McpEndpointApi.as_view(), name="mcp-endpoint"),
    path(
        "organizations/<str:org_id>/mcp-servers/<str:server_id>/mcp",
        views.McpServerEndpointApi.as_view(),
        name="mcp-server-endpoint",
    ),
]
