"""The admin for MCP servers and their tools, for superusers and organization admins.

Who sees what is decided in `organizations.admin.OrganizationScopedAdmin`: an organization admin (a staff
user with an ADMIN membership) sees and changes only the servers and tools of the organizations they
administer, a superuser sees all, anyone else nothing. Another organization's server is a 404.

Every write goes through the services the API uses: `mcp_server_create` (validation, encrypted headers,
trial, sync after commit), `mcp_server_update`, `mcp_server_sync_request`, `mcp_tool_set_access_mode`,
`mcp_server_delete` and `mcp_server_reauthorize_request`. The admin never saves these models itself.
When a service refuses a save, the form is shown again with the service's message on the field it names.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth.models import User
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, ForeignKey, Q, QuerySet
from django.forms import BaseInlineFormSet, ModelChoiceField, ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.timesince import timesince

from core.exceptions import ApplicationError, ValidationError
from mcp_servers.forms import (
    ACCESS_MODE_CHOICES,
    HeaderFormSet,
    HeaderRowForm,
    McpServerAdminForm,
    McpToolAdminForm,
    Operation,
    ServiceError,
    ToolFormSet,
    ToolRowForm,
)
from mcp_servers.models import (
    AccessMode,
    McpServer,
    McpServerHeader,
    McpServerOAuth,
    McpTool,
    SetupState,
    SyncStatus,
    TransportType,
)
from mcp_servers.oauth_services import mcp_server_reauthorize_request
from mcp_servers.selectors import mcp_server_wait_for_new_auth_url, mcp_server_wait_for_sync
from mcp_servers.services import (
    mcp_server_create,
    mcp_server_delete,
    mcp_server_sync_request,
    mcp_server_update,
    mcp_tool_set_access_mode,
)
from mcp_servers.validation import MAX_HEADERS
from organizations.admin import OrganizationScopedAdmin, admin_organization_ids, administers, administers_any
from organizations.models import Organization

# --- Badges and times ---------------------------------------------------------------------------------------

_TONES = {
    SetupState.CONNECTED: "ok",
    SetupState.INCOMPLETE: "warn",
    SetupState.BROKEN: "bad",
    SyncStatus.SUCCESS: "ok",
    SyncStatus.PENDING: "info",
    SyncStatus.FAILED: "bad",
    SyncStatus.NEVER_SYNCED: "muted",
}
_SYNC_LABELS = {
    SyncStatus.SUCCESS: "Synced",
    SyncStatus.PENDING: "Syncing…",
    SyncStatus.FAILED: "Failed",
    SyncStatus.NEVER_SYNCED: "Never synced",
}
_ACCESS_TONES = {"ALWAYS_ALLOW": "ok", "NEEDS_APPROVAL": "warn", "BLOCKED": "bad"}
_TRANSPORT_LABELS = {TransportType.STREAMABLE_HTTP: "Streamable HTTP", TransportType.SSE: "SSE (legacy)"}


def badge(tone: str, label: str, title: str = "") -> SafeString:
    return format_html('<span class="mcp-badge mcp-badge--{}" title="{}">{}</span>', tone, title, label)


def setup_badge(server: McpServer) -> SafeString:
    label = "Needs authorization" if server.requires_auth else server.get_setup_state_display()
    return badge(_TONES.get(SetupState(server.setup_state), "muted"), label)


def sync_badge(server: McpServer) -> SafeString:
    status = SyncStatus(server.last_sync_status)
    return badge(_TONES.get(status, "muted"), _SYNC_LABELS.get(status, status.label))


def when(moment: Any) -> SafeString | str:
    """`5 minutes ago`, with the exact time on hover."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    age = timezone.now() - moment
    text = "just now" if age.total_seconds() < 60 else f"{timesince(moment).split(',')[0]} ago"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', moment.isoformat(), local.strftime("%Y-%m-%d %H:%M:%S %Z"), text
    )


def safe_auth_url(server: McpServer) -> str | None:
    """The authorization URL, if it is an http(s) URL (it comes from remote metadata: never a `javascript:` link)."""
    if not server.auth_url:
        return None
    return server.auth_url if urlsplit(server.auth_url).scheme in {"http", "https"} else None


def _wait_for_syncs(servers: Sequence[McpServer]) -> None:
    """Wait for queued syncs as the API does (in-process syncs have already run), within one overall bound."""
    deadline = time.monotonic() + settings.MCP_SYNC_WAIT_SECONDS
    for server in servers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        mcp_server_wait_for_sync(server_id=server.pk, timeout=remaining)


