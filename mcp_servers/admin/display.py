"""How the admin shows a server's and a tool's state: badges, relative times, a safe authorization link, who may use
a server and why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from mcp_servers.admin.forms import ACCESS_MODE_CHOICES
from mcp_servers.models import McpServer, McpTool, SetupState, SyncStatus, TransportType
from mcp_servers.selectors import ServerUser

TONES = {
    SetupState.CONNECTED: "ok",
    SetupState.INCOMPLETE: "warn",
    SetupState.BROKEN: "bad",
    SyncStatus.SUCCESS: "ok",
    SyncStatus.PENDING: "info",
    SyncStatus.FAILED: "bad",
    SyncStatus.NEVER_SYNCED: "muted",
}
SYNC_LABELS = {
    SyncStatus.SUCCESS: "Synced",
    SyncStatus.PENDING: "Syncing…",
    SyncStatus.FAILED: "Failed",
    SyncStatus.NEVER_SYNCED: "Never synced",
}
ACCESS_TONES = {"ALWAYS_ALLOW": "ok", "NEEDS_APPROVAL": "warn", "BLOCKED": "bad"}
TRANSPORT_LABELS = {TransportType.STREAMABLE_HTTP: "Streamable HTTP", TransportType.SSE: "SSE (legacy)"}


def badge(tone: str, label: str, title: str = "") -> SafeString:
    return format_html('<span class="mcp-badge mcp-badge--{}" title="{}">{}</span>', tone, title, label)


def setup_badge(server: McpServer) -> SafeString:
    label = "Needs authorization" if server.requires_auth else server.get_setup_state_display()
    return badge(TONES.get(SetupState(server.setup_state), "muted"), label)


def sync_badge(server: McpServer) -> SafeString:
    status = SyncStatus(server.last_sync_status)
    return badge(TONES.get(status, "muted"), SYNC_LABELS.get(status, status.label))


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


def read_only_badge(tool: McpTool) -> SafeString:
    if tool.read_only_hint is None:
        return badge("muted", "Not given", "The server did not say whether this tool only reads.")
    return badge("ok", "Read-only") if tool.read_only_hint else badge("warn", "May write")


def found_badge(tool: McpTool) -> SafeString:
    if tool.found_in_server:
        return badge("ok", "Listed")
    return badge("muted", "Gone", "The server no longer lists this tool; its access mode is kept.")


def definition_badge(tool: McpTool) -> SafeString:
    if tool.definition_changed_since_review:
        return badge("warn", "Changed", "The server changed this tool since its access mode was decided.")
    return badge("muted", "Reviewed")


def access_badge(tool: McpTool) -> SafeString:
    label = dict(ACCESS_MODE_CHOICES).get(tool.access_mode, tool.access_mode)
    return badge(ACCESS_TONES.get(tool.access_mode, "muted"), label)


class TitledAdmin(admin.ModelAdmin):
    """Page titles in the product's words instead of Django's "Select MCP server to change"."""

    list_title: ClassVar[str]
    add_title: ClassVar[str]
    change_title: ClassVar[str]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": self.list_title, **(extra_context or {})})

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        context["title"] = self.add_title if add else self.change_title
        return super().render_change_form(request, context, add, change, form_url, obj)


def _reasons(user: ServerUser) -> str:
    reasons = []
    if user.admin:
        reasons.append("an organization admin")
    if user.direct:
        reasons.append("granted directly")
    if user.groups:
        label = "group" if len(user.groups) == 1 else "groups"
        reasons.append(f"through {label} " + ", ".join(f"“{name}”" for name in user.groups))
    return "; ".join(reasons)


def who_may_use_table(server: McpServer, users: Sequence[ServerUser]) -> SafeString:
    """Who may use a server, and why (`selectors.mcp_server_users`)."""
    if server.everyone_in_organization_can_access:
        count = len(users)
        return format_html("Everyone in the organization ({} member{}).", count, "" if count == 1 else "s")
    if not users:
        return format_html("{}", "No one: no admin, no grant.")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td></tr>",
        ((user.email or f"user {user.user_id}", _reasons(user)) for user in users),
    )
    return format_html(
        '<table class="mcp-who"><thead><tr><th>Member</th><th>Why</th></tr></thead><tbody>{}</tbody></table>', rows
    )
