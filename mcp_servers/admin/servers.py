"""The admin of MCP servers, for superusers and organization admins.

Who sees what is decided in `organizations.admin.OrganizationScopedAdmin`: an organization admin (a staff user with an
ADMIN membership) sees and changes only the servers of the organizations they administer, a superuser sees all, anyone
else nothing. Another organization's server is a 404.

Every write goes through the services the API uses: `mcp_server_create` (validation, encrypted headers, trial, sync
after commit), `mcp_server_update`, `mcp_server_sync_request`, `mcp_tool_set_access_mode`, `mcp_server_delete` and
`mcp_server_reauthorize_request`. When a service refuses a save, the form is shown again with the service's message on
the field it names.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth.models import User
from django.db.models import Count, F, ForeignKey, Q, QuerySet
from django.forms import ModelChoiceField, ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.errors import ApplicationError
from mcp_servers.admin.display import (
    SYNC_LABELS,
    TRANSPORT_LABELS,
    TitledAdmin,
    safe_auth_url,
    setup_badge,
    sync_badge,
    when,
    who_may_use_table,
)
from mcp_servers.admin.forms import (
    HeaderFormSet,
    McpServerAdminForm,
    ServiceRejected,
    ToolFormSet,
    ToolRowForm,
    header_formset_of,
    pending_error,
    service_call,
    set_pending_error,
)
from mcp_servers.admin.inlines import GroupAccessInline, HeaderInline, ToolInline
from mcp_servers.admin.tool_pages import tool_page
from mcp_servers.models import (
    McpServer,
    McpServerGroupAccess,
    McpServerHeader,
    McpServerOAuth,
    McpTool,
    SyncStatus,
    ToolCall,
    ToolCallStatus,
    TransportType,
)
from mcp_servers.selectors import mcp_server_users, mcp_server_wait_for_new_auth_url, mcp_server_wait_for_sync
from mcp_servers.services import (
    mcp_server_access_grant,
    mcp_server_create,
    mcp_server_delete,
    mcp_server_group_access_revoke,
    mcp_server_reauthorize_request,
    mcp_server_sync_request,
    mcp_server_update,
    mcp_tool_set_access_mode,
)
from organizations.admin import OrganizationScopedAdmin, admin_organization_ids, administers
from organizations.models import Organization


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
        return [(status.value, SYNC_LABELS[status].rstrip("…")) for status in SyncStatus]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(last_sync_status=value) if value else queryset


def _call_counts(server: McpServer) -> dict[str, Any]:
    """The server's tool calls at a glance, with links to them in the audit trail (awaiting approval, all)."""
    counts = ToolCall.objects.filter(server_id=server.pk).aggregate(
        total=Count("pk"), awaiting=Count("pk", filter=Q(status=ToolCallStatus.AWAITING_APPROVAL))
    )
    history = f"{reverse('admin:mcp_servers_toolcall_changelist')}?server__id__exact={server.pk}"
    return {
        "calls_total": counts["total"],
        "calls_awaiting": counts["awaiting"],
        "calls_url": history,
        "calls_awaiting_url": f"{history}&status__exact={ToolCallStatus.AWAITING_APPROVAL}",
    }


_DEFERRED_REPORT = "mcp_sync_report"


def _defer_sync_report(request: HttpRequest, server_id: uuid.UUID, done: str) -> None:
    """Say how the sync a save queued went, on the page the save redirects to: the sync is queued when the save's
    transaction commits, which is after the redirect is made (that page waits for it, as the API does)."""
    request.session[_DEFERRED_REPORT] = {"server_id": str(server_id), "done": done}


def _report_deferred_sync(model_admin: admin.ModelAdmin, request: HttpRequest) -> None:
    report = request.session.pop(_DEFERRED_REPORT, None)
    if not isinstance(report, dict) or not isinstance(report.get("server_id"), str):
        return
    server = McpServer.objects.filter(pk=report["server_id"]).first()
    if server is not None and administers(request, server.organization_id):
        _wait_for_syncs([server])
        _report_sync(model_admin, request, server.pk, str(report.get("done", "")))