def _tool_counts(server_id: uuid.UUID) -> tuple[int, int]:
    counts = McpTool.objects.filter(server_id=server_id).aggregate(
        found=Count("pk", filter=Q(found_in_server=True)), gone=Count("pk", filter=Q(found_in_server=False))
    )
    return int(counts["found"]), int(counts["gone"])


def _report_sync(model_admin: admin.ModelAdmin, request: HttpRequest, server_id: uuid.UUID, done: str) -> None:
    """Say how the sync went: tools found, waiting for authorization, failed (with why), or still running."""
    server = McpServer.objects.filter(pk=server_id).first()
    if server is None:
        return
    if server.last_sync_status == SyncStatus.PENDING:
        model_admin.message_user(
            request, f"{done} The tool sync of “{server.display_name}” is still running: reload in a moment."
        )
    elif server.requires_auth:
        model_admin.message_user(
            request,
            f"{done} “{server.display_name}” needs OAuth authorization: use “Authorize” below to connect it.",
            messages.WARNING,
        )
    elif server.last_sync_status == SyncStatus.FAILED:
        model_admin.message_user(
            request,
            f"{done} The tool sync of “{server.display_name}” failed: {server.sync_error_message or 'no reason given'}",
            messages.ERROR,
        )
    else:
        found, _ = _tool_counts(server.pk)
        model_admin.message_user(
            request, f"{done} “{server.display_name}” is connected: {found} tool(s) found.", messages.SUCCESS
        )


class SyncStatusFilter(admin.SimpleListFilter):
    title = "last sync"
    parameter_name = "last_sync_status__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status.value, _SYNC_LABELS[status].rstrip("…")) for status in SyncStatus]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(last_sync_status=value) if value else queryset


class AccessModeFilter(admin.SimpleListFilter):
    title = "access mode"
    parameter_name = "access_mode__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(ACCESS_MODE_CHOICES)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(access_mode=value) if value else queryset


# --- Refused saves: show the service's message on the form ---------------------------------------------------

_PENDING_ERROR = "_mcp_service_error"
_RESYNC_QUEUED = "_mcp_resync_queued"


class ServiceRejected(Exception):
    def __init__(self, rejected: ServiceError) -> None:
        super().__init__(rejected.error.detail)
        self.rejected = rejected


def _pending_error(request: HttpRequest) -> ServiceError | None:
    error: ServiceError | None = getattr(request, _PENDING_ERROR, None)
    return error


@contextmanager
def _service_call(operation: Operation) -> Iterator[None]:
    """Turn a service's ValidationError into ServiceRejected (the change form catches it and shows it)."""
    try:
        yield
    except ValidationError as exc:
        raise ServiceRejected(ServiceError(error=exc, operation=operation)) from exc


# --- The server's tools, a page at a time ---------------------------------------------------------------------

TOOLS_PER_PAGE = 50
_TOOLS_PREFIX = "tools"  # the inline formset's prefix (the relation's name)
_TOOL_ROW_ID = re.compile(rf"^{_TOOLS_PREFIX}-\d+-id$")
_TOOL_PAGE_ATTRIBUTE = "_mcp_tool_page"


@dataclass(frozen=True)
class ToolFilters:
    """The search and filters over a server's tools, from the change page's query string (`tools_*`)."""

    query: str = ""
    mode: str = ""  # an AccessMode value, or "" for every mode
    listed: str = ""  # "yes": still listed by the server; "no": gone; "": both
    changed: bool = False  # only tools whose definition changed since their mode was decided
    page: int = 1

    @classmethod
    def from_query(cls, query: Any) -> ToolFilters:
        mode = query.get("tools_mode", "")
        listed = query.get("tools_listed", "")
        page = query.get("tools_page", "1")
        return cls(
            query=query.get("tools_q", "").strip()[:200],
            mode=mode if mode in AccessMode.values else "",
            listed=listed if listed in ("yes", "no") else "",
            changed=query.get("tools_changed") == "yes",
            page=int(page) if page.isascii() and page.isdigit() and 0 < len(page) < 7 else 1,
        )

    @property
    def active(self) -> bool:
        return bool(self.query or self.mode or self.listed or self.changed)

    def apply(self, tools: QuerySet[McpTool]) -> QuerySet[McpTool]:
        if self.query:
            tools = tools.filter(
                Q(name__icontains=self.query) | Q(title__icontains=self.query) | Q(description__icontains=self.query)
            )
        if self.mode:
            tools = tools.filter(access_mode=self.mode)
        if self.listed:
            tools = tools.filter(found_in_server=self.listed == "yes")
        if self.changed:
            tools = tools.exclude(definition_hash=F("reviewed_definition_hash"))
        return tools

    def query_string(self, **changes: Any) -> str:
        """`?…` for these filters with `changes` applied (a page of 1 and empty values are left out)."""
        values = {
            "tools_q": self.query,
            "tools_mode": self.mode,
            "tools_listed": self.listed,
            "tools_changed": "yes" if self.changed else "",
            "tools_page": self.page,
        }
        values.update({f"tools_{name}": value for name, value in changes.items()})
        kept = {name: value for name, value in values.items() if value and not (name == "tools_page" and value == 1)}
        return f"?{urlencode(kept)}" if kept else "?"


