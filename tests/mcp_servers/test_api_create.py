"""POST /api/public/organizations/{orgId}/mcp-servers and GET .../{id}, against real MCP servers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from mcp_servers.models import McpServer, McpServerHeader, McpTool
from organizations.models import ApiKey, Organization
from organizations.services import api_key_revoke
from tests.conftest import Caller
from tests.contract import assert_matches_contract

VALID = {"displayName": "Acme Tools", "serverUrl": "https://mcp.example.com/mcp"}


def assert_nothing_written(organization: Organization) -> None:
    assert McpServer.objects.count() == 0
    assert McpServerHeader.objects.count() == 0
    assert McpTool.objects.count() == 0
    organization.refresh_from_db()
    assert organization.trial_started_at is None


def assert_error(response: Any, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert_matches_contract(status, body)
    assert body["error"]["title"] == title
    assert "Traceback" not in body["error"]["detail"]
    return body


@pytest.mark.django_db(transaction=True)
def test_create_connects_and_syncs_tools(admin: Caller, mcp_server_factory: Any) -> None:
    server = mcp_server_factory(tools=4)
    response = admin.client.post(
        admin.create_url(), {"displayName": "  Acme Tools  ", "serverUrl": server.url}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert_matches_contract(201, body)
    data = body["data"]
    assert data["displayName"] == "Acme Tools"
    assert data["serverUrl"] == server.url
    assert data["serverLabel"] == "acme_tools"
    assert data["setupState"] == "CONNECTED"
    assert data["lastSyncStatus"] == "SUCCESS"
    assert data["transportType"] == "STREAMABLE_HTTP"
    assert data["hasCompletedFirstSync"] is True
    assert data["syncErrorMessage"] is None
    assert data["requiresAuth"] is False
    assert data["authUrl"] is None
    assert data["lastSyncAttemptAt"]
    assert data["lastSuccessfulSyncAt"]
    tools = {tool["name"]: tool for tool in data["tools"]}
    assert sorted(tools) == ["tool_0", "tool_1", "tool_2", "tool_3"]
    assert tools["tool_0"]["readOnlyHint"] is True
    assert tools["tool_0"]["accessMode"] == "ALWAYS_ALLOW"
    assert tools["tool_1"]["readOnlyHint"] is False
    assert tools["tool_1"]["accessMode"] == "NEEDS_APPROVAL"
    assert all(tool["foundInServer"] for tool in data["tools"])

    detail = admin.client.get(f"{admin.create_url()}/{data['id']}")
    assert detail.status_code == 200
    assert_matches_contract(201, detail.json())
    assert detail.json() == body


@pytest.mark.django_db(transaction=True)
def test_create_sends_static_headers_and_never_returns_their_values(admin: Caller, mcp_server_factory: Any) -> None:
    secret = f"canary-{uuid.uuid4().hex}"
    server = mcp_server_factory(require_header=f"X-Api-Key={secret}")
    response = admin.client.post(
        admin.create_url(),
        {**VALID, "serverUrl": server.url, "headers": [{"key": "X-Api-Key", "value": secret}]},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["data"]["setupState"] == "CONNECTED"
    assert secret not in response.content.decode()
    assert "x-api-key" in server.requests()["headers"]


@pytest.mark.django_db(transaction=True)
def test_rejected_headers_are_broken_with_a_message_naming_them(admin: Caller, mcp_server_factory: Any) -> None:
    server = mcp_server_factory(require_header="X-Api-Key=right")
    response = admin.client.post(
        admin.create_url(),
        {**VALID, "serverUrl": server.url, "headers": [{"key": "X-Api-Key", "value": "wrong-value"}]},
        format="json",
    )
    data = response.json()["data"]
    assert_matches_contract(201, response.json())
    assert (data["setupState"], data["lastSyncStatus"]) == ("BROKEN", "FAILED")
    assert "header" in data["syncErrorMessage"].lower()
    assert "wrong-value" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_oauth_challenge_is_incomplete_with_an_authorization_url(
    admin: Caller, mcp_server_factory: Any, settings: Any
) -> None:
    server = mcp_server_factory(oauth_challenge=True)
    settings.MCP_OAUTH_CLIENTS = {server.base_url: {"client_id": "preregistered-client"}}
    response = admin.client.post(admin.create_url(), {**VALID, "serverUrl": server.url}, format="json")
    data = response.json()["data"]
    assert_matches_contract(201, response.json())
    assert (data["setupState"], data["lastSyncStatus"], data["requiresAuth"]) == ("INCOMPLETE", "FAILED", True)
    assert data["authUrl"].startswith(f"{server.base_url}/authorize?")
    assert "client_id=preregistered-client" in data["authUrl"]
    assert data["tools"] == []


@pytest.mark.django_db(transaction=True)
def test_unreachable_server_is_created_broken(admin: Caller, mcp_server_factory: Any) -> None:
    server = mcp_server_factory()
    server.stop()
    response = admin.client.post(admin.create_url(), {**VALID, "serverUrl": server.url}, format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    assert (data["setupState"], data["lastSyncStatus"]) == ("BROKEN", "FAILED")
    assert data["syncErrorMessage"]


def test_trial_starts_once_and_labels_stay_unique(admin: Caller, organization: Organization, settings: Any) -> None:
    # Inside the test's transaction nothing commits, so no sync runs: this is about the rows alone.
    settings.MCP_SYNC_WAIT_SECONDS = 0
    first = admin.client.post(admin.create_url(), VALID, format="json")
    assert first.status_code == 201
    organization.refresh_from_db()
    started, ends = organization.trial_started_at, organization.trial_ends_at
    assert started is not None
    assert ends is not None
    assert ends - started == timedelta(days=14)
    assert abs(timezone.now() - started) < timedelta(minutes=1)

    second = admin.client.post(admin.create_url(), VALID, format="json")
    organization.refresh_from_db()
    assert (organization.trial_started_at, organization.trial_ends_at) == (started, ends)
    assert first.json()["data"]["serverLabel"] == "acme_tools"
    assert second.json()["data"]["serverLabel"] == "acme_tools_2"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"serverUrl": "https://mcp.example.com/mcp"}, "displayName"),
        ({**VALID, "displayName": "   "}, "displayName"),
        ({**VALID, "displayName": "x" * 121}, "displayName"),
        ({**VALID, "displayName": 42}, "displayName"),
        ({**VALID, "displayName": None}, "displayName"),
        ({"displayName": "Acme"}, "serverUrl"),
        ({**VALID, "serverUrl": ""}, "serverUrl"),
        ({**VALID, "serverUrl": "https://example.com/" + "a" * 2000}, "serverUrl"),
        ({**VALID, "serverUrl": "mcp.example.com/mcp"}, "serverUrl"),
        ({**VALID, "serverUrl": "ftp://mcp.example.com/"}, "serverUrl"),
        ({**VALID, "serverUrl": "file:///etc/passwd"}, "serverUrl"),
        ({**VALID, "serverUrl": "https://user:pass@mcp.example.com/"}, "serverUrl"),
        ({**VALID, "serverUrl": "https://mcp.example.com/mcp#frag"}, "serverUrl"),
        ({**VALID, "serverUrl": "http://10.0.0.5/mcp"}, "serverUrl"),
        ({**VALID, "serverUrl": "http://169.254.169.254/latest/meta-data"}, "serverUrl"),
        ({**VALID, "serverUrl": "http://localhost:8080/mcp"}, "serverUrl"),
        ({**VALID, "serverUrl": "http://[::1]/mcp"}, "serverUrl"),
        ({**VALID, "serverUrl": "http://2130706433/mcp"}, "serverUrl"),
        ({**VALID, "serverUrl": "http://mcp.example.com:99999/"}, "serverUrl"),
        ({**VALID, "serverUrl": ["https://mcp.example.com"]}, "serverUrl"),
        ({**VALID, "headers": "X-Api-Key: 1"}, "headers"),
        ({**VALID, "headers": [{"key": "X-Api-Key"}]}, "headers[0].value"),
        ({**VALID, "headers": [{"value": "1"}]}, "headers[0].key"),
        ({**VALID, "headers": [{"key": "X-A", "value": 1}]}, "headers[0].value"),
        ({**VALID, "headers": [{"key": "Bad Name", "value": "1"}]}, "headers[0].key"),
        ({**VALID, "headers": [{"key": "", "value": "1"}]}, "headers[0].key"),
        ({**VALID, "headers": [{"key": "X-A", "value": "a\r\nInjected: 1"}]}, "headers[0].value"),
        ({**VALID, "headers": [{"key": "X-A", "value": "a\x00b"}]}, "headers[0].value"),
        ({**VALID, "headers": [{"key": "Host", "value": "evil"}]}, "headers[0].key"),
        ({**VALID, "headers": [{"key": "mcp-session-id", "value": "1"}]}, "headers[0].key"),
        ({**VALID, "headers": [{"key": "Transfer-Encoding", "value": "chunked"}]}, "headers[0].key"),
        ({**VALID, "headers": [{"key": "X-A", "value": "1"}, {"key": "x-a", "value": "2"}]}, "headers[1].key"),
        ({**VALID, "headers": [{"key": f"X-{i}", "value": "1"} for i in range(33)]}, "headers"),
        ({**VALID, "headers": [{"key": "X-A", "value": "v" * 8193}]}, "headers[0].value"),
        ({**VALID, "everyoneInOrganizationCanAccess": "yes"}, "everyoneInOrganizationCanAccess"),
        ({**VALID, "everyoneInOrganizationCanAccess": 1}, "everyoneInOrganizationCanAccess"),
    ],
)
def test_validation_errors_name_the_field_and_write_nothing(
    admin: Caller, organization: Organization, payload: dict[str, Any], field: str
) -> None:
    response = admin.client.post(admin.create_url(), payload, format="json")
    body = assert_error(response, 400, "ValidationError")
    assert body["error"]["detail"].startswith(f"{field}: "), body
    assert_nothing_written(organization)


def test_header_value_errors_do_not_echo_the_value(admin: Caller, organization: Organization) -> None:
    response = admin.client.post(
        admin.create_url(), {**VALID, "headers": [{"key": "X-A", "value": "s3cret\nvalue"}]}, format="json"
    )
    assert "s3cret" not in assert_error(response, 400, "ValidationError")["error"]["detail"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"displayName": "x",', "application/json"),
        ("not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"a string"', "application/json"),
        ("displayName=x", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_are_400(admin: Caller, organization: Organization, body: str, content_type: str) -> None:
    response = admin.client.post(admin.create_url(), body, content_type=content_type)
    assert_error(response, 400, "ValidationError")
    assert_nothing_written(organization)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
        "Bearer mcpk_0123456789ab_" + "A" * 43,
        "Bearer a b",
    ],
)
def test_bad_credentials_are_401(organization: Organization, authorization: str | None) -> None:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.post(f"/api/public/organizations/{organization.pk}/mcp-servers", VALID, format="json")
    assert_error(response, 401, "Unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_nothing_written(organization)


def test_revoked_or_tampered_keys_are_401(admin: Caller, organization: Organization) -> None:
    tampered = APIClient()
    tampered.credentials(HTTP_AUTHORIZATION=f"Bearer {admin.key[:-1]}{'B' if admin.key[-1] != 'B' else 'C'}")
    assert_error(tampered.post(admin.create_url(), VALID, format="json"), 401, "Unauthorized")

    api_key_revoke(api_key=ApiKey.objects.get(user=admin.user))
    assert_error(admin.client.post(admin.create_url(), VALID, format="json"), 401, "Unauthorized")
    assert_nothing_written(organization)


def test_key_use_is_recorded(admin: Caller) -> None:
    admin.client.get(f"{admin.create_url()}/{uuid.uuid4()}")
    assert ApiKey.objects.get(user=admin.user).last_used_at is not None


def test_missing_org_and_non_admin_look_alike(
    admin: Caller, member: Caller, other_admin: Caller, organization: Organization
) -> None:
    responses = [
        admin.client.post(f"/api/public/organizations/{uuid.uuid4()}/mcp-servers", VALID, format="json"),
        admin.client.post("/api/public/organizations/not-a-uuid/mcp-servers", VALID, format="json"),
        member.client.post(member.create_url(), VALID, format="json"),
        other_admin.client.post(other_admin.create_url(organization), VALID, format="json"),
    ]
    bodies = [assert_error(response, 404, "NotFound") for response in responses]
    assert all(body == bodies[0] for body in bodies)
    assert_nothing_written(organization)


def test_unexpected_errors_are_500_in_the_envelope(
    admin: Caller, organization: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(**kwargs: Any) -> None:
        raise RuntimeError("internal detail that must not leak")

    # A failure that cannot be produced for real through the API: a bug inside the service.
    monkeypatch.setattr("mcp_servers.api.views.mcp_server_create", explode)
    response = admin.client.post(admin.create_url(), VALID, format="json")
    body = assert_error(response, 500, "InternalServerError")
    assert "internal detail" not in response.content.decode()
    assert body["error"]["detail"]


def test_get_is_scoped_to_the_organization(
    admin: Caller, other_admin: Caller, organization: Organization, settings: Any
) -> None:
    settings.MCP_SYNC_WAIT_SECONDS = 0
    created = admin.client.post(admin.create_url(), VALID, format="json").json()["data"]
    url = f"{admin.create_url()}/{created['id']}"
    assert admin.client.get(url).status_code == 200
    assert_error(other_admin.client.get(url), 404, "NotFound")
    assert_error(other_admin.client.get(f"{other_admin.create_url()}/{created['id']}"), 404, "NotFound")
    assert_error(admin.client.get(f"{admin.create_url()}/nope"), 404, "NotFound")


def test_unknown_api_routes_answer_in_the_envelope(admin: Caller) -> None:
    response = admin.client.get("/api/public/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["title"] == "NotFound"
    method = admin.client.delete(admin.create_url())
    assert method.status_code == 405
    assert method.json()["error"]["title"] == "MethodNotAllowed"


def test_a_deeply_nested_body_is_a_400(admin: Caller, organization: Organization) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = admin.client.post(admin.create_url(), body, content_type="application/json")
    assert_error(response, 400, "ValidationError")


def test_wait_zero_with_a_worker_answers_the_row_as_inserted_in_five_queries(
    admin: Caller, settings: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """With a worker (not in process) and no wait, the create renders the row it inserted instead of reading it back.

    The sync is published to Celery's in-memory broker here; nothing consumes it, so the row stays as inserted.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from config.celery import app

    # Celery's conf reads through to Django's settings, so it is patched first (its undo restores what it saw).
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.MCP_SYNC_WAIT_SECONDS = 0
    with django_capture_on_commit_callbacks(execute=True):
        first = admin.client.post(admin.create_url(), VALID, format="json")  # starts the trial
    assert first.status_code == 201, first.content
    with django_capture_on_commit_callbacks(execute=True) as published, CaptureQueriesContext(connection) as queries:
        response = admin.client.post(
            admin.create_url(),
            {**VALID, "displayName": "Other Tools", "headers": [{"key": "X-Api-Key", "value": "secret"}]},
            format="json",
        )
    assert response.status_code == 201, response.content
    assert_matches_contract(201, response.json())
    assert len(published) == 1  # the sync was queued, after commit
    # The key, the organization, then the insert of the server and of its header in one transaction (in a test
    # transaction a savepoint stands for BEGIN/COMMIT); the taken labels are read only after a clash, and the
    # trial is already running.
    assert [q["sql"].split()[0] for q in queries.captured_queries] == [
        "SELECT",
        "SELECT",
        "SAVEPOINT",
        "INSERT",
        "INSERT",
        "RELEASE",
    ], [q["sql"][:80] for q in queries.captured_queries]
    data = response.json()["data"]
    assert data["serverLabel"] == "other_tools"
    assert (data["setupState"], data["lastSyncStatus"], data["tools"]) == ("INCOMPLETE", "PENDING", [])
    # Exactly what reading the row back gives.
    assert admin.client.get(f"{admin.create_url()}/{data['id']}").json()["data"] == data
