"""Every tool of the servers one administers, to review access modes across servers."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils.safestring import SafeString

from mcp_servers.admin.display import TitledAdmin, access_badge
from mcp_servers.admin.forms import ACCESS_MODE_CHOICES, McpToolAdminForm
from mcp_servers.admin.inlines import ToolInline
from mcp_servers.models import McpTool
from mcp_servers.services import mcp_tool_set_access_mode
from organizations.admin import OrganizationScopedAdmin
from organizations.models import Organization


class AccessModeFilter(admin.SimpleListFilter):
    title = "access mode"
    parameter_name = "access_mode__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(ACCESS_MODE_CHOICES)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(access_mode=value) if value else queryset


@admin.register(McpTool)
class McpToolAdmin(TitledAdmin, OrganizationScopedAdmin):
    """Every tool of the servers one administers, to review access modes across servers."""

    list_title, add_title, change_title = "MCP tools", "MCP tool", "MCP tool"

    organization_path = "server__organization"
    form = McpToolAdminForm
    list_display = ("name", "server", "organization", "access", "read_only", "found", "definition")
    list_filter = (
        ("server__organization", admin.RelatedOnlyFieldListFilter),
        ("server", admin.RelatedOnlyFieldListFilter),
        AccessModeFilter,
        "found_in_server",
        "read_only_hint",
    )
    search_fields = ("name", "description", "server__display_name", "server__server_label")
    list_select_related = ("server", "server__organization")
    fields = (
        "name",
        "server",
        "access_mode",
        "definition",
        "found",
        "read_only",
        "title",
        "description",
        "input_schema",
        "output_schema",
        "annotations",
        "last_seen_at",
    )
    readonly_fields = tuple(name for name in fields if name != "access_mode")  # the only decision made here
    change_list_template = "admin/mcp_servers/mcptool/change_list.html"
    change_form_template = "admin/mcp_servers/mcptool/change_form.html"

    def organization_id_of(self, obj: Any) -> uuid.UUID | None:
        value: uuid.UUID | None = obj.server.organization_id
        return value

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> McpTool:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such tool.")
        return obj

    def save_model(self, request: HttpRequest, obj: McpTool, form: Any, change: bool) -> None:
        mcp_tool_set_access_mode(tool=obj, access_mode=form.cleaned_data["access_mode"])

    @admin.display(description="Organization", ordering="server__organization__name")
    def organization(self, tool: McpTool) -> Organization:
        return tool.server.organization

    @admin.display(description="Access mode", ordering="access_mode")
    def access(self, tool: McpTool) -> SafeString:
        return access_badge(tool)

    read_only = ToolInline.read_only
    found = ToolInline.found
    definition = ToolInline.definition