@dataclass(frozen=True)
class ToolPage:
    """One page of a server's tools as the change page shows them, with what its search and pager need."""

    filters: ToolFilters
    page: Page[Any]
    tool_ids: list[uuid.UUID]

    @property
    def pages(self) -> list[dict[str, Any]]:
        """The pager: numbered links around the current page, with gaps elided."""
        links: list[dict[str, Any]] = []
        for number in self.page.paginator.get_elided_page_range(self.page.number, on_each_side=2, on_ends=1):
            if number == Paginator.ELLIPSIS:
                links.append({"gap": True})
            else:
                links.append({"number": number, "current": number == self.page.number,
                              "url": self.filters.query_string(page=number)})  # fmt: skip
        return links

    @property
    def previous_url(self) -> str | None:
        return self.filters.query_string(page=self.page.number - 1) if self.page.has_previous() else None

    @property
    def next_url(self) -> str | None:
        return self.filters.query_string(page=self.page.number + 1) if self.page.has_next() else None

    @property
    def clear_url(self) -> str:
        return "?"

    def filter_url(self, **changes: Any) -> str:
        return self.filters.query_string(page=1, **changes)

    @property
    def mode_choices(self) -> list[dict[str, Any]]:
        return [{"value": value, "label": label, "selected": value == self.filters.mode}
                for value, label in ACCESS_MODE_CHOICES]  # fmt: skip


def tool_page(request: HttpRequest, server_id: uuid.UUID) -> ToolPage:
    """The page of the server's tools the request asks for (search, filters, page number), read once per request:
    a count and one page of ids, whatever the number of tools."""
    cached: ToolPage | None = getattr(request, _TOOL_PAGE_ATTRIBUTE, None)
    if cached is not None:
        return cached
    filters = ToolFilters.from_query(request.GET)
    tools = filters.apply(McpTool.objects.filter(server_id=server_id)).order_by("-found_in_server", "name", "pk")
    paginator = Paginator(tools.values_list("pk", flat=True), TOOLS_PER_PAGE)
    page = paginator.get_page(filters.page)
    result = ToolPage(filters=filters, page=page, tool_ids=list(page.object_list))
    setattr(request, _TOOL_PAGE_ATTRIBUTE, result)
    return result


def _posted_tool_ids(request: HttpRequest) -> list[uuid.UUID]:
    """The tools a submitted change form had on its page: the rows are matched by id, so a sync that added or removed
    tools since the page was shown cannot shift the decisions onto other tools."""
    ids = []
    for name, value in request.POST.items():
        if _TOOL_ROW_ID.match(name):
            try:
                ids.append(uuid.UUID(str(value)))
            except ValueError:
                continue  # not one of this server's rows: the formset says so
    return ids


# --- Inlines ---------------------------------------------------------------------------------------------------


class _ServerPartInline(admin.TabularInline):
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


class HeaderInline(_ServerPartInline):
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
        return type(formset.__name__, (formset,), {"service_error": _pending_error(request)})


