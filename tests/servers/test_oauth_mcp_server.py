"""Tests of the OAuth MCP test server itself, driven over HTTP with httpx2 (not through the project's client)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.servers.oauth_fixtures import RunningOAuthMcpServer

pytest_plugins = ["tests.servers.oauth_fixtures"]

Factory = Callable[..., RunningOAuthMcpServer]
REDIRECT_URI = "http://127.0.0.1:9/callback"
PROTOCOL_VERSION = "2025-11-25"
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(trust_env=False, timeout=10.0, follow_redirects=False) as client:
        yield client


@dataclass
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).decode().rstrip("="))


def register(http: httpx2.Client, server: RunningOAuthMcpServer, **metadata: Any) -> dict[str, Any]:
    body = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", **metadata}
    response = http.post(f"{server.base_url}/register", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def authorize(
    http: httpx2.Client, server: RunningOAuthMcpServer, client_id: str, pkce: Pkce, **params: str
) -> httpx2.Response:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "state": "st-123",
        **params,
    }
    return http.get(f"{server.base_url}/authorize", params=query)


def redirect_params(response: httpx2.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return {name: values[0] for name, values in parse_qs(urlsplit(response.headers["location"]).query).items()}


def token(http: httpx2.Client, server: RunningOAuthMcpServer, **form: str) -> httpx2.Response:
    auth = form.pop("basic_auth", None)
    headers = {"authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    return http.post(f"{server.base_url}/token", data=form, headers=headers)


def get_tokens(
    http: httpx2.Client, server: RunningOAuthMcpServer, client_id: str, *, resource: str | None = None, **auth: str
) -> dict[str, Any]:
    """Run authorize + code exchange for ``client_id``; returns the token response."""
    pkce = Pkce.new()
    code = redirect_params(authorize(http, server, client_id, pkce))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": client_id}
    form["code_verifier"] = pkce.verifier
    if resource is not None:
        form["resource"] = resource
    response = token(http, server, **form, **auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def refresh(
    http: httpx2.Client, server: RunningOAuthMcpServer, client_id: str, refresh_token: str, **extra: str
) -> httpx2.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    return token(http, server, **form, **extra)


def _rpc_result(response: httpx2.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        message: dict[str, Any] = json.loads(data[-1])
    else:
        message = response.json()
    assert "result" in message, message
    result: dict[str, Any] = message["result"]
    return result


def mcp_post(
    http: httpx2.Client, server: RunningOAuthMcpServer, access_token: str | None, body: dict[str, Any], **headers: str
) -> httpx2.Response:
    all_headers = {**JSON, **headers}
    if access_token is not None:
        all_headers["authorization"] = f"Bearer {access_token}"
    return http.post(server.url, json=body, headers=all_headers)


def _initialize() -> dict[str, Any]:
    params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}


def list_tools(http: httpx2.Client, server: RunningOAuthMcpServer, access_token: str) -> list[str]:
    """initialize + notifications/initialized + tools/list with the token; returns the tool names."""
    response = mcp_post(http, server, access_token, _initialize())
    assert response.status_code == 200, response.text
    _rpc_result(response)
    session = {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": PROTOCOL_VERSION}
    notified = mcp_post(
        http, server, access_token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, **session
    )
    assert notified.status_code == 202, notified.text
    listed = mcp_post(http, server, access_token, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, **session)
    assert listed.status_code == 200, listed.text
    return [tool["name"] for tool in _rpc_result(listed)["tools"]]


def mcp_status(
    http: httpx2.Client, server: RunningOAuthMcpServer, access_token: str | None, **headers: str
) -> httpx2.Response:
    """An initialize request (200 when the token is accepted)."""
    return mcp_post(http, server, access_token, _initialize(), **headers)


# -- metadata ------------------------------------------------------------------------------------------------


def test_metadata_documents(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    base = server.base_url
    assert server.url == f"{base}/mcp"

    asm = http.get(f"{base}/.well-known/oauth-authorization-server").json()
    assert asm["issuer"] == base  # no trailing slash: issuers compare as plain strings
    assert asm["authorization_endpoint"] == f"{base}/authorize"
    assert asm["token_endpoint"] == f"{base}/token"
    assert asm["registration_endpoint"] == f"{base}/register"
    assert asm["revocation_endpoint"] == f"{base}/revoke"
    assert asm["code_challenge_methods_supported"] == ["S256"]
    assert asm["scopes_supported"] == ["tools:read"]
    assert asm["response_types_supported"] == ["code"]
    assert asm["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert set(asm["token_endpoint_auth_methods_supported"]) == {"client_secret_post", "client_secret_basic"}
    assert asm["authorization_response_iss_parameter_supported"] is True
    assert "client_id_metadata_document_supported" not in asm

    prm = http.get(f"{base}/.well-known/oauth-protected-resource/mcp").json()
    assert prm["resource"] == server.url
    assert prm["authorization_servers"] == [base]
    assert prm["scopes_supported"] == ["tools:read"]
    # The SDK serves the path-suffixed RFC 9728 location only.
    assert http.get(f"{base}/.well-known/oauth-protected-resource").status_code == 404


def test_scopes_are_advertised_in_metadata_and_challenge(
    oauth_mcp_server_factory: Factory, http: httpx2.Client
) -> None:
    server = oauth_mcp_server_factory(scopes=["tools:read", "tools:write"])
    asm = http.get(f"{server.base_url}/.well-known/oauth-authorization-server").json()
    prm = http.get(f"{server.base_url}/.well-known/oauth-protected-resource/mcp").json()
    assert asm["scopes_supported"] == prm["scopes_supported"] == ["tools:read", "tools:write"]
    challenge = mcp_status(http, server, None).headers["www-authenticate"]
    assert challenge.endswith('scope="tools:read tools:write"')
    # Every supported scope is required: a token with fewer gets 403 insufficient_scope.
    client_id = register(http, server, scope="tools:read")["client_id"]
    narrow = get_tokens(http, server, client_id)
    assert narrow["scope"] == "tools:read"
    response = mcp_status(http, server, narrow["access_token"])
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.headers["www-authenticate"].endswith('scope="tools:read tools:write"')
    assert server.stats()["mcp_unauthorized"] == 1


def test_unauthenticated_mcp_request_gets_bearer_challenge(
    oauth_mcp_server_factory: Factory, http: httpx2.Client
) -> None:
    server = oauth_mcp_server_factory()
    for bearer in (None, "not-a-token"):
        response = mcp_status(http, server, bearer)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{server.base_url}/.well-known/oauth-protected-resource/mcp"' in challenge
        assert 'scope="tools:read"' in challenge
        assert 'error="invalid_token"' in challenge
    stats = server.stats()
    assert stats["mcp_requests"] == 2
    assert stats["mcp_unauthorized"] == 2


def test_no_registration_option(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(no_registration=True)
    asm = http.get(f"{server.base_url}/.well-known/oauth-authorization-server").json()
    assert "registration_endpoint" not in asm
    response = http.post(f"{server.base_url}/register", json={"redirect_uris": [REDIRECT_URI]})
    assert response.status_code in (404, 405)
    assert server.stats()["registrations"] == 0


# -- the authorization code flow ------------------------------------------------------------------------------


def test_full_flow_with_dynamic_registration(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(tools=4)
    client = register(http, server, client_name="test")
    assert client["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in client
    assert client["scope"] == "tools:read"  # the server's default scopes

    pkce = Pkce.new()
    params = redirect_params(
        authorize(http, server, client["client_id"], pkce, scope="tools:read", resource=server.url)
    )
    assert params["state"] == "st-123"
    assert params["iss"] == server.base_url
    assert len(params["code"]) >= 32
    assert server.stats()["last_authorize"] == {
        "scope": "tools:read",
        "resource": server.url,
        "code_challenge_method": "S256",
        "redirect_uri": REDIRECT_URI,
    }

    form = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT_URI,
        "client_id": client["client_id"],
        "code_verifier": pkce.verifier,
        "resource": server.url,
    }
    response = token(http, server, **form)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "tools:read"
    assert tokens["refresh_token"]
    assert response.headers["cache-control"] == "no-store"

    assert list_tools(http, server, tokens["access_token"]) == ["tool_0", "tool_1", "tool_2", "tool_3"]

    # The code is single-use.
    again = token(http, server, **form)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"

    stats = server.stats()
    assert stats["registrations"] == 1
    assert stats["authorizations"] == 1
    assert stats["token_requests"] == {"authorization_code": 2, "refresh_token": 0, "client_credentials": 0}
    assert stats["last_token_request"]["resource"] == server.url
    assert stats["last_token_request"]["auth_method"] == "none"
    assert stats["mcp_requests"] == 3
    assert stats["mcp_unauthorized"] == 0


def test_authorize_without_optional_parameters(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    query = {"response_type": "code", "client_id": client_id, "code_challenge": Pkce.new().challenge}
    params = redirect_params(http.get(f"{server.base_url}/authorize", params=query))
    assert set(params) == {"code", "iss"}  # the only registered redirect_uri is used; no state was sent
    assert server.stats()["last_authorize"] == {
        "scope": None,
        "resource": None,
        "code_challenge_method": None,
        "redirect_uri": None,
    }


def test_pkce_is_enforced(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    pkce = Pkce.new()
    code = redirect_params(authorize(http, server, client_id, pkce))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": client_id}
    wrong = token(http, server, **form, code_verifier=Pkce.new().verifier)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    # plain is not supported: the SDK refuses it at /authorize, by redirect.
    plain = redirect_params(authorize(http, server, client_id, pkce, code_challenge_method="plain"))
    assert plain["error"] == "invalid_request"
    assert plain["iss"] == server.base_url


def test_foreign_resource_is_invalid_target(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    pkce = Pkce.new()
    params = redirect_params(authorize(http, server, client_id, pkce, resource=f"{server.base_url}/other"))
    assert params["error"] == "invalid_target"
    assert params["state"] == "st-123"
    assert params["iss"] == server.base_url
    assert server.stats()["last_authorize"]["resource"] == f"{server.base_url}/other"
    assert server.stats()["authorizations"] == 0

    code = redirect_params(authorize(http, server, client_id, pkce))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": client_id}
    response = token(http, server, **form, code_verifier=pkce.verifier, resource="http://127.0.0.1:1/mcp")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_unregistered_redirect_uri_is_refused_without_redirect(
    oauth_mcp_server_factory: Factory, http: httpx2.Client
) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    response = authorize(http, server, client_id, Pkce.new(), redirect_uri="http://127.0.0.1:9/elsewhere")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_no_iss_option(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(no_iss=True)
    asm = http.get(f"{server.base_url}/.well-known/oauth-authorization-server").json()
    assert "authorization_response_iss_parameter_supported" not in asm
    client_id = register(http, server)["client_id"]
    assert set(redirect_params(authorize(http, server, client_id, Pkce.new()))) == {"code", "state"}


# -- clients ----------------------------------------------------------------------------------------------------


def test_registered_confidential_client_uses_client_secret_post(
    oauth_mcp_server_factory: Factory, http: httpx2.Client
) -> None:
    server = oauth_mcp_server_factory()
    client = register(http, server, token_endpoint_auth_method="client_secret_post")
    assert client["client_secret"]
    assert client["client_secret_expires_at"] == 0
    tokens = get_tokens(http, server, client["client_id"], client_secret=client["client_secret"])
    assert list_tools(http, server, tokens["access_token"]) == ["tool_0", "tool_1", "tool_2"]
    assert server.stats()["last_token_request"]["auth_method"] == "client_secret_post"
    # Without the secret: 401 invalid_client.
    pkce = Pkce.new()
    code = redirect_params(authorize(http, server, client["client_id"], pkce))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    response = token(http, server, **form, client_id=client["client_id"], code_verifier=pkce.verifier)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_preregistered_client_accepts_basic_and_post(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(client_id="pre-client", client_secret="pre-secret", no_registration=True)
    basic = get_tokens(http, server, "pre-client", basic_auth="pre-client:pre-secret")
    assert server.stats()["last_token_request"]["auth_method"] == "client_secret_basic"
    post = get_tokens(http, server, "pre-client", client_secret="pre-secret")
    assert server.stats()["last_token_request"]["auth_method"] == "client_secret_post"
    assert basic["access_token"] != post["access_token"]
    assert list_tools(http, server, basic["access_token"]) == ["tool_0", "tool_1", "tool_2"]

    refreshed = refresh(http, server, "pre-client", basic["refresh_token"], basic_auth="pre-client:pre-secret")
    assert refreshed.status_code == 200, refreshed.text
    wrong = refresh(http, server, "pre-client", post["refresh_token"], client_secret="wrong")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    # Any loopback redirect_uri is accepted for it (RFC 8252); others are not.
    other = authorize(http, server, "pre-client", Pkce.new(), redirect_uri="http://localhost:5555/cb")
    assert other.status_code == 302
    remote = authorize(http, server, "pre-client", Pkce.new(), redirect_uri="https://example.com/cb")
    assert remote.status_code == 400


def test_preregistered_client_with_fixed_redirect_uri(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(client_id="fixed", client_secret="s", client_redirect_uri=REDIRECT_URI)
    assert authorize(http, server, "fixed", Pkce.new()).status_code == 302
    assert authorize(http, server, "fixed", Pkce.new(), redirect_uri="http://127.0.0.1:9/x").status_code == 400


def test_client_id_metadata_document_shortcut(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(cimd=True)
    asm = http.get(f"{server.base_url}/.well-known/oauth-authorization-server").json()
    assert asm["client_id_metadata_document_supported"] is True

    client_id = "http://127.0.0.1:9/client-metadata.json"
    tokens = get_tokens(http, server, client_id)  # REDIRECT_URI shares the client_id's origin
    assert list_tools(http, server, tokens["access_token"]) == ["tool_0", "tool_1", "tool_2"]
    other_origin = authorize(http, server, client_id, Pkce.new(), redirect_uri="http://127.0.0.1:10/callback")
    assert other_origin.status_code == 400
    not_prefixed = authorize(http, server, "https://example.com/client.json", Pkce.new())
    assert not_prefixed.status_code == 400
    assert server.stats()["registrations"] == 0


def test_url_client_ids_are_unknown_without_cimd(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    response = authorize(http, server, "http://127.0.0.1:9/client-metadata.json", Pkce.new())
    assert response.status_code == 400
    assert "not found" in response.json()["error_description"]


# -- refresh, expiry, revocation ------------------------------------------------------------------------------


def test_refresh_rotates_and_old_refresh_token_is_rejected(
    oauth_mcp_server_factory: Factory, http: httpx2.Client
) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    first = get_tokens(http, server, client_id)
    response = refresh(http, server, client_id, first["refresh_token"], resource=server.url)
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert list_tools(http, server, second["access_token"]) == ["tool_0", "tool_1", "tool_2"]

    reused = refresh(http, server, client_id, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    unknown = refresh(http, server, client_id, "no-such-token")
    assert unknown.json()["error"] == "invalid_grant"
    assert refresh(http, server, client_id, second["refresh_token"]).status_code == 200

    stats = server.stats()
    assert stats["token_requests"] == {"authorization_code": 1, "refresh_token": 4, "client_credentials": 0}
    assert stats["refresh_failures"] == 2
    assert stats["last_token_request"] == {"resource": None, "auth_method": "none", "grant_type": "refresh_token"}


def test_no_rotate_keeps_the_refresh_token(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(no_rotate=True)
    client_id = register(http, server)["client_id"]
    first = get_tokens(http, server, client_id)
    for _ in range(2):
        response = refresh(http, server, client_id, first["refresh_token"])
        assert response.status_code == 200
        assert response.json()["refresh_token"] == first["refresh_token"]
    assert server.stats()["refresh_failures"] == 0


def test_refresh_with_foreign_resource_is_invalid_target(
    oauth_mcp_server_factory: Factory, http: httpx2.Client
) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    tokens = get_tokens(http, server, client_id)
    response = refresh(http, server, client_id, tokens["refresh_token"], resource=server.base_url)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    assert server.stats()["refresh_failures"] == 1
    assert refresh(http, server, client_id, tokens["refresh_token"]).status_code == 200  # not consumed


def test_access_tokens_expire_after_ttl(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(access_token_ttl=1)
    client_id = register(http, server)["client_id"]
    tokens = get_tokens(http, server, client_id)
    assert tokens["expires_in"] == 1
    assert mcp_status(http, server, tokens["access_token"]).status_code == 200
    time.sleep(1.2)
    expired = mcp_status(http, server, tokens["access_token"])
    assert expired.status_code == 401
    assert "resource_metadata=" in expired.headers["www-authenticate"]
    assert refresh(http, server, client_id, tokens["refresh_token"]).status_code == 200


def test_control_expire(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    tokens = get_tokens(http, server, client_id)
    assert mcp_status(http, server, tokens["access_token"]).status_code == 200
    assert server.control({"expire": True}) == {"ok": True, "expired": 1}
    assert mcp_status(http, server, tokens["access_token"]).status_code == 401
    response = refresh(http, server, client_id, tokens["refresh_token"])
    assert response.status_code == 200
    assert mcp_status(http, server, response.json()["access_token"]).status_code == 200
    assert http.post(f"{server.base_url}/_control/expire").json() == {"ok": True, "expired": 1}


def test_control_revoke(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    tokens = get_tokens(http, server, client_id)
    assert http.post(f"{server.base_url}/_control/revoke").json() == {"ok": True, "revoked": 2}
    assert mcp_status(http, server, tokens["access_token"]).status_code == 401
    response = refresh(http, server, client_id, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert server.control({"revoke": True}) == {"ok": True, "revoked": 0}
    stats = server.stats()
    assert stats["revocations"] == 0  # counts RFC 7009 requests only
    assert stats["refresh_failures"] == 1


def test_revocation_endpoint_revokes_the_grant(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    client = register(http, server, token_endpoint_auth_method="client_secret_post")
    auth = {"client_id": client["client_id"], "client_secret": client["client_secret"]}
    tokens = get_tokens(http, server, client["client_id"], client_secret=client["client_secret"])
    response = http.post(f"{server.base_url}/revoke", data={"token": tokens["access_token"], **auth})
    assert response.status_code == 200
    assert mcp_status(http, server, tokens["access_token"]).status_code == 401
    # Revoking the access token revoked its refresh token too.
    again = refresh(http, server, client["client_id"], tokens["refresh_token"], client_secret=client["client_secret"])
    assert again.json()["error"] == "invalid_grant"
    # Unknown tokens are answered 200 too (RFC 7009 §2.2).
    assert http.post(f"{server.base_url}/revoke", data={"token": "unknown", **auth}).status_code == 200
    assert server.stats()["revocations"] == 2


def test_revocation_by_refresh_token_for_public_client(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    tokens = get_tokens(http, server, client_id)
    form = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": client_id}
    # SDK quirk: RevocationRequest requires a client_secret field, even for public clients.
    assert http.post(f"{server.base_url}/revoke", data=form).status_code == 400
    assert http.post(f"{server.base_url}/revoke", data={**form, "client_secret": ""}).status_code == 200
    assert mcp_status(http, server, tokens["access_token"]).status_code == 401
    assert server.stats()["revocations"] == 1


def test_refresh_delay_and_concurrent_refreshes(oauth_mcp_server_factory: Factory) -> None:
    server = oauth_mcp_server_factory(refresh_delay=0.5)
    with httpx2.Client(trust_env=False, timeout=10.0) as http:
        client_id = register(http, server)["client_id"]
        tokens = get_tokens(http, server, client_id)
    results: list[int] = []

    def worker() -> None:
        with httpx2.Client(trust_env=False, timeout=10.0) as own:
            results.append(refresh(own, server, client_id, tokens["refresh_token"]).status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 0.5
    assert sorted(results) == [200, 400, 400]
    assert server.stats()["refresh_failures"] == 2


# -- transport and process ------------------------------------------------------------------------------------


def test_host_header_checks(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    client_id = register(http, server)["client_id"]
    access = get_tokens(http, server, client_id)["access_token"]
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
        assert mcp_status(http, server, access, host=host).status_code == 200
    rebinding = mcp_status(http, server, access, host="evil.test")
    assert rebinding.status_code == 421


def test_secrets_stay_out_of_the_logs(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory(client_id="pre", client_secret="very-secret-value")
    tokens = get_tokens(http, server, "pre", client_secret="very-secret-value")
    refresh(http, server, "pre", tokens["refresh_token"], client_secret="wrong-secret-value")
    mcp_status(http, server, "bogus-token-value")
    mcp_status(http, server, tokens["access_token"], host="evil.test")
    server._halt()  # stop the process but keep its stderr log open
    server.stderr_log.seek(0)
    logged = server.stderr_log.read().decode(errors="replace")
    assert "evil.test" in logged  # the SDK did log something
    for secret in ("very-secret-value", "wrong-secret-value", tokens["access_token"], tokens["refresh_token"]):
        assert secret not in logged
    assert "bogus-token-value" not in logged


def test_stop_closes_the_port(oauth_mcp_server_factory: Factory, http: httpx2.Client) -> None:
    server = oauth_mcp_server_factory()
    assert http.get(f"{server.base_url}/_control/stats").status_code == 200
    server.stop()
    server.stop()  # idempotent
    assert server.process.poll() is not None
    with pytest.raises(httpx2.ConnectError):
        http.get(f"{server.base_url}/_control/stats")


def test_unknown_option_is_a_type_error(oauth_mcp_server_factory: Factory) -> None:
    with pytest.raises(TypeError, match="unknown OAuth MCP test server option"):
        oauth_mcp_server_factory(no_such_option=1)
