"""Who sees what in the admin: superusers everything, organization admins their organizations, others nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from mcp_servers.models import AccessMode, McpServer, McpTool, SyncStatus
from organizations.models import Organization
from tests.admin.helpers import add_url, change_url, changelist_url, form_data, row_prefix, tool_change_url

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_sync_wait(settings: Any) -> None:
    # Inside a test transaction a queued sync never runs; the admin must not wait for it.
    settings.MCP_SYNC_WAIT_SECONDS = 0


@pytest.fixture
def two_orgs(
    acme: Organization, globex: Organization, server_factory: Callable[..., McpServer]
) -> tuple[McpServer, McpServer]:
    return (
        server_factory(acme, "Acme weather", tools=["get_weather", "set_alarm"]),
        server_factory(globex, "Globex ledger", tools=["post_entry"]),
    )


def _listed(client: Client) -> set[str]:
    response = client.get(changelist_url())
    assert response.status_code == 200
    return {server.display_name for server in response.context["cl"].result_list}


def test_superuser_sees_every_organizations_servers(
    superuser: Any, two_orgs: tuple[McpServer, McpServer], as_user: Callable[[Any], Client]
) -> None:
    client = as_user(superuser)
    assert _listed(client) == {"Acme weather", "Globex ledger"}
    for server in two_orgs:
        assert client.get(change_url(server)).status_code == 200


def test_org_admin_sees_and_changes_only_their_organizations_servers(
    acme_admin: Any, two_orgs: tuple[McpServer, McpServer], as_user: Callable[[Any], Client]
) -> None:
    own, other = two_orgs
    client = as_user(acme_admin)
    assert _listed(client) == {"Acme weather"}
    assert client.get(change_url(own)).status_code == 200

    # Another organization's server does not exist for them, whatever the page or the method.
    for url in (
        change_url(other),
        reverse("admin:mcp_servers_mcpserver_delete", args=[other.pk]),
        reverse("admin:mcp_servers_mcpserver_history", args=[other.pk]),
    ):
        assert client.get(url).status_code == 404, url
        assert client.post(url, {}).status_code == 404, url
    assert client.post(reverse("admin:mcp_servers_mcpserver_sync", args=[other.pk])).status_code == 404
    assert client.post(reverse("admin:mcp_servers_mcpserver_reauthorize", args=[other.pk])).status_code == 404
    other.refresh_from_db()
    assert other.display_name == "Globex ledger"

    # Its tools neither.
    tools = client.get(reverse("admin:mcp_servers_mcptool_changelist"))
    assert {tool.name for tool in tools.context["cl"].result_list} == {"get_weather", "set_alarm"}
    assert client.get(tool_change_url(other.tools.get())).status_code == 404

    # Nor do the other organization's name and server appear anywhere on the list page.
    page = client.get(changelist_url()).content.decode()
    assert "Globex" not in page


def test_org_admin_actions_only_reach_their_own_servers(
    acme_admin: Any, two_orgs: tuple[McpServer, McpServer], as_user: Callable[[Any], Client]
) -> None:
    own, other = two_orgs
    McpServer.objects.filter(pk__in=[own.pk, other.pk]).update(last_sync_status=SyncStatus.SUCCESS)
    client = as_user(acme_admin)
    response = client.post(
        changelist_url(), {"action": "sync_now", "_selected_action": [str(own.pk), str(other.pk)]}, follow=True
    )
    assert response.status_code == 200
    assert McpServer.objects.get(pk=own.pk).last_sync_status == SyncStatus.PENDING
    assert McpServer.objects.get(pk=other.pk).last_sync_status == SyncStatus.SUCCESS


@pytest.mark.parametrize("who", ["acme_member", "staff_without_membership"])
def test_staff_who_administer_no_organization_see_nothing(
    who: str, request: pytest.FixtureRequest, two_orgs: tuple[McpServer, McpServer], as_user: Callable[[Any], Client]
) -> None:
    own, _ = two_orgs
    client = as_user(request.getfixturevalue(who))
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert index.context["app_list"] == []
    assert b"MCP" not in index.content
    assert b"mcp_servers" not in index.content
    assert client.get(reverse("admin:app_list", args=["mcp_servers"])).status_code == 404
    assert client.get(changelist_url()).status_code == 403
    assert client.get(add_url()).status_code == 403
    assert client.post(add_url(), {}).status_code == 403
    assert client.get(change_url(own)).status_code in {403, 404}
    assert client.post(change_url(own), {}).status_code in {403, 404}
    assert client.get(reverse("admin:mcp_servers_mcptool_changelist")).status_code == 403
    assert client.get(tool_change_url(own.tools.first())).status_code in {403, 404}
    assert client.get(reverse("admin:organizations_organization_changelist")).status_code == 403


def test_org_choices_are_the_organizations_the_user_administers(
    acme: Organization, globex: Organization, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    response = client.get(add_url())
    field = response.context["adminform"].form.fields["organization"]
    assert list(field.queryset) == [acme]
    assert response.context["adminform"].form.initial["organization"] == str(acme.pk)
    assert "Globex" not in response.content.decode()

    # Posting another organization's id is refused by the field, and nothing is created.
    data = form_data(response)
    data.update(organization=str(globex.pk), display_name="Sneaky", server_url="https://mcp.example.com/mcp")
    refused = client.post(add_url(), data)
    assert refused.status_code == 200
    assert "organization" in refused.context["adminform"].form.errors
    assert not McpServer.objects.exists()


def test_superuser_may_choose_any_organization(
    acme: Organization, globex: Organization, superuser: Any, as_user: Callable[[Any], Client]
) -> None:
    response = as_user(superuser).get(add_url())
    assert set(response.context["adminform"].form.fields["organization"].queryset) == {acme, globex}


def test_tool_rows_of_another_server_cannot_be_smuggled_into_a_change(
    acme_admin: Any, two_orgs: tuple[McpServer, McpServer], as_user: Callable[[Any], Client]
) -> None:
    own, other = two_orgs
    client = as_user(acme_admin)
    page = client.get(change_url(own))
    data = form_data(page)
    prefix = row_prefix(page, "tools", lambda tool: tool.name == "get_weather")
    foreign = other.tools.get()
    data[f"{prefix}-id"] = str(foreign.pk)
    data[f"{prefix}-access_mode"] = AccessMode.BLOCKED
    response = client.post(change_url(own), data)
    assert response.status_code == 200  # the form again, with an error
    assert McpTool.objects.get(pk=foreign.pk).access_mode == AccessMode.ALWAYS_ALLOW


def test_organization_admin_page_is_scoped_and_read_only(
    acme: Organization, globex: Organization, acme_admin: Any, superuser: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    listing = client.get(reverse("admin:organizations_organization_changelist"))
    assert list(listing.context["cl"].result_list) == [acme]
    page = client.get(reverse("admin:organizations_organization_change", args=[acme.pk]))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert (
        client.post(reverse("admin:organizations_organization_change", args=[acme.pk]), {"name": "X"}).status_code
        == 403
    )
    assert client.get(reverse("admin:organizations_organization_change", args=[globex.pk])).status_code in {302, 404}
    assert client.get(reverse("admin:organizations_organization_add")).status_code == 403

    root = as_user(superuser)
    assert set(root.get(reverse("admin:organizations_organization_changelist")).context["cl"].result_list) == {
        acme,
        globex,
    }


def test_list_page_counts_tools_without_a_query_per_row(
    acme: Organization,
    acme_admin: Any,
    server_factory: Callable[..., McpServer],
    as_user: Callable[[Any], Client],
    django_assert_max_num_queries: Any,
) -> None:
    client = as_user(acme_admin)
    server_factory(acme, "First", tools=["a", "b"])
    client.get(changelist_url())  # warm the session and content types
    with django_assert_max_num_queries(30) as one:
        client.get(changelist_url())
    for index in range(8):
        server_factory(acme, f"More {index}", tools=["a", "b", "c"])
    with django_assert_max_num_queries(len(one.captured_queries)) as many:
        response = client.get(changelist_url())
    assert len(many.captured_queries) == len(one.captured_queries)
    rows = {server.display_name: server.tool_count for server in response.context["cl"].result_list}
    assert rows["First"] == 2
    assert rows["More 3"] == 3


def test_list_page_searches_and_filters(
    acme: Organization, acme_admin: Any, server_factory: Callable[..., McpServer], as_user: Callable[[Any], Client]
) -> None:
    weather = server_factory(acme, "Weather tools")
    server_factory(acme, "Ledger")
    McpServer.objects.filter(pk=weather.pk).update(setup_state="CONNECTED", last_sync_status="SUCCESS")
    client = as_user(acme_admin)

    def names(query: str) -> set[str]:
        return {s.display_name for s in client.get(changelist_url() + query).context["cl"].result_list}

    assert names("?q=weather") == {"Weather tools"}
    assert names("?q=ledger") == {"Ledger"}  # the label
    assert names("?q=mcp.example.com") == {"Weather tools", "Ledger"}  # the URL
    assert names("?setup_state__exact=CONNECTED") == {"Weather tools"}
    assert names("?last_sync_status__exact=PENDING") == {"Ledger"}
    assert names(f"?organization__id__exact={acme.pk}") == {"Weather tools", "Ledger"}


def test_every_page_renders_for_a_superuser_and_an_org_admin(
    superuser: Any, acme_admin: Any, two_orgs: tuple[McpServer, McpServer], as_user: Callable[[Any], Client]
) -> None:
    own, _ = two_orgs
    tool = own.tools.first()
    assert tool is not None
    pages = [
        reverse("admin:index"),
        reverse("admin:app_list", args=["mcp_servers"]),
        changelist_url(),
        add_url(),
        change_url(own),
        reverse("admin:mcp_servers_mcpserver_delete", args=[own.pk]),
        reverse("admin:mcp_servers_mcpserver_history", args=[own.pk]),
        reverse("admin:mcp_servers_mcptool_changelist"),
        tool_change_url(tool),
        reverse("admin:organizations_organization_changelist"),
        reverse("admin:organizations_organization_change", args=[own.organization_id]),
    ]
    for user in (superuser, acme_admin):
        client = as_user(user)
        for url in pages:
            assert client.get(url).status_code == 200, (user.username, url)
    index = as_user(acme_admin).get(reverse("admin:index"))
    assert [app["app_label"] for app in index.context["app_list"]] == ["mcp_servers", "organizations"]
    assert as_user(superuser).get(reverse("admin:organizations_organization_add")).status_code == 200