class ToolInline(_ServerPartInline):
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
            return tools.filter(pk__in=_posted_tool_ids(request))
        return tools.filter(pk__in=tool_page(request, server.pk).tool_ids)

    @admin.display(description="Description")
    def description_short(self, tool: McpTool) -> SafeString | str:
        if not tool.description:
            return "—"
        return format_html('<span title="{}">{}</span>', tool.description, Truncator(tool.description).chars(140))

    @admin.display(description="Read-only hint")
    def read_only(self, tool: McpTool) -> SafeString:
        if tool.read_only_hint is None:
            return badge("muted", "Not given", "The server did not say whether this tool only reads.")
        return badge("ok", "Read-only") if tool.read_only_hint else badge("warn", "May write")

    @admin.display(description="In server")
    def found(self, tool: McpTool) -> SafeString:
        if tool.found_in_server:
            return badge("ok", "Listed")
        return badge("muted", "Gone", "The server no longer lists this tool; its access mode is kept.")

    @admin.display(description="Definition")
    def definition(self, tool: McpTool) -> SafeString:
        if tool.definition_changed_since_review:
            return badge("warn", "Changed", "The server changed this tool since its access mode was decided.")
        return badge("muted", "Reviewed")


# --- Servers ---------------------------------------------------------------------------------------------------


