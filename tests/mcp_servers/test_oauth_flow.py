"""OAuth end to end against a real OAuth-protected MCP server built with the SDK's server-side auth.

The authorization server auto-approves, so "a person authorizes" is: GET the authorization URL without
following the redirect, read `Location`, and open the callback with its query, as the browser would.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from django.test import Client as BrowserClient

from mcp_servers.models import McpServer, McpServerOAuth, OAuthAuthorizationRequest, OAuthClientSource
from mcp_servers.services import AUTH_EXPIRED_MESSAGE, SyncOutcome, mcp_server_sync
from tests.conftest import Caller
from tests.contract import assert_matches_contract
from tests.test_secrets import database_dump

pytestmark = pytest.mark.django_db(transaction=True)


def approve(auth_url: str) -> dict[str, str]:
    """What the user's browser does at the (auto-approving) authorization server: returns the callback query."""
    response = httpx2.get(auth_url, follow_redirects=False, timeout=10)
    assert response.status_code in (302, 303), response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}".endswith("/oauth/callback")
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def callback(query: dict[str, str]) -> Any:
    return BrowserClient().get(f"/oauth/callback?{urlencode(query)}")


def create(admin: Caller, url: str) -> dict[str, Any]:
    response = admin.client.post(admin.create_url(), {"displayName": "Protected", "serverUrl": url}, format="json")
    assert response.status_code == 201
    assert_matches_contract(201, response.json())
    return response.json()["data"]


def get(admin: Caller, server_id: str) -> dict[str, Any]:
    response = admin.client.get(f"{admin.create_url()}/{server_id}")
    assert_matches_contract(201, response.json())
    return response.json()["data"]


