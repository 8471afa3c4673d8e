"""The admin's forms write through the services, show the services' messages, and never show a header value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from core.errors import ValidationError
from mcp_servers.models import (
    AccessMode,
    McpServer,
    McpServerClientCredentials,
    McpServerHeader,
    McpServerOAuth,
    McpTool,
    SyncStatus,
)
from mcp_servers.validation import HeaderInput, validate_display_name, validate_headers, validate_server_url
from organizations.models import Organization
from tests.admin.conftest import SECRET
from tests.admin.helpers import add_url, change_url, changelist_url, form_data, row_prefix, tool_change_url

pytestmark = pytest.mark.django_db

OTHER_SECRET = "sk-live-second-secret-0b9d"


@pytest.fixture(autouse=True)
def _no_sync_wait(settings: Any) -> None:
    # Inside a test transaction a queued sync never runs; the admin must not wait for it.
    settings.MCP_SYNC_WAIT_SECONDS = 0


def service_message(check: Callable[[], Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        check()
    return caught.value.message


def add_form(client: Client, organization: Organization, **fields: Any) -> dict[str, Any]:
    data = form_data(client.get(add_url()))
    data.update(
        organization=str(organization.pk),
        display_name="Weather tools",
        server_url="https://mcp.example.com/mcp",
        everyone_in_organization_can_access="on",
    )
    data.update(fields)
    return data


def with_header_rows(data: dict[str, Any], rows: list[tuple[str, str]]) -> dict[str, Any]:
    data = {k: v for k, v in data.items() if not k.startswith("headers-")}
    data.update({"headers-TOTAL_FORMS": str(len(rows)), "headers-INITIAL_FORMS": "0"})
    data.update({"headers-MIN_NUM_FORMS": "0", "headers-MAX_NUM_FORMS": "32"})
    for index, (key, value) in enumerate(rows):
        data[f"headers-{index}-key"] = key
        data[f"headers-{index}-new_value"] = value
    return data


def stored_value(server: McpServer, key: str) -> str:
    return McpServerHeader.objects.get(server=server, key=key).value


def assert_no_secret(*responses: Any) -> None:
    for response in responses:
        body = response.content.decode()
        assert SECRET not in body
        assert OTHER_SECRET not in body


def test_add_goes_through_the_service(
    acme: Organization, acme_admin: Any, as_user: Callable[[Any], Client], django_capture_on_commit_callbacks: Any
) -> None:
    client = as_user(acme_admin)
    data = with_header_rows(add_form(client, acme, display_name="  Weather tools  "), [("X-Api-Key", SECRET)])
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(add_url(), data)
    server = McpServer.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change_url(server)
    assert len(queued) == 1  # the first sync, after commit
    assert server.display_name == "Weather tools"  # trimmed by the service
    assert server.server_label == "weather_tools"
    assert server.created_by == acme_admin
    assert server.last_sync_status == SyncStatus.PENDING
    assert stored_value(server, "X-Api-Key") == SECRET
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT value FROM {McpServerHeader._meta.db_table}")  # noqa: S608
        (raw,) = cursor.fetchone()
    assert SECRET not in str(raw)  # encrypted at rest
    acme.refresh_from_db()
    assert acme.trial_started_at is not None  # the trial starts with the first server

    page = client.get(change_url(server))
    assert page.status_code == 200
    assert "X-Api-Key" in page.content.decode()
    assert_no_secret(page)


@pytest.mark.parametrize(
    ("fields", "field", "expected"),
    [
        ({"server_url": "http://10.0.0.1/mcp"}, "server_url", lambda: validate_server_url("http://10.0.0.1/mcp")),
        ({"server_url": "ftp://mcp.example.com"}, "server_url", lambda: validate_server_url("ftp://mcp.example.com")),
        ({"server_url": ""}, "server_url", lambda: validate_server_url("")),
        ({"display_name": "   "}, "display_name", lambda: validate_display_name("   ")),
        ({"display_name": "x" * 121}, "display_name", lambda: validate_display_name("x" * 121)),
    ],
)
def test_add_shows_the_services_message_on_the_field(
    fields: dict[str, str],
    field: str,
    expected: Callable[[], Any],
    acme: Organization,
    acme_admin: Any,
    as_user: Callable[[Any], Client],
) -> None:
    client = as_user(acme_admin)
    data = with_header_rows(add_form(client, acme, **fields), [("X-Api-Key", SECRET)])
    response = client.post(add_url(), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [service_message(expected)]
    assert not McpServer.objects.exists()
    acme.refresh_from_db()
    assert acme.trial_started_at is None
    assert_no_secret(response)  # the typed value is not sent back


@pytest.mark.parametrize(
    ("rows", "row", "part", "expected"),
    [
        (
            [("Host", "x")],
            0,
            "key",
            lambda: validate_headers([HeaderInput("Host", "x")]),
        ),
        (
            [("X-One", SECRET), ("x-one", "b")],
            1,
            "key",
            lambda: validate_headers([HeaderInput("X-One", "a"), HeaderInput("x-one", "b")]),
        ),
        (
            [("X-Ok", "fine"), ("X-Bad", "a\r\nInjected: yes")],
            1,
            "new_value",
            lambda: validate_headers([HeaderInput("X-Ok", "fine"), HeaderInput("X-Bad", "a\r\nx")]),
        ),
        (
            [("", SECRET)],
            0,
            "key",
            lambda: validate_headers([HeaderInput("", "v")]),
        ),
    ],
)
def test_add_shows_header_messages_on_their_row(
    rows: list[tuple[str, str]],
    row: int,
    part: str,
    expected: Callable[[], Any],
    acme: Organization,
    acme_admin: Any,
    as_user: Callable[[Any], Client],
) -> None:
    client = as_user(acme_admin)
    response = client.post(add_url(), with_header_rows(add_form(client, acme), rows))
    assert response.status_code == 200
    headers = next(i.formset for i in response.context["inline_admin_formsets"] if i.formset.prefix == "headers")
    assert headers.forms[row].errors[part] == [service_message(expected)]
    assert not McpServer.objects.exists()
    assert_no_secret(response)


def test_too_many_headers_is_a_message_above_the_rows(
    acme: Organization, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    rows = [(f"X-H{i}", "v") for i in range(33)]
    data = with_header_rows(add_form(client, acme), rows)
    data["headers-MAX_NUM_FORMS"] = "40"
    response = client.post(add_url(), data)
    assert response.status_code == 200
    headers = next(i.formset for i in response.context["inline_admin_formsets"] if i.formset.prefix == "headers")
    expected = service_message(lambda: validate_headers([HeaderInput(k, v) for k, v in rows]))
    assert headers.non_form_errors() == [f"headers: {expected}"]
    assert not McpServer.objects.exists()


def test_a_new_row_named_like_a_stored_header_is_a_duplicate(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    data = form_data(page)
    total = int(data["headers-TOTAL_FORMS"])
    data["headers-TOTAL_FORMS"] = str(total + 1)
    data[f"headers-{total}-key"] = "x-api-key"
    data[f"headers-{total}-new_value"] = "sk-other"
    response = client.post(change_url(server_with_headers), data)
    assert response.status_code == 200
    headers = next(i.formset for i in response.context["inline_admin_formsets"] if i.formset.prefix == "headers")
    expected = service_message(lambda: validate_headers([HeaderInput("X-Api-Key", ""), HeaderInput("x-api-key", "")]))
    assert headers.forms[total].errors["key"] == [expected]
    assert stored_value(server_with_headers, "X-Api-Key") == SECRET

    # Removing the stored one in the same save makes the new row a replacement.
    data[f"{header_prefix(page, 'X-Api-Key')}-DELETE"] = "on"
    assert client.post(change_url(server_with_headers), data).status_code == 302
    assert dict(McpServerHeader.objects.filter(server=server_with_headers).values_list("key", "value")) == {
        "X-Tenant": OTHER_SECRET,
        "x-api-key": "sk-other",
    }


@pytest.fixture
def server_with_headers(acme: Organization, server_factory: Callable[..., McpServer]) -> McpServer:
    return server_factory(
        acme, headers=[("X-Api-Key", SECRET), ("X-Tenant", OTHER_SECRET)], tools=["get_weather", "set_alarm"]
    )


def header_prefix(page: Any, key: str) -> str:
    return row_prefix(page, "headers", lambda header: header.key == key)


def test_change_page_lists_header_names_and_never_their_values(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    html = page.content.decode()
    assert "X-Api-Key" in html
    assert "X-Tenant" in html
    assert 'type="password"' in html
    assert_no_secret(
        page,
        client.get(changelist_url()),
        client.get(reverse("admin:mcp_servers_mcpserver_delete", args=[server_with_headers.pk])),
        client.get(reverse("admin:mcp_servers_mcpserver_history", args=[server_with_headers.pk])),
        client.get(add_url()),
    )


def test_a_blank_masked_value_keeps_the_secret(
    server_with_headers: McpServer,
    acme_admin: Any,
    as_user: Callable[[Any], Client],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    data = form_data(page)
    for key in ("X-Api-Key", "X-Tenant"):
        data[f"{header_prefix(page, key)}-new_value"] = ""  # what a browser sends for the masked, untouched inputs
    data["display_name"] = "Weather tools (prod)"
    data["_continue"] = "1"
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(change_url(server_with_headers), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert queued == []  # no header or URL changed: no re-sync
    server_with_headers.refresh_from_db()
    assert server_with_headers.display_name == "Weather tools (prod)"
    assert server_with_headers.server_label == "weather_tools"  # never changes
    assert stored_value(server_with_headers, "X-Api-Key") == SECRET
    assert stored_value(server_with_headers, "X-Tenant") == OTHER_SECRET


def test_a_typed_value_replaces_the_secret_and_resyncs(
    server_with_headers: McpServer,
    acme_admin: Any,
    as_user: Callable[[Any], Client],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    data = form_data(page)
    data[f"{header_prefix(page, 'X-Api-Key')}-new_value"] = "sk-rotated"
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(change_url(server_with_headers), data)
    assert response.status_code == 302
    assert len(queued) == 1  # new headers: a re-sync
    assert stored_value(server_with_headers, "X-Api-Key") == "sk-rotated"
    assert stored_value(server_with_headers, "X-Tenant") == OTHER_SECRET


def test_headers_can_be_removed_and_added_on_the_change_page(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    data = form_data(page)
    data[f"{header_prefix(page, 'X-Tenant')}-DELETE"] = "on"
    total = int(data["headers-TOTAL_FORMS"])
    data["headers-TOTAL_FORMS"] = str(total + 1)
    data[f"headers-{total}-key"] = "X-Region"
    data[f"headers-{total}-new_value"] = "eu-west"
    response = client.post(change_url(server_with_headers), data)
    assert response.status_code == 302
    assert dict(McpServerHeader.objects.filter(server=server_with_headers).values_list("key", "value")) == {
        "X-Api-Key": SECRET,
        "X-Region": "eu-west",
    }


def test_a_new_header_with_a_stored_name_is_refused_with_the_services_message(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    data = form_data(page)
    total = int(data["headers-TOTAL_FORMS"])
    data["headers-TOTAL_FORMS"] = str(total + 1)
    data[f"headers-{total}-key"] = "Content-Type"
    data[f"headers-{total}-new_value"] = "text/plain"
    response = client.post(change_url(server_with_headers), data)
    assert response.status_code == 200
    headers = next(i.formset for i in response.context["inline_admin_formsets"] if i.formset.prefix == "headers")
    expected = service_message(lambda: validate_headers([HeaderInput("Content-Type", "x")], field_name="setHeaders"))
    assert headers.forms[total].errors["key"] == [expected]
    assert stored_value(server_with_headers, "X-Api-Key") == SECRET
    assert_no_secret(response)


def test_a_refused_url_change_keeps_everything(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    data = form_data(page)
    data["server_url"] = "http://169.254.169.254/latest"
    data[f"{header_prefix(page, 'X-Api-Key')}-new_value"] = "sk-should-not-land"
    response = client.post(change_url(server_with_headers), data)
    assert response.status_code == 200
    expected = service_message(lambda: validate_server_url("http://169.254.169.254/latest"))
    assert response.context["adminform"].form.errors["server_url"] == [expected]
    server_with_headers.refresh_from_db()
    assert server_with_headers.server_url == "https://mcp.example.com/mcp"
    assert stored_value(server_with_headers, "X-Api-Key") == SECRET
    assert "sk-should-not-land" not in response.content.decode()


def test_access_mode_is_decided_through_the_service(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    tool = server_with_headers.tools.get(name="set_alarm")
    McpTool.objects.filter(pk=tool.pk).update(definition_hash="changed")  # the server changed it since review
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    assert "Changed" in page.content.decode()
    data = form_data(page)
    data[f"{row_prefix(page, 'tools', lambda t: t.name == 'set_alarm')}-access_mode"] = AccessMode.BLOCKED
    response = client.post(change_url(server_with_headers), data)
    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.access_mode == AccessMode.BLOCKED
    assert tool.reviewed_definition_hash == "changed"  # deciding reviews the current definition
    untouched = server_with_headers.tools.get(name="get_weather")
    assert untouched.access_mode == AccessMode.ALWAYS_ALLOW


def test_a_changed_definition_can_be_approved_without_changing_the_mode(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    tool = server_with_headers.tools.get(name="set_alarm")
    McpTool.objects.filter(pk=tool.pk).update(definition_hash="changed")
    client = as_user(acme_admin)
    page = client.get(change_url(server_with_headers))
    data = form_data(page)
    data[f"{row_prefix(page, 'tools', lambda t: t.name == 'set_alarm')}-mark_reviewed"] = "on"
    assert client.post(change_url(server_with_headers), data).status_code == 302
    tool.refresh_from_db()
    assert tool.access_mode == AccessMode.NEEDS_APPROVAL
    assert tool.reviewed_definition_hash == "changed"


def test_tool_page_sets_the_access_mode_through_the_service(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    tool = server_with_headers.tools.get(name="get_weather")
    client = as_user(acme_admin)
    page = client.get(tool_change_url(tool))
    assert page.status_code == 200
    response = client.post(tool_change_url(tool), {"access_mode": AccessMode.NEEDS_APPROVAL})
    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.access_mode == AccessMode.NEEDS_APPROVAL
    assert reverse("admin:mcp_servers_mcptool_add").endswith("/add/")
    assert client.get(reverse("admin:mcp_servers_mcptool_add")).status_code == 403


def test_sync_button_queues_a_sync(
    server_with_headers: McpServer,
    acme_admin: Any,
    as_user: Callable[[Any], Client],
    django_capture_on_commit_callbacks: Any,
) -> None:
    McpServer.objects.filter(pk=server_with_headers.pk).update(last_sync_status=SyncStatus.SUCCESS)
    client = as_user(acme_admin)
    url = reverse("admin:mcp_servers_mcpserver_sync", args=[server_with_headers.pk])
    assert client.get(url).status_code == 405
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == change_url(server_with_headers)
    assert len(queued) == 1
    server_with_headers.refresh_from_db()
    assert server_with_headers.last_sync_status == SyncStatus.PENDING


def test_reauthorize_action_still_works(
    server_with_headers: McpServer,
    acme_admin: Any,
    as_user: Callable[[Any], Client],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = as_user(acme_admin)
    action = {"action": "reauthorize", "_selected_action": [str(server_with_headers.pk)]}
    refused = client.post(changelist_url(), action, follow=True)
    assert "has not asked for OAuth authorization" in refused.content.decode()

    McpServerOAuth.objects.create(
        server=server_with_headers,
        issuer="https://auth.example.com",
        authorization_endpoint="https://auth.example.com/authorize",
        token_endpoint="https://auth.example.com/token",
        resource="https://mcp.example.com/mcp",
        client_source="DYNAMIC_REGISTRATION",
        client_id="client-1",
    )
    with django_capture_on_commit_callbacks() as queued:
        accepted = client.post(changelist_url(), action, follow=True)
    assert "Asked for a fresh authorization URL for 1 server(s)." in accepted.content.decode()
    assert len(queued) == 1
    # The change page offers it too, and shows the Authorize button once there is a URL.
    McpServer.objects.filter(pk=server_with_headers.pk).update(
        requires_auth=True, auth_url="https://auth.example.com/authorize?state=abc"
    )
    page = client.get(change_url(server_with_headers)).content.decode()
    assert "Re-authorize" in page
    assert 'href="https://auth.example.com/authorize?state=abc" target="_blank" rel="noopener noreferrer"' in page


def test_an_auth_url_that_is_not_http_is_not_a_link(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    McpServer.objects.filter(pk=server_with_headers.pk).update(requires_auth=True, auth_url="javascript:alert(1)")
    page = as_user(acme_admin).get(change_url(server_with_headers)).content.decode()
    assert "javascript:alert(1)" not in page


def test_delete_goes_through_the_service(
    server_with_headers: McpServer, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    url = reverse("admin:mcp_servers_mcpserver_delete", args=[server_with_headers.pk])
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert confirm.context["perms_lacking"] == set()
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not McpServer.objects.exists()
    assert not McpServerHeader.objects.exists()
    assert not McpTool.objects.exists()


# --- OAuth client credentials --------------------------------------------------------------------------------------


def test_client_credentials_are_added_write_only_and_removed(
    acme: Organization, acme_admin: Any, as_user: Callable[[Any], Client], django_capture_on_commit_callbacks: Any
) -> None:
    client = as_user(acme_admin)
    data = add_form(client, acme, oauth_client_id="m2m-client", oauth_client_secret=SECRET)
    response = client.post(add_url(), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    server = McpServer.objects.get()
    configured = McpServerClientCredentials.objects.get(server=server)
    assert (configured.client_id, configured.client_secret, configured.auth_method) == (
        "m2m-client",
        SECRET,
        "client_secret_basic",
    )

    page = client.get(change_url(server))
    html = page.content.decode()
    assert "m2m-client" in html
    assert "client_secret_basic" in html
    assert_no_secret(page)

    # Saving with the credential inputs left blank keeps them; the remove box removes them and re-syncs.
    untouched = form_data(page)
    untouched["_continue"] = "1"
    assert client.post(change_url(server), untouched).status_code == 302
    assert McpServerClientCredentials.objects.filter(server=server).exists()
    removing = form_data(client.get(change_url(server)))
    removing["oauth_remove_client_credentials"] = "on"
    with django_capture_on_commit_callbacks() as queued:
        assert client.post(change_url(server), removing).status_code == 302
    assert not McpServerClientCredentials.objects.filter(server=server).exists()
    assert len(queued) == 1


def test_incomplete_client_credentials_get_the_services_message_on_the_field(
    acme: Organization, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    response = client.post(add_url(), add_form(client, acme, oauth_client_id="m2m-client"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "exactly one of clientSecret and privateKey" in str(errors["oauth_client_id"])
    assert not McpServer.objects.exists()