@admin.register(McpServer)
class McpServerAdmin(OrganizationScopedAdmin):
    allow_add = True
    allow_delete = True
    form = McpServerAdminForm
    list_display = ("display_name", "server_label", "organization", "setup", "tools", "last_sync")
    list_display_links = ("display_name",)
    list_filter = (("organization", admin.RelatedOnlyFieldListFilter), "setup_state", SyncStatusFilter)
    search_fields = ("display_name", "server_label", "server_url")
    list_select_related = ("organization",)
    list_per_page = 50
    actions = ["sync_now", "reauthorize"]
    change_form_template = "admin/mcp_servers/mcpserver/change_form.html"
    change_list_template = "admin/mcp_servers/mcpserver/change_list.html"

    # --- Who sees what

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .select_related("organization")
            .annotate(
                tool_count=Count("tools", filter=Q(tools__found_in_server=True)),
                gone_tool_count=Count("tools", filter=Q(tools__found_in_server=False)),
            )
        )

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> McpServer:
        """Another organization's server, a malformed id and a missing one look alike: 404."""
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such MCP server.")
        return obj

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "organization":  # a plain select: no add/change/view buttons beside it
            return self.formfield_for_foreignkey(db_field, request, **kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        if db_field.name == "organization":
            ids = admin_organization_ids(request)
            organizations = Organization.objects.order_by("name")
            kwargs["queryset"] = organizations if ids is None else organizations.filter(pk__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        ids = admin_organization_ids(request)
        if ids is not None and len(ids) == 1 and "organization" not in initial:
            initial["organization"] = str(next(iter(ids)))
        return initial

    # --- The change form

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["organization", "display_name", "server_url", "everyone_in_organization_can_access"]
        if obj is not None:
            fields.insert(2, "server_label")
        return [(None, {"fields": fields})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("organization", "server_label") if obj is not None else ()

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[admin.options.InlineModelAdmin]]:
        return [HeaderInline] if obj is None else [HeaderInline, ToolInline]

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: admin.options.InlineModelAdmin, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, ToolInline) and obj is not None:
            kwargs["queryset"] = inline.rows_shown(kwargs["queryset"], request, obj)
        return kwargs

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type[ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"service_error": _pending_error(request)})

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Not in one transaction, unlike Django's default: the services own theirs and queue the sync after
        # their commit. A refused save rolled back whole; the form is shown again with the service's message.
        try:
            return self._changeform(request, object_id, form_url, extra_context)
        except ServiceRejected as refused:
            setattr(request, _PENDING_ERROR, refused.rejected)
        try:
            return self._changeform(request, object_id, form_url, extra_context)
        except ServiceRejected as refused:  # the message found no field to stand on: say it at the top
            self.message_user(request, refused.rejected.error.detail, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def _changeform(
        self, request: HttpRequest, object_id: str | None, form_url: str, extra_context: dict[str, Any] | None
    ) -> HttpResponse:
        response: HttpResponse = getattr(super(), "_changeform_view")(request, object_id, form_url, extra_context)  # noqa: B009
        return response

    def save_model(self, request: HttpRequest, obj: McpServer, form: Any, change: bool) -> None:
        """Nothing here: the server, its headers and its tools are written together in `save_related`."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        headers = next((fs for fs in formsets if isinstance(fs, HeaderFormSet)), None)
        tools = next((fs for fs in formsets if isinstance(fs, ToolFormSet)), None)
        plan = headers.plan() if headers is not None else None
        data = form.cleaned_data
        obj: McpServer = form.instance
        if not change:
            organization = data["organization"]
            if not administers(request, organization.pk):  # the field's choices already say so
                raise Http404("No such organization.")
            with _service_call("create"):
                server = mcp_server_create(
                    organization=organization,
                    created_by=cast(User, request.user),
                    display_name=data.get("display_name") or "",
                    server_url=data.get("server_url") or "",
                    headers=plan.headers if plan is not None else [],
                    everyone_in_organization_can_access=bool(data.get("everyone_in_organization_can_access")),
                )
            for model_field in McpServer._meta.concrete_fields:
                setattr(obj, model_field.attname, getattr(server, model_field.attname))
            obj._state.adding = False
        else:
            with _service_call("update"):
                result = mcp_server_update(
                    server=obj,
                    display_name=data.get("display_name") or "",
                    server_url=data.get("server_url") or "",
                    set_headers=plan.headers if plan is not None else (),
                    remove_headers=plan.removed_keys if plan is not None else (),
                    everyone_in_organization_can_access=bool(data.get("everyone_in_organization_can_access")),
                )
            setattr(request, _RESYNC_QUEUED, result.resync_queued)
        decided = []
        if tools is not None:
            for row in tools.forms:
                if isinstance(row, ToolRowForm) and row.wants_decision():
                    decided.append(mcp_tool_set_access_mode(tool=row.instance, access_mode=row.access_mode))
        self._describe_changes(headers, plan, tools, decided)

    @staticmethod
    def _describe_changes(headers: Any, plan: Any, tools: Any, decided: Iterable[McpTool]) -> None:
        """What the admin's history records (it reads these attributes, which formset.save() would set)."""
        if headers is not None:
            stored = {f.instance.key.lower() for f in headers.forms if f.is_existing}
            upserts = [h for h in plan.headers] if plan is not None else []
            headers.new_objects = [McpServerHeader(key=h.key) for h in upserts if h.key.lower() not in stored]
            headers.changed_objects = [
                (McpServerHeader(key=h.key), ["value"]) for h in upserts if h.key.lower() in stored
            ]
            headers.deleted_objects = [McpServerHeader(key=k) for k in (plan.removed_keys if plan else [])]
        if tools is not None:
            tools.new_objects, tools.deleted_objects = [], []
            tools.changed_objects = [(tool, ["access_mode"]) for tool in decided]

    def response_add(self, request: HttpRequest, obj: McpServer, post_url_continue: str | None = None) -> HttpResponse:
        _wait_for_syncs([obj])
        if IS_POPUP_VAR in request.POST or "_addanother" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        # The change page shows how the first sync went and the tools it found.
        _report_sync(self, request, obj.pk, f"Added “{obj.display_name}”.")
        return HttpResponseRedirect(self._change_url(obj))

    def response_change(self, request: HttpRequest, obj: McpServer) -> HttpResponse:
        if getattr(request, _RESYNC_QUEUED, False):
            _wait_for_syncs([obj])
            _report_sync(self, request, obj.pk, "Saved; the server changed, so its tools were synced again.")
        return super().response_change(request, obj)  # "Save and continue" keeps the query: the same tools

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: McpServer | None = None,
    ) -> HttpResponse:
        context["title"] = "Add an MCP server" if add else "MCP server"
        if obj is not None:
            context["mcp_status"] = self._status(obj)
            context["mcp_tools"] = tool_page(request, obj.pk)
            context["mcp_can_reauthorize"] = McpServerOAuth.objects.filter(server_id=obj.pk).exists()
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _status(self, server: McpServer) -> dict[str, Any]:
        found, gone = _tool_counts(server.pk)
        changed = McpTool.objects.filter(server_id=server.pk).exclude(definition_hash=F("reviewed_definition_hash"))
        return {
            "setup": setup_badge(server),
            "sync": sync_badge(server),
            "last_attempt": when(server.last_sync_attempt_at),
            "last_success": when(server.last_successful_sync_at),
            "transport": _TRANSPORT_LABELS.get(TransportType(server.transport_type), "")
            if server.transport_type
            else "Not detected yet",
            "requires_auth": server.requires_auth,
            "auth_url": safe_auth_url(server),
            "error": server.sync_error_message,
            "tools_found": found,
            "tools_gone": gone,
            "tools_changed": changed.count(),
            "pending": server.last_sync_status == SyncStatus.PENDING,
        }

    def _change_url(self, obj: McpServer) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=(quote(obj.pk),),
            current_app=self.admin_site.name,
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "MCP servers", **(extra_context or {})})

    # --- Deleting

    def delete_model(self, request: HttpRequest, obj: McpServer) -> None:
        mcp_server_delete(server=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            mcp_server_delete(server=server)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        # Tools, headers and credentials go with their server (the service deletes them); they need no
        # permission of their own.
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    # --- The list

    @admin.display(description="Setup", ordering="setup_state")
    def setup(self, server: McpServer) -> SafeString:
        return setup_badge(server)

    @admin.display(description="Tools", ordering="tool_count")
    def tools(self, server: McpServer) -> SafeString | int:
        found = int(getattr(server, "tool_count", 0))
        gone = int(getattr(server, "gone_tool_count", 0))
        if gone:
            return format_html('{} <span class="mcp-quiet">+{} gone</span>', found, gone)
        return found

    @admin.display(description="Last sync", ordering="last_sync_attempt_at")
    def last_sync(self, server: McpServer) -> SafeString:
        return format_html('{}<div class="mcp-when">{}</div>', sync_badge(server), when(server.last_sync_attempt_at))

    # --- Actions and buttons

    @admin.action(description="Sync tools now")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        servers = list(queryset)
        for server in servers:
            mcp_server_sync_request(server=server)
        _wait_for_syncs(servers)
        if len(servers) == 1:
            _report_sync(self, request, servers[0].pk, "Synced.")
            return
        statuses = dict(McpServer.objects.filter(pk__in=[s.pk for s in servers]).values_list("pk", "last_sync_status"))
        ok = sum(1 for status in statuses.values() if status == SyncStatus.SUCCESS)
        failed = sum(1 for status in statuses.values() if status == SyncStatus.FAILED)
        pending = len(servers) - ok - failed
        summary = f"Synced {len(servers)} servers: {ok} succeeded, {failed} failed, {pending} still running."
        self.message_user(request, summary, messages.SUCCESS if not failed else messages.WARNING)

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

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        own = [
            path(
                "<path:object_id>/sync/",
                self.admin_site.admin_view(self.sync_view),
                name="{}_{}_sync".format(*info),
            ),
            path(
                "<path:object_id>/reauthorize/",
                self.admin_site.admin_view(self.reauthorize_view),
                name="{}_{}_reauthorize".format(*info),
            ),
        ]
        return own + super().get_urls()

    def _changeable(self, request: HttpRequest, object_id: str) -> McpServer:
        server = self.get_object(request, unquote(object_id))
        if not self.has_change_permission(request, server):
            raise Http404("No such MCP server.")
        return server

    def sync_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        server = self._changeable(request, object_id)
        mcp_server_sync_request(server=server)
        _wait_for_syncs([server])
        _report_sync(self, request, server.pk, "Synced.")
        return HttpResponseRedirect(self._change_url(server))

    def reauthorize_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        server = self._changeable(request, object_id)
        try:
            mcp_server_reauthorize_request(server=server)
        except ApplicationError as exc:
            self.message_user(request, exc.detail, messages.WARNING)
        else:
            mcp_server_wait_for_new_auth_url(
                server_id=server.pk, previous=server.auth_url, timeout=settings.MCP_SYNC_WAIT_SECONDS
            )
            self.message_user(request, "A fresh authorization URL is ready: use “Authorize” to open it.")
        return HttpResponseRedirect(self._change_url(server))


# --- Tools -----------------------------------------------------------------------------------------------------


@admin.register(McpTool)
class McpToolAdmin(OrganizationScopedAdmin):
    """Every tool of the servers one administers, to review access modes across servers."""

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
    readonly_fields = (
        "name",
        "server",
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

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass

    @admin.display(description="Organization", ordering="server__organization__name")
    def organization(self, tool: McpTool) -> Organization:
        return tool.server.organization

    @admin.display(description="Access mode", ordering="access_mode")
    def access(self, tool: McpTool) -> SafeString:
        label = dict(ACCESS_MODE_CHOICES).get(tool.access_mode, tool.access_mode)
        return badge(_ACCESS_TONES.get(tool.access_mode, "muted"), label)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "MCP tools", **(extra_context or {})})

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: McpTool | None = None,
    ) -> HttpResponse:
        context["title"] = "MCP tool"
        return super().render_change_form(request, context, add, change, form_url, obj)

    read_only = ToolInline.read_only
    found = ToolInline.found
    definition = ToolInline.definition
