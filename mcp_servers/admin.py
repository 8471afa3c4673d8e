"""Admin registration. Until the org-admin UI lands, only superusers see MCP servers here, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from mcp_servers.models import McpServer, McpTool


class _SuperuserReadOnlyAdmin(admin.ModelAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(McpServer)
class McpServerAdmin(_SuperuserReadOnlyAdmin):
    list_display = ("display_name", "server_label", "organization", "setup_state", "last_sync_status", "created_at")
    exclude = ("sync_lease_token", "sync_lease_expires_at")


@admin.register(McpTool)
class McpToolAdmin(_SuperuserReadOnlyAdmin):
    list_display = ("name", "server", "access_mode", "found_in_server", "read_only_hint")
