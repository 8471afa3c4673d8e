"""Tool calls in the admin: the calls awaiting approval, with Approve and Deny, and the audit trail (per server too).

Calls are records: nobody adds, edits or deletes one here (the upkeep task purges them after their retention). An
approval goes through the service the API uses, runs the call at once and says how it went; the arguments are shown
because an approver must see what they approve.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from core.errors import ApplicationError
from mcp_servers.admin.display import TitledAdmin, badge, when
from mcp_servers.models import ToolCall, ToolCallStatus
from mcp_servers.services.tool_calls import tool_call_decide, tool_call_expire_if_due, tool_call_run
from organizations.admin import OrganizationScopedAdmin

CALL_TONES = {
    ToolCallStatus.AWAITING_APPROVAL: "warn",
    ToolCallStatus.RUNNING: "info",
    ToolCallStatus.COMPLETED: "ok",
    ToolCallStatus.FAILED: "bad",
    ToolCallStatus.AUTH_REQUIRED: "warn",
    ToolCallStatus.DENIED: "muted",
    ToolCallStatus.EXPIRED: "muted",
    ToolCallStatus.REFUSED: "bad",
}


def call_badge(call: ToolCall) -> SafeString:
    status = ToolCallStatus(call.status)
    label = status.label.replace("_", " ").capitalize()
    if status == ToolCallStatus.COMPLETED and call.is_error:
        return badge("warn", "Tool error", "The tool answered with an error (isError): a result, not a failure.")
    return badge(CALL_TONES.get(status, "muted"), label, call.error_message or "")


def _pretty(document: str | None) -> SafeString | str:
    if not document:
        return "—"
    return format_html("<pre class='mcp-json'>{}</pre>", json.dumps(json.loads(document), indent=2, ensure_ascii=False))


@admin.register(ToolCall)
class ToolCallAdmin(TitledAdmin, OrganizationScopedAdmin):
    list_title, add_title, change_title = "Tool calls", "Tool call", "Tool call"
    list_display = ("requested", "tool", "requester", "state", "duration", "decision", "decide")
    list_display_links = ("requested",)
    list_filter = ("status", ("server", admin.RelatedOnlyFieldListFilter), "organization")
    search_fields = ("tool_name", "server_label", "requested_by__email")
    list_select_related = ("requested_by", "decided_by")
    list_per_page = 50
    actions = ["approve_selected", "deny_selected"]
    fields = (
        "state",
        "tool",
        "server",
        "requester",
        "api_key_prefix",
        "requested",
        "expires",
        "decision",
        "timing",
        "progress_line",
        "problem",
        "arguments_json",
        "result_json",
    )
    readonly_fields = fields
    change_form_template = "admin/mcp_servers/toolcall/change_form.html"
    change_list_template = "admin/mcp_servers/toolcall/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("arguments", "result")

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> ToolCall:
        """Another organization's call, a malformed id and a missing one look alike: 404."""
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such tool call.")
        return tool_call_expire_if_due(obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a record: only its approval changes it (see approve_view)

    # --- The list and the page

    @admin.display(description="Requested", ordering="id")
    def requested(self, call: ToolCall) -> SafeString | str:
        return when(call.created_at)

    @admin.display(description="Tool", ordering="tool_name")
    def tool(self, call: ToolCall) -> SafeString:
        return format_html("<code>{}__{}</code>", call.server_label, call.tool_name)

    @admin.display(description="Requested by")
    def requester(self, call: ToolCall) -> str:
        return call.requested_by.email if call.requested_by else "—"

    @admin.display(description="Status", ordering="status")
    def state(self, call: ToolCall) -> SafeString:
        return call_badge(call)

    @admin.display(description="Duration")
    def duration(self, call: ToolCall) -> str:
        return f"{call.duration_ms} ms" if call.duration_ms is not None else "—"

    @admin.display(description="Decision")
    def decision(self, call: ToolCall) -> SafeString | str:
        if call.decided_at is None:
            return "—"
        who = call.decided_by.email if call.decided_by else "someone"
        return format_html("{} {}", who, when(call.decided_at))

    @admin.display(description="")
    def decide(self, call: ToolCall) -> SafeString | str:
        if call.status != ToolCallStatus.AWAITING_APPROVAL:
            return ""
        return format_html(
            '<button type="submit" form="mcp-decide" formaction="{}" class="button mcp-approve">Approve</button> '
            '<button type="submit" form="mcp-decide" formaction="{}" class="button">Deny</button>',
            self._url("approve", call),
            self._url("deny", call),
        )

    @admin.display(description="API key")
    def api_key_prefix(self, call: ToolCall) -> str:
        return f"{call.api_key.prefix}…" if call.api_key else "—"

    @admin.display(description="Approval deadline")
    def expires(self, call: ToolCall) -> SafeString | str:
        return when(call.expires_at) if call.expires_at else "—"

    @admin.display(description="Ran")
    def timing(self, call: ToolCall) -> SafeString | str:
        if call.started_at is None:
            return "—"
        return format_html("from {} · {}", when(call.started_at), self.duration(call))

    @admin.display(description="Progress")
    def progress_line(self, call: ToolCall) -> str:
        if not call.progress:
            return "—"
        total = call.progress.get("total")
        done = f"{call.progress.get('progress')}" + (f" of {total}" if total else "")
        message = call.progress.get("message")
        return f"{done}: {message}" if message else done

    @admin.display(description="Why")
    def problem(self, call: ToolCall) -> SafeString | str:
        if not call.error_message:
            return "—"
        text = Truncator(call.error_message).chars(500)
        if call.auth_url and call.auth_url.startswith(("https://", "http://")):
            return format_html(
                '{} <a href="{}" target="_blank" rel="noopener noreferrer">Authorize ↗</a>', text, call.auth_url
            )
        return text

    @admin.display(description="Arguments")
    def arguments_json(self, call: ToolCall) -> SafeString | str:
        return _pretty(call.arguments)

    @admin.display(description="Result")
    def result_json(self, call: ToolCall) -> SafeString | str:
        return _pretty(call.result)

    # --- Deciding

    @admin.action(description="Approve the selected calls (they run now)")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[ToolCall]) -> None:
        for call in queryset.filter(status=ToolCallStatus.AWAITING_APPROVAL):
            self._decide(request, call, approve=True)

    @admin.action(description="Deny the selected calls")
    def deny_selected(self, request: HttpRequest, queryset: QuerySet[ToolCall]) -> None:
        for call in queryset.filter(status=ToolCallStatus.AWAITING_APPROVAL):
            self._decide(request, call, approve=False)

    def _decide(self, request: HttpRequest, call: ToolCall, *, approve: bool) -> None:
        name = f"{call.server_label}__{call.tool_name}"
        try:
            decided = tool_call_decide(call=call, user=_user(request), is_admin=True, approve=approve)
        except ApplicationError as exc:
            self.message_user(request, f"{name}: {exc.detail}", messages.WARNING)
            return
        if not approve:
            self.message_user(request, f"Denied the call of {name}.", messages.SUCCESS)
            return
        ran = tool_call_run(call=decided, wait=settings.MCP_CALL_WAIT_SECONDS)
        if ran.status == ToolCallStatus.COMPLETED:
            outcome = "the tool reported an error" if ran.is_error else "it completed"
            self.message_user(request, f"Approved the call of {name}: {outcome}.", messages.SUCCESS)
        elif ran.status == ToolCallStatus.RUNNING:
            self.message_user(request, f"Approved the call of {name}: it is still running.")
        else:
            self.message_user(request, f"Approved the call of {name}: {ran.error_message}", messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        own = [
            path(f"<path:object_id>/{verb}/", self.admin_site.admin_view(view), name=f"{info[0]}_{info[1]}_{verb}")
            for verb, view in (("approve", self.approve_view), ("deny", self.deny_view))
        ]
        return own + super().get_urls()

    def _url(self, verb: str, call: ToolCall) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{verb}", args=[call.pk])

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decision_view(request, object_id, approve=True)

    def deny_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decision_view(request, object_id, approve=False)

    def _decision_view(self, request: HttpRequest, object_id: str, *, approve: bool) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        call = self.get_object(request, unquote(object_id))
        self._decide(request, call, approve=approve)
        back = request.POST.get("next") or reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[call.pk]
        )
        return HttpResponseRedirect(back if back.startswith("/admin/") else "/admin/")


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user
