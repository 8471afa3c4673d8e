"""The rows on a server's change page: its static headers (values write-only), its tools (a page at a time) and the
groups granted it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelChoiceField
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from mcp_servers.admin.display import definition_badge, found_badge, read_only_badge
from mcp_servers.admin.forms import HeaderFormSet, HeaderRowForm, ToolFormSet, ToolRowForm, pending_error
from mcp_servers.admin.tool_pages import posted_tool_ids, tool_page
from mcp_servers.models import McpServer, McpServerGroupAccess, McpServerHeader, McpTool
from mcp_servers.validation import MAX_HEADERS
from organizations.admin import admin_organization_ids, administers, administers_any
from organizations.models import Group


class ServerPartInline(admin.TabularInline):
    """Rows of a server: allowed when the server's organization is one the user administers."""

    def _allowed(self, request: HttpRequest, obj: McpServer | None) -> bool:
        return administers_any(request) if obj is None else administers(request, obj.organization_id)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        ids = admin_organization_ids(request)
        return queryset if ids is None else queryset.filter(server__organization_id__in=ids)


class HeaderInline(ServerPartInline):
    model = McpServerHeader
    form = HeaderRowForm
    formset = HeaderFormSet
    fields = ("key", "new_value")
    template = "admin/mcp_servers/mcpserver/headers_inline.html"
    verbose_name = "header"
    verbose_name_plural = "Static headers"
    max_num = MAX_HEADERS

    def get_extra(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> int:
        return 1 if obj is None else 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The stored value is never read here: it cannot end up in a page.
        return super().get_queryset(request).defer("value").order_by("position")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> type[BaseInlineFormSet]:
        formset = super().get_formset(request, obj, **kwargs)
        return type(formset.__name__, (formset,), {"service_error": pending_error(request), "request": request})


class ToolInline(ServerPartInline):
    model = McpTool
    form = ToolRowForm
    formset = ToolFormSet
    fields = ("name", "description_short", "read_only", "found", "definition", "access_mode", "mark_reviewed")
    readonly_fields = ("name", "description_short", "read_only", "found", "definition")
    template = "admin/mcp_servers/mcpserver/tools_inline.html"
    verbose_name = "tool"
    verbose_name_plural = "Tools"
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # tools come from the server's listing

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .only(
                "id",
                "server_id",
                "name",
                "description",
                "read_only_hint",
                "found_in_server",
                "access_mode",
                "definition_hash",
                "reviewed_definition_hash",
            )
            .order_by("-found_in_server", "name", "pk")
        )

    @staticmethod
    def rows_shown(tools: QuerySet[Any], request: HttpRequest, server: McpServer) -> QuerySet[Any]:
        """One page of the server's tools (a server may list thousands); on a save, the rows that page had."""
        if request.method == "POST":
            return tools.filter(pk__in=posted_tool_ids(request))
        return tools.filter(pk__in=tool_page(request, server.pk).tool_ids)

    @admin.display(description="Description")
    def description_short(self, tool: McpTool) -> SafeString | str:
        if not tool.description:
            return "—"
        return format_html('<span title="{}">{}</span>', tool.description, Truncator(tool.description).chars(140))

    @admin.display(description="Read-only hint")
    def read_only(self, tool: McpTool) -> SafeString:
        return read_only_badge(tool)

    @admin.display(description="In server")
    def found(self, tool: McpTool) -> SafeString:
        return found_badge(tool)

    @admin.display(description="Definition")
    def definition(self, tool: McpTool) -> SafeString:
        return definition_badge(tool)


class GroupAccessInline(ServerPartInline):
    """The groups granted a server (each of their members may use it): added and removed through the services."""

    model = McpServerGroupAccess
    fields = ("group", "created_at")
    readonly_fields = ("created_at",)
    verbose_name = "group granted access"
    verbose_name_plural = "Groups granted access (used when not everyone in the organization may use the server)"
    extra = 0

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a row is one group's grant: revoke it and grant another

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("group").order_by("group__name")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> type[BaseInlineFormSet]:
        formset = super().get_formset(request, obj, **kwargs)
        field = formset.form.base_fields.get("group")
        if isinstance(field, ModelChoiceField) and obj is not None:
            field.queryset = Group.objects.filter(organization_id=obj.organization_id).order_by("name")
            for attribute in ("can_add_related", "can_change_related", "can_delete_related", "can_view_related"):
                setattr(field.widget, attribute, False)
        return formset
