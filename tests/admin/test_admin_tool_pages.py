"""A server's tools on its change page: a page at a time, searchable and filterable, whatever the number of tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from mcp_servers.admin.tool_pages import TOOLS_PER_PAGE
from mcp_servers.models import AccessMode, McpServer, McpTool
from organizations.models import Organization
from tests.admin.helpers import change_url, form_data, row_prefix

pytestmark = pytest.mark.django_db

TOOL_COUNT = 260


@pytest.fixture(autouse=True)
def _no_sync_wait(settings: Any) -> None:
    settings.MCP_SYNC_WAIT_SECONDS = 0


@pytest.fixture
def big_server(acme: Organization, server_factory: Callable[..., McpServer]) -> McpServer:
    """260 tools, `tool_000` to `tool_259`: even ones ALWAYS_ALLOW, odd ones NEEDS_APPROVAL; the last ten gone."""
    server = server_factory(acme, "Everything", tools=[f"tool_{n:03d}" for n in range(TOOL_COUNT)])
    McpTool.objects.filter(server=server, name__gte="tool_250").update(found_in_server=False)
    return server


def shown(response: Any) -> list[str]:
    inline = next(i for i in response.context["inline_admin_formsets"] if i.formset.prefix == "tools")
    return [row.instance.name for row in inline.formset.forms]


def test_the_change_page_shows_one_page_of_tools_with_a_pager(
    big_server: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    first = client.get(change_url(big_server))
    assert first.status_code == 200
    assert shown(first) == [f"tool_{n:03d}" for n in range(TOOLS_PER_PAGE)]
    html = first.content.decode()
    assert f"1–{TOOLS_PER_PAGE} of {TOOL_COUNT} tools" in html
    assert 'data-mcp="tools-pager"' in html
    assert "?tools_page=2" in html

    # Listed tools first, by name; the gone ones come last.
    last = client.get(change_url(big_server) + "?tools_page=6")
    assert shown(last) == [f"tool_{n:03d}" for n in range(5 * TOOLS_PER_PAGE, TOOL_COUNT)]
    assert [name for name in shown(last) if name >= "tool_250"] == [f"tool_{n}" for n in range(250, 260)]

    # Out of range and malformed page numbers land on a real page rather than an error.
    assert shown(client.get(change_url(big_server) + "?tools_page=99")) == shown(last)
    assert shown(client.get(change_url(big_server) + "?tools_page=zero")) == shown(first)


def test_search_and_filters_narrow_the_tools(
    big_server: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    url = change_url(big_server)
    assert shown(client.get(url + "?tools_q=tool_12")) == [f"tool_{n}" for n in range(120, 130)]
    assert shown(client.get(url + "?tools_q=DOES+TOOL_007")) == ["tool_007"]  # descriptions, any case

    approval = client.get(url + "?tools_mode=NEEDS_APPROVAL")
    assert all(int(name[-3:]) % 2 == 1 for name in shown(approval))
    assert f"of {TOOL_COUNT // 2} tools matching" in approval.content.decode()

    gone = client.get(url + "?tools_listed=no")
    assert shown(gone) == [f"tool_{n}" for n in range(250, 260)]
    assert shown(client.get(url + "?tools_listed=no&tools_mode=ALWAYS_ALLOW&tools_q=25")) == [
        f"tool_{n}" for n in range(250, 260, 2)
    ]

    McpTool.objects.filter(server=big_server, name__in=["tool_100", "tool_201"]).update(definition_hash="changed")
    assert shown(client.get(url + "?tools_changed=yes")) == ["tool_100", "tool_201"]

    nothing = client.get(url + "?tools_q=no-such-tool")
    assert shown(nothing) == []
    assert "No tools match." in nothing.content.decode()
    # Unknown filter values are ignored, not errors.
    assert len(shown(client.get(url + "?tools_mode=SOMETIMES&tools_listed=maybe"))) == TOOLS_PER_PAGE


def test_a_decision_on_a_later_page_is_saved_and_the_page_is_kept(
    big_server: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    url = change_url(big_server) + "?tools_page=2&tools_mode=NEEDS_APPROVAL"
    page = client.get(url)
    assert "tool_151" in shown(page)
    data = form_data(page)
    data[f"{row_prefix(page, 'tools', lambda t: t.name == 'tool_151')}-access_mode"] = AccessMode.BLOCKED
    data["_continue"] = "Save and continue editing"
    response = client.post(url, data)
    assert response.status_code == 302
    assert response.url.endswith("?tools_page=2&tools_mode=NEEDS_APPROVAL")  # the same page of tools
    assert McpTool.objects.get(server=big_server, name="tool_151").access_mode == AccessMode.BLOCKED
    # Nothing else was decided: every other tool kept its mode.
    assert McpTool.objects.filter(server=big_server, access_mode=AccessMode.BLOCKED).count() == 1


def test_a_save_matches_rows_by_id_when_the_tools_changed_meanwhile(
    big_server: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    page = client.get(change_url(big_server) + "?tools_page=2")
    data = form_data(page)
    data[f"{row_prefix(page, 'tools', lambda t: t.name == 'tool_060')}-access_mode"] = AccessMode.BLOCKED
    # A sync lists new tools that sort before this page: its rows would now belong to page 2 and 3 if matched
    # by position.
    for n in range(5):
        McpTool.objects.create(
            server=big_server, name=f"tool_00{n}a", definition_hash="h", reviewed_definition_hash="h"
        )
    assert client.post(change_url(big_server) + "?tools_page=2", data).status_code == 302
    blocked = McpTool.objects.filter(server=big_server, access_mode=AccessMode.BLOCKED)
    assert [tool.name for tool in blocked] == ["tool_060"]


def test_the_change_page_costs_the_same_queries_for_ten_or_thousands_of_tools(
    acme: Organization,
    acme_admin: Any,
    as_user: Callable[[Any], Client],
    server_factory: Callable[..., McpServer],
    django_assert_max_num_queries: Any,
) -> None:
    client = as_user(acme_admin)
    small = server_factory(acme, "Small", tools=[f"tool_{n}" for n in range(10)])
    large = server_factory(acme, "Large", tools=[f"tool_{n:04d}" for n in range(2000)])
    client.get(change_url(small))  # warm: sessions, content types
    with django_assert_max_num_queries(60) as few:
        assert client.get(change_url(small)).status_code == 200
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(change_url(large))
    assert len(shown(response)) == TOOLS_PER_PAGE
    assert len(response.content) < 200_000