def test_authorize_connect_refresh_revoke_and_authorize_again(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    remote = oauth_mcp_server_factory(tools=3)

    created = create(admin, remote.url)
    assert (created["setupState"], created["lastSyncStatus"], created["requiresAuth"]) == ("INCOMPLETE", "FAILED", True)
    auth_url = created["authUrl"]
    params = parse_qs(urlsplit(auth_url).query)
    assert params["code_challenge_method"] == ["S256"]
    assert params["resource"] == [remote.url]
    assert params["scope"] == ["tools:read"]
    assert params["redirect_uri"] == ["http://127.0.0.1:8000/oauth/callback"]
    assert remote.stats()["registrations"] == 1  # dynamic client registration
    assert McpServerOAuth.objects.get().client_source == OAuthClientSource.DYNAMIC_REGISTRATION

    query = approve(auth_url)
    assert query["iss"] == remote.base_url
    page = callback(query)
    assert page.status_code == 200
    assert b"Connected" in page.content
    connected = get(admin, created["id"])
    assert (connected["setupState"], connected["lastSyncStatus"]) == ("CONNECTED", "SUCCESS")
    assert (connected["requiresAuth"], connected["authUrl"]) == (False, None)
    assert sorted(tool["name"] for tool in connected["tools"]) == ["tool_0", "tool_1", "tool_2"]
    stats = remote.stats()
    assert stats["token_requests"]["authorization_code"] == 1
    assert stats["last_token_request"]["resource"] == remote.url

    # The same authorization response again: refused, and nothing changes.
    replay = callback(query)
    assert replay.status_code == 400
    assert b"already been used" in replay.content
    assert get(admin, created["id"])["updatedAt"] == connected["updatedAt"]

    # The access token expires: the next sync refreshes it without anyone's help.
    remote.control({"expire": True})
    assert mcp_server_sync(server_id=created["id"]) is SyncOutcome.SUCCESS
    assert remote.stats()["token_requests"]["refresh_token"] == 1
    assert get(admin, created["id"])["setupState"] == "CONNECTED"

    # The grant is revoked: refreshing fails, and the server asks for authorization again.
    remote.control({"revoke": True})
    assert mcp_server_sync(server_id=created["id"]) is SyncOutcome.AUTH_REQUIRED
    again = get(admin, created["id"])
    assert (again["setupState"], again["requiresAuth"]) == ("INCOMPLETE", True)
    assert again["authUrl"]
    assert again["authUrl"] != auth_url
    assert again["syncErrorMessage"] == AUTH_EXPIRED_MESSAGE
    assert remote.stats()["registrations"] == 1  # the registration is reused

    assert callback(approve(again["authUrl"])).status_code == 200
    assert get(admin, created["id"])["setupState"] == "CONNECTED"


@pytest.mark.parametrize("metadata", ["at the origin", "none"])
def test_a_server_of_the_2025_03_26_authorization_spec(
    admin: Caller, oauth_mcp_server_factory: Any, metadata: str
) -> None:
    # No protected resource metadata; the authorization server's metadata at the origin, or none at all (then
    # that revision's default endpoints /authorize, /token and /register at the origin).
    remote = oauth_mcp_server_factory(no_prm=True, no_as_metadata=metadata == "none")

    created = create(admin, remote.url)
    assert (created["setupState"], created["requiresAuth"]) == ("INCOMPLETE", True)
    auth_url = created["authUrl"]
    assert auth_url.startswith(f"{remote.base_url}/authorize?")
    params = parse_qs(urlsplit(auth_url).query)
    assert params["code_challenge_method"] == ["S256"]
    assert params["resource"] == [remote.url]
    assert remote.stats()["registrations"] == 1
    row = McpServerOAuth.objects.get()
    assert (row.issuer, row.token_endpoint) == (remote.base_url, f"{remote.base_url}/token")

    assert callback(approve(auth_url)).status_code == 200
    connected = get(admin, created["id"])
    assert (connected["setupState"], connected["lastSyncStatus"]) == ("CONNECTED", "SUCCESS")
    assert len(connected["tools"]) == 3

    remote.control({"expire": True})
    assert mcp_server_sync(server_id=created["id"]) is SyncOutcome.SUCCESS
    assert remote.stats()["token_requests"]["refresh_token"] == 1


def test_a_refused_token_is_refreshed_once_before_asking_a_person(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    remote = oauth_mcp_server_factory()
    created = create(admin, remote.url)
    callback(approve(created["authUrl"]))
    remote.control({"expire": True})
    McpServerOAuth.objects.update(access_token_expires_at=None)  # we believe it is still valid; the server does not
    assert mcp_server_sync(server_id=created["id"]) is SyncOutcome.SUCCESS
    assert remote.stats()["token_requests"]["refresh_token"] == 1


@pytest.mark.parametrize(
    "tamper",
    [
        {"state": "not-a-state"},
        {"state": ""},
        {"code": ""},
        {"iss": "https://evil.example"},
        {"error": "access_denied"},
    ],
)
def test_bad_callbacks_get_an_error_page_and_change_nothing(
    admin: Caller, oauth_mcp_server_factory: Any, tamper: dict[str, str]
) -> None:
    remote = oauth_mcp_server_factory()
    created = create(admin, remote.url)
    query = {**approve(created["authUrl"]), **tamper}
    page = callback(query)
    assert page.status_code == 400
    assert b"Authorization failed" in page.content
    server = get(admin, created["id"])
    assert (server["setupState"], server["requiresAuth"], server["authUrl"]) == ("INCOMPLETE", True, created["authUrl"])
    assert remote.stats()["token_requests"]["authorization_code"] == 0
    assert not McpServerOAuth.objects.get().access_token


def test_an_expired_authorization_link_is_refused(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    remote = oauth_mcp_server_factory()
    created = create(admin, remote.url)
    query = approve(created["authUrl"])
    OAuthAuthorizationRequest.objects.update(expires_at="2000-01-01T00:00:00Z")
    page = callback(query)
    assert page.status_code == 400
    assert b"expired" in page.content
    assert remote.stats()["token_requests"]["authorization_code"] == 0


def test_a_preregistered_confidential_client(admin: Caller, oauth_mcp_server_factory: Any, settings: Any) -> None:
    remote = oauth_mcp_server_factory(no_registration=True, client_id="our-client", client_secret="s3cret-value")
    settings.MCP_OAUTH_CLIENTS = {remote.base_url: {"client_id": "our-client", "client_secret": "s3cret-value"}}
    created = create(admin, remote.url)
    assert "client_id=our-client" in created["authUrl"]
    assert callback(approve(created["authUrl"])).status_code == 200
    assert get(admin, created["id"])["setupState"] == "CONNECTED"
    assert remote.stats()["last_token_request"]["auth_method"] == "client_secret_basic"
    assert McpServerOAuth.objects.get().client_source == OAuthClientSource.PREREGISTERED


def test_a_client_id_metadata_document(admin: Caller, oauth_mcp_server_factory: Any, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://connectors.example.test"
    remote = oauth_mcp_server_factory(cimd=True, cimd_prefix="https://connectors.example.test")
    created = create(admin, remote.url)
    document_url = "https://connectors.example.test/oauth/client-metadata.json"
    assert parse_qs(urlsplit(created["authUrl"]).query)["client_id"] == [document_url]
    assert remote.stats()["registrations"] == 0
    assert callback(approve(created["authUrl"])).status_code == 200
    assert get(admin, created["id"])["setupState"] == "CONNECTED"

    document = BrowserClient().get("/oauth/client-metadata.json").json()
    assert document["client_id"] == document_url
    assert document["redirect_uris"] == ["https://connectors.example.test/oauth/callback"]
    assert document["token_endpoint_auth_method"] == "none"


def test_reauthorize_hands_out_a_fresh_url_and_keeps_the_server_working(
    admin: Caller, oauth_mcp_server_factory: Any, other_admin: Caller
) -> None:
    remote = oauth_mcp_server_factory()
    created = create(admin, remote.url)
    callback(approve(created["authUrl"]))
    url = f"{admin.create_url()}/{created['id']}/reauthorize"
    response = admin.client.post(url)
    assert response.status_code == 200
    data = response.json()["data"]
    assert_matches_contract(201, response.json())
    assert (data["setupState"], data["requiresAuth"]) == ("CONNECTED", True)
    assert data["authUrl"]
    assert data["authUrl"] != created["authUrl"]
    assert other_admin.client.post(url).status_code == 404

    assert callback(approve(data["authUrl"])).status_code == 200
    final = get(admin, created["id"])
    assert (final["setupState"], final["requiresAuth"], final["authUrl"]) == ("CONNECTED", False, None)


def test_reauthorize_is_refused_for_a_server_without_oauth(admin: Caller, mcp_server_factory: Any) -> None:
    created = create(admin, mcp_server_factory().url)
    response = admin.client.post(f"{admin.create_url()}/{created['id']}/reauthorize")
    assert response.status_code == 400
    assert response.json()["error"]["title"] == "ValidationError"


def test_tokens_and_secrets_stay_secret(
    admin: Caller, oauth_mcp_server_factory: Any, caplog: pytest.LogCaptureFixture, capfd: Any
) -> None:
    caplog.set_level("DEBUG")
    remote = oauth_mcp_server_factory()
    created = create(admin, remote.url)
    query = approve(created["authUrl"])
    page = callback(query)
    remote.control({"expire": True})
    mcp_server_sync(server_id=created["id"])
    row = McpServerOAuth.objects.get()
    secrets = [row.access_token, row.refresh_token, row.client_secret, query["code"], query["state"]]
    secrets += [OAuthAuthorizationRequest.objects.first().code_verifier]  # type: ignore[union-attr]
    secrets = [value for value in secrets if value]
    assert len(secrets) >= 5
    out = capfd.readouterr()
    sinks = {
        "responses": page.content.decode() + str(get(admin, created["id"])),
        "logs": caplog.text + out.out + out.err,
        "database": database_dump(),
    }
    for sink, text in sinks.items():
        for value in secrets:
            assert value not in text, f"a secret leaked into {sink}"


def test_state_is_bound_to_one_server(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    first = create(admin, oauth_mcp_server_factory().url)
    other = oauth_mcp_server_factory()
    second = admin.client.post(
        admin.create_url(), {"displayName": "Second", "serverUrl": other.url}, format="json"
    ).json()["data"]
    callback(approve(first["authUrl"]))
    assert get(admin, first["id"])["setupState"] == "CONNECTED"
    assert get(admin, second["id"])["setupState"] == "INCOMPLETE"
    assert McpServer.objects.get(pk=uuid.UUID(second["id"])).oauth.access_token is None


def test_the_admin_reauthorize_action(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    from django.contrib.auth import get_user_model

    remote = oauth_mcp_server_factory()
    created = create(admin, remote.url)
    callback(approve(created["authUrl"]))
    superuser = get_user_model().objects.create_superuser("root", "root@example.test", "pw-for-tests-only")
    browser = BrowserClient()
    browser.force_login(superuser)
    response = browser.post(
        "/admin/mcp_servers/mcpserver/", {"action": "reauthorize", "_selected_action": [created["id"]]}, follow=True
    )
    assert response.status_code == 200
    assert b"fresh authorization URL" in response.content
    server = get(admin, created["id"])
    assert (server["setupState"], server["requiresAuth"]) == ("CONNECTED", True)
    assert server["authUrl"] != created["authUrl"]
