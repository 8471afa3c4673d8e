"""A server's tools on its change page, a page at a time: search and filters over all of them (`tools_*` in the
query string), a pager, and the rows a submitted page had."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest

from mcp_servers.admin.forms import ACCESS_MODE_CHOICES
from mcp_servers.models import AccessMode, McpTool

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


def posted_tool_ids(request: HttpRequest) -> list[uuid.UUID]:
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