@admin.register(McpServer)
class McpServerAdmin(TitledAdmin, OrganizationScopedAdmin):
    list_title, add_title, change_title = "MCP servers", "Add an MCP server", "MCP server"
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
        credentials = ["oauth_client_id", "oauth_client_secret", "oauth_private_key", "oauth_signing_algorithm"]
        oauth = ("OAuth client credentials (machine to machine)", {"fields": credentials, "classes": ["collapse"]})
        if obj is None:
            return [(None, {"fields": fields}), oauth]
        fields.insert(2, "server_label")
        if hasattr(obj, "client_credentials"):
            credentials.append("oauth_remove_client_credentials")
        return [(None, {"fields": fields}), oauth, ("Who may use it", {"fields": ["who_may_use"]})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("organization", "server_label", "who_may_use") if obj is not None else ()

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[admin.options.InlineModelAdmin]]:
        return [HeaderInline] if obj is None else [HeaderInline, GroupAccessInline, ToolInline]

    @admin.display(description="Members who may use it")
    def who_may_use(self, server: McpServer) -> SafeString:
        """Who may use the server and why: everyone, or admins, direct grants and groups (the catalog's rule)."""
        return who_may_use_table(server, mcp_server_users(server=server))

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: admin.options.InlineModelAdmin, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, ToolInline) and obj is not None:
            kwargs["queryset"] = inline.rows_shown(kwargs["queryset"], request, obj)
        return kwargs

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type[ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"service_error": pending_error(request)})

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Django's change form, whose save runs in one transaction (the services' own nest in it; their syncs are
        queued when it commits). A refused save rolls back whole, and the form is shown again with the service's
        message on the field it names."""
        if request.method == "GET":
            _report_deferred_sync(self, request)
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRejected as refused:
            set_pending_error(request, refused.rejected)
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRejected as refused:  # the message found no field to stand on: say it at the top
            self.message_user(request, refused.rejected.error.detail, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: McpServer, form: Any, change: bool) -> None:
        """The server and its headers, through the service (the header rows are read from this request's formset)."""
        headers = header_formset_of(request)
        plan = headers.plan() if headers is not None else None
        data = form.cleaned_data
        if not change:
            organization = data["organization"]
            if not administers(request, organization.pk):  # the field's choices already say so
                raise Http404("No such organization.")
            with service_call("create"):
                server = mcp_server_create(
                    organization=organization,
                    created_by=cast(User, request.user),
                    display_name=data.get("display_name") or "",
                    server_url=data.get("server_url") or "",
                    headers=plan.headers if plan is not None else [],
                    everyone_in_organization_can_access=bool(data.get("everyone_in_organization_can_access")),
                    client_credentials=form.client_credentials(),
                )
            # What the rest of the admin's save (history, the redirect) reads of the new server.
            for model_field in McpServer._meta.concrete_fields:
                setattr(obj, model_field.attname, getattr(server, model_field.attname))
            _defer_sync_report(request, obj.pk, f"Added “{obj.display_name}”.")
            return
        with service_call("update"):
            result = mcp_server_update(
                server=obj,
                display_name=data.get("display_name") or "",
                server_url=data.get("server_url") or "",
                set_headers=plan.headers if plan is not None else (),
                remove_headers=plan.removed_keys if plan is not None else (),
                everyone_in_organization_can_access=bool(data.get("everyone_in_organization_can_access")),
                client_credentials=form.client_credentials(),
                remove_client_credentials=bool(data.get("oauth_remove_client_credentials")),
            )
        if result.resync_queued:
            _defer_sync_report(request, obj.pk, "Saved; the server changed, so its tools were synced again.")

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Tool decisions through the service; headers were written with the server (save_model). Either way, what
        changed is recorded as Django's history expects (the attributes formset.save() would set)."""
        if formset.model is McpServerGroupAccess:
            server = form.instance
            formset.save(commit=False)
            for grant in formset.deleted_objects:
                mcp_server_group_access_revoke(server=server, group_id=grant.group_id)
            granted = [grant.group_id for grant in formset.new_objects]
            if granted:
                with service_call("update"):
                    mcp_server_access_grant(server=server, group_ids=[str(group_id) for group_id in granted])
            formset.changed_objects = []
        elif isinstance(formset, ToolFormSet):
            decided = [
                mcp_tool_set_access_mode(tool=row.instance, access_mode=row.access_mode)
                for row in formset.forms
                if isinstance(row, ToolRowForm) and row.wants_decision()
            ]
            formset.new_objects, formset.deleted_objects = [], []
            formset.changed_objects = [(tool, ["access_mode"]) for tool in decided]
        elif isinstance(formset, HeaderFormSet):
            plan = formset.plan()
            stored = {f.instance.key.lower() for f in formset.rows if f.is_existing}
            formset.new_objects = [McpServerHeader(key=h.key) for h in plan.headers if h.key.lower() not in stored]
            formset.changed_objects = [
                (McpServerHeader(key=h.key), ["value"]) for h in plan.headers if h.key.lower() in stored
            ]
            formset.deleted_objects = [McpServerHeader(key=key) for key in plan.removed_keys]

    def response_add(self, request: HttpRequest, obj: McpServer, post_url_continue: str | None = None) -> HttpResponse:
        if IS_POPUP_VAR in request.POST or "_addanother" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        # The change page shows how the first sync went and the tools it found.
        return HttpResponseRedirect(self._change_url(obj))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: McpServer | None = None,
    ) -> HttpResponse:
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
            "transport": TRANSPORT_LABELS.get(TransportType(server.transport_type), "")
            if server.transport_type
            else "Not detected yet",
            "requires_auth": server.requires_auth,
            "auth_url": safe_auth_url(server),
            "error": server.sync_error_message,
            "tools_found": found,
            "tools_gone": gone,
            "tools_changed": changed.count(),
            "pending": server.last_sync_status == SyncStatus.PENDING,
            **_call_counts(server),
        }

    def _change_url(self, obj: McpServer) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=(quote(obj.pk),),
            current_app=self.admin_site.name,
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "GET":
            _report_deferred_sync(self, request)
        return super().changelist_view(request, extra_context)

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
