"""Reading the admin's change form back into POST data, as a browser would send it."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from mcp_servers.models import McpServer, McpTool


def changelist_url() -> str:
    return reverse("admin:mcp_servers_mcpserver_changelist")


def add_url() -> str:
    return reverse("admin:mcp_servers_mcpserver_add")


def change_url(server: McpServer) -> str:
    return reverse("admin:mcp_servers_mcpserver_change", args=[server.pk])


def tool_change_url(tool: McpTool) -> str:
    return reverse("admin:mcp_servers_mcptool_change", args=[tool.pk])


def _put(data: dict[str, Any], name: str, value: Any) -> None:
    if value is None or value is False:
        return
    if value is True:
        data[name] = "on"
    elif isinstance(value, list | tuple):
        data[name] = [str(v) for v in value]
    else:
        data[name] = str(value)


def form_data(response: Any) -> dict[str, Any]:
    """The POST body the change form in `response` submits untouched (disabled fields are not sent)."""
    data: dict[str, Any] = {}
    form = response.context["adminform"].form
    for name, field in form.fields.items():
        if not field.disabled:
            _put(data, form.add_prefix(name), form[name].value())
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = str(management[name].value())
        for row in formset.forms:
            for name, field in row.fields.items():
                if not field.disabled:
                    _put(data, row.add_prefix(name), row[name].value())
    return data


def row_prefix(response: Any, inline_prefix: str, match: Any) -> str:
    """The form prefix of the inline row whose instance satisfies `match`."""
    for inline in response.context["inline_admin_formsets"]:
        if inline.formset.prefix != inline_prefix:
            continue
        for row in inline.formset.forms:
            if row.instance.pk is not None and match(row.instance):
                return str(row.prefix)
    raise AssertionError(f"no {inline_prefix} row matches")
