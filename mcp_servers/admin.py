"""Admin registration. Until the org-admin UI lands, only superusers see MCP servers here, read-only."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.exceptions import ApplicationError
from mcp_servers.models import McpServer, McpTool
from mcp_servers.oauth_services import mcp_server_reauthorize_request


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
    actions = ["reauthorize"]

    @admin.action(description="Re-authorize (get a fresh OAuth authorization URL)")
    def reauthorize(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        queued = 0
        for server in queryset:
            try:
                mcp_server_reauthorize_request(server=server)
            except ApplicationError as exc:
                self.message_user(request, f"{server.display_name}: {exc.detail}", messages.WARNING)
            else:
                queued += 1
        if queued:
            self.message_user(request, f"Asked for a fresh authorization URL for {queued} server(s).", messages.SUCCESS)


@admin.register(McpTool)
class McpToolAdmin(_SuperuserReadOnlyAdmin):
    list_display = ("name", "server", "access_mode", "found_in_server", "read_only_hint")
