"""integrations.oauth against real test servers (tests.servers.mcp_server), plus the new misbehaving server modes."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import pytest

from integrations import mcp, oauth
from integrations.mcp import AuthChallenge, McpAuthRequired, ToolListing
from integrations.oauth import MAX_REDIRECTS, OAuthDiscovery, OAuthError
from integrations.outbound import DestinationRefused, IPAddress, OutboundPolicy, guarded_client_factory
from mcp_servers.limits import mcp_client_factory, outbound_policy

if TYPE_CHECKING:
    from tests.servers.fixtures import RunningMcpServer

pytest_plugins = ["tests.servers.fixtures"]

Factory = Callable[..., "RunningMcpServer"]

PRM_PATH = "/.well-known/oauth-protected-resource"
NO_CHALLENGE_URL = AuthChallenge(resource_metadata_url=None, scope=None, error=None)
MIB = 1024 * 1024


# As the service wires them (mcp_servers.limits): the policy of MCP_OUTBOUND_ALLOWLIST, which the tests' settings set.
def adiscover(server_url: str, challenge: AuthChallenge, http: httpx2.AsyncClient, **kwargs: Any) -> Any:
    return oauth.adiscover(server_url, challenge, http, policy=outbound_policy(), **kwargs)


def discover(server_url: str, challenge: AuthChallenge, http: httpx2.AsyncClient, **kwargs: Any) -> OAuthDiscovery:
    return oauth.discover(server_url, challenge, http, policy=outbound_policy(), **kwargs)


def list_remote_tools(url: str, headers: dict[str, str]) -> ToolListing:
    return mcp.list_remote_tools(url, headers, http_client_factory=mcp_client_factory())


def challenge_for(url: str | None) -> AuthChallenge:
    return AuthChallenge(resource_metadata_url=url, scope="tools:read", error=None)


def new_client(**kwargs: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(follow_redirects=False, trust_env=False, timeout=5.0, **kwargs)


def run_discovery(server_url: str, challenge: AuthChallenge, **kwargs: Any) -> OAuthDiscovery:
    async def go() -> OAuthDiscovery:
        async with new_client() as http:
            return await adiscover(server_url, challenge, http, **kwargs)

    return anyio.run(go)


def run_with_transport(
    handler: Callable[[httpx2.Request], httpx2.Response], server_url: str, challenge: AuthChallenge, **kwargs: Any
) -> OAuthDiscovery:
    async def go() -> OAuthDiscovery:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler), **kwargs) as http:
            return await adiscover(server_url, challenge, http)

    return anyio.run(go)


def assert_plain(exc: OAuthError, *forbidden: str) -> None:
    message = str(exc)
    assert message.endswith(".")
    for text in forbidden:
        assert text not in message
    assert exc.__cause__ is None
    assert exc.__context__ is None


# --- discovery -------------------------------------------------------------------------------------------------


def test_discovery_from_the_challenge_of_a_real_401(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True)
    with pytest.raises(McpAuthRequired) as caught:
        list_remote_tools(server.url, {})

    found = run_discovery(server.url, caught.value.challenge)

    prm = found.protected_resource
    assert prm is not None
    assert prm.resource == server.url
    assert prm.authorization_servers == [server.base_url]
    assert prm.scopes_supported == ["tools:read"]
    asm = found.authorization_server
    assert asm.issuer == server.base_url
    assert asm.authorization_endpoint == f"{server.base_url}/authorize"
    assert asm.token_endpoint == f"{server.base_url}/token"
    assert asm.registration_endpoint == f"{server.base_url}/register"
    assert asm.revocation_endpoint is None
    assert asm.scopes_supported == ["tools:read"]
    assert asm.code_challenge_methods_supported == ["S256"]
    assert asm.client_id_metadata_document_supported is False
    assert server.requests()["wellKnown"] == 2  # the challenge's metadata URL, then RFC 8414


def test_challenge_url_on_a_path(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True)

    found = run_discovery(server.url, challenge_for(f"{server.base_url}{PRM_PATH}/mcp"))

    assert found.protected_resource is not None
    assert found.authorization_server.issuer == server.base_url


def test_well_known_fallback_without_resource_metadata(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True)

    found = run_discovery(server.url, NO_CHALLENGE_URL)

    assert found.protected_resource is not None
    assert found.protected_resource.resource == server.url
    assert found.authorization_server.issuer == server.base_url
    # The path-suffixed URI answered, so the root one was never asked for.
    assert server.requests()["wellKnown"] == 2


def test_challenge_url_that_is_not_served_falls_back_to_well_known(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True)

    found = run_discovery(server.url, challenge_for(f"{server.base_url}/.well-known/nothing-here"))

    assert found.protected_resource is not None
    assert server.requests()["wellKnown"] == 3


def test_no_prm_falls_back_to_the_origin_as_issuer(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True, no_prm=True)

    found = run_discovery(server.url, challenge_for(f"{server.base_url}{PRM_PATH}"))

    assert found.protected_resource is None
    assert found.authorization_server.issuer == server.base_url
    assert found.authorization_server.token_endpoint == f"{server.base_url}/token"
    # The challenge's URL (the root one) 404, the path-suffixed one 404, then RFC 8414 at the origin.
    assert server.requests()["wellKnown"] == 3


def test_a_2025_03_26_server_may_name_an_issuer_with_a_path_on_its_origin(mcp_server_factory: Factory) -> None:
    # The 2025-03-26 revision: no protected resource metadata, the metadata at the origin's well-known URI,
    # naming an issuer below the origin (the conformance suite's oauth-metadata-backcompat server does so).
    server = mcp_server_factory(oauth_challenge=True, no_prm=True, issuer="/oauth")

    found = run_discovery(server.url, NO_CHALLENGE_URL)

    assert found.protected_resource is None
    assert found.authorization_server.issuer == f"{server.base_url}/oauth"
    assert found.authorization_server.token_endpoint == f"{server.base_url}/token"
    assert found.authorization_server.from_defaults is False


def test_a_2025_03_26_server_may_not_name_an_issuer_on_another_origin(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True, no_prm=True, issuer="https://evil.example")

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert "different issuer" in str(caught.value)
    assert_plain(caught.value, "evil.example")


def test_a_current_server_is_still_held_to_the_exact_issuer(mcp_server_factory: Factory) -> None:
    # With protected resource metadata naming the origin, an issuer with a path on that origin is a mismatch.
    server = mcp_server_factory(oauth_challenge=True, issuer="/oauth")

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert "different issuer" in str(caught.value)


def test_a_2025_03_26_server_without_metadata_gets_the_default_endpoints(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True, no_prm=True, no_as_metadata=True)

    found = run_discovery(server.url, NO_CHALLENGE_URL)

    asm = found.authorization_server
    assert found.protected_resource is None
    assert asm.from_defaults is True
    assert asm.issuer == server.base_url
    assert (asm.authorization_endpoint, asm.token_endpoint, asm.registration_endpoint) == (
        f"{server.base_url}/authorize",
        f"{server.base_url}/token",
        f"{server.base_url}/register",
    )
    assert asm.revocation_endpoint is None
    assert oauth.supports_pkce_s256(asm)


def test_a_current_server_without_authorization_server_metadata_gets_no_defaults(
    mcp_server_factory: Factory,
) -> None:
    server = mcp_server_factory(oauth_challenge=True, no_as_metadata=True)

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert "No OAuth authorization server metadata" in str(caught.value)


def test_the_default_endpoints_go_through_the_outbound_policy() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(404)

    # Plain http on a host the policy does not allowlist: the default endpoints must be https there.
    with pytest.raises(OAuthError) as caught:
        run_with_transport(handler, "http://mcp.example.com/mcp", NO_CHALLENGE_URL)
    assert "https" in str(caught.value)


def test_authorization_server_on_another_server(mcp_server_factory: Factory) -> None:
    authorization = mcp_server_factory(oauth_challenge=True)
    resource = mcp_server_factory(oauth_challenge=True, authorization_server=authorization.base_url)

    found = run_discovery(resource.url, NO_CHALLENGE_URL)

    assert found.protected_resource is not None
    assert found.protected_resource.authorization_servers == [authorization.base_url]
    assert found.authorization_server.issuer == authorization.base_url
    assert resource.requests()["wellKnown"] == 1
    assert authorization.requests()["wellKnown"] == 1


def test_issuer_mismatch_is_an_error(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True, issuer="https://evil.example")

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert "different issuer" in str(caught.value)
    assert_plain(caught.value, "evil.example")


def test_issuer_with_trailing_slash_matches_a_root_issuer(mcp_server_factory: Factory) -> None:
    probe = mcp_server_factory(oauth_challenge=True)
    # The issuer is fixed by port, so point a second server's metadata at the first one with a trailing slash.
    server = mcp_server_factory(oauth_challenge=True, authorization_server=probe.base_url + "/")

    found = run_discovery(server.url, NO_CHALLENGE_URL)

    assert found.authorization_server.issuer == probe.base_url


def test_resource_of_another_server_is_refused(mcp_server_factory: Factory) -> None:
    other = mcp_server_factory(oauth_challenge=True)
    server = mcp_server_factory(oauth_challenge=True)

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, challenge_for(f"{other.base_url}{PRM_PATH}"))

    assert "different resource" in str(caught.value)


# --- the outbound policy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata_url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/.well-known/oauth-protected-resource",
        "http://[::ffff:10.0.0.1]/x",
        "http://2130706433/x",
    ],
)
def test_internal_resource_metadata_url_is_refused_before_any_request(
    mcp_server_factory: Factory, metadata_url: str
) -> None:
    server = mcp_server_factory(oauth_challenge=True, resource_metadata=metadata_url)
    with pytest.raises(McpAuthRequired) as caught:
        list_remote_tools(server.url, {})
    before = server.requests()

    with pytest.raises(DestinationRefused):
        run_discovery(server.url, caught.value.challenge)

    after = server.requests()
    assert after["wellKnown"] == before["wellKnown"] == 0  # no fallback to the well-known URIs either
    assert after["count"] == before["count"]


@pytest.mark.parametrize("base", ["http://10.1.2.3", "http://169.254.169.254", "https://metadata.internal"])
def test_internal_authorization_endpoints_are_refused(mcp_server_factory: Factory, base: str) -> None:
    server = mcp_server_factory(oauth_challenge=True, as_endpoint_base=base)

    with pytest.raises(DestinationRefused):
        run_discovery(server.url, NO_CHALLENGE_URL)


def test_internal_authorization_server_is_refused_before_it_is_fetched(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True, authorization_server="http://10.0.0.5")

    with pytest.raises(DestinationRefused):
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert server.requests()["wellKnown"] == 1  # the protected resource metadata only


def test_plain_http_endpoints_need_the_allowlist(mcp_server_factory: Factory, settings: Any) -> None:
    settings.MCP_OUTBOUND_ALLOWLIST = "127.0.0.1"
    plain = mcp_server_factory(oauth_challenge=True, as_endpoint_base="http://93.184.215.14")
    tls = mcp_server_factory(oauth_challenge=True, as_endpoint_base="https://93.184.215.14")

    with pytest.raises(OAuthError) as caught:
        run_discovery(plain.url, NO_CHALLENGE_URL)
    found = run_discovery(tls.url, NO_CHALLENGE_URL)

    assert "must use https" in str(caught.value)
    assert_plain(caught.value)
    assert found.authorization_server.authorization_endpoint == "https://93.184.215.14/authorize"


def test_plain_http_issuer_outside_the_allowlist_is_refused(mcp_server_factory: Factory, settings: Any) -> None:
    server = mcp_server_factory(oauth_challenge=True, authorization_server="http://93.184.215.14")

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert "must use https" in str(caught.value)
    assert server.requests()["wellKnown"] == 1


@pytest.mark.parametrize("metadata_url", ["ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x", "/relative", "http://"])
def test_invalid_resource_metadata_url_is_a_discovery_error(mcp_server: RunningMcpServer, metadata_url: str) -> None:
    with pytest.raises(OAuthError) as caught:
        run_discovery(mcp_server.url, challenge_for(metadata_url))

    assert_plain(caught.value, "pw", "ftp")
    assert mcp_server.requests()["wellKnown"] == 0


# --- documents -------------------------------------------------------------------------------------------------


def test_oversized_document_is_refused(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True, scope_count=60_000)  # about 1.5 MB of scopes

    started = time.monotonic()
    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert "larger than 1000000 bytes" in str(caught.value)
    assert_plain(caught.value, "extra:scope")
    assert time.monotonic() - started < 5


def test_document_bound_is_configurable(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True)

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL, max_document_bytes=64)

    assert "larger than 64 bytes" in str(caught.value)


def test_declared_length_over_the_bound_is_refused_unread() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-length": str(10 * MIB)}, content=b"{}")

    with pytest.raises(OAuthError, match="larger than"):
        run_with_transport(handler, "https://mcp.example.com/mcp", NO_CHALLENGE_URL)


@pytest.mark.parametrize(("metadata_format", "problem"), [("html", "not valid JSON"), ("array", "not a JSON object")])
def test_non_json_documents_are_refused(mcp_server_factory: Factory, metadata_format: str, problem: str) -> None:
    server = mcp_server_factory(oauth_challenge=True, metadata_format=metadata_format)

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert problem in str(caught.value)
    assert_plain(caught.value, "html", "Not JSON")


@pytest.mark.parametrize(
    "document",
    [
        b'{"resource": 5, "authorization_servers": ["https://as.example.com"]}',
        b'{"authorization_servers": []}',
        b'{"authorization_servers": "https://as.example.com"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_malformed_protected_resource_metadata(document: bytes) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=document)

    with pytest.raises(OAuthError) as caught:
        run_with_transport(handler, "https://mcp.example.com/mcp", NO_CHALLENGE_URL)

    assert_plain(caught.value)


def test_missing_token_endpoint_is_malformed() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.startswith(PRM_PATH):
            return httpx2.Response(404)
        return httpx2.Response(
            200, json={"issuer": "https://mcp.example.com", "authorization_endpoint": "https://mcp.example.com/a"}
        )

    with pytest.raises(OAuthError, match="malformed"):
        run_with_transport(handler, "https://mcp.example.com/mcp", NO_CHALLENGE_URL)


def test_well_known_order_for_an_issuer_with_a_path() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        if request.url.path == "/.well-known/oauth-protected-resource/v1/mcp":
            return httpx2.Response(
                200,
                json={
                    "resource": "https://mcp.example.com/v1/mcp",
                    "authorization_servers": ["https://id.example.com/t1"],
                },
            )
        if request.url.path == "/t1/.well-known/openid-configuration":
            return httpx2.Response(
                200,
                json={
                    "issuer": "https://id.example.com/t1",
                    "authorization_endpoint": "https://id.example.com/t1/authorize",
                    "token_endpoint": "https://id.example.com/t1/token",
                    "revocation_endpoint": "https://id.example.com/t1/revoke",
                    "client_id_metadata_document_supported": True,
                },
            )
        return httpx2.Response(404)

    found = run_with_transport(handler, "https://mcp.example.com/v1/mcp", NO_CHALLENGE_URL)

    assert seen == [
        "https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp",
        "https://id.example.com/.well-known/oauth-authorization-server/t1",
        "https://id.example.com/.well-known/openid-configuration/t1",
        "https://id.example.com/t1/.well-known/openid-configuration",
    ]
    assert found.authorization_server.revocation_endpoint == "https://id.example.com/t1/revoke"
    assert found.authorization_server.client_id_metadata_document_supported is True


def test_server_errors_stop_discovery_and_are_transient() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(503, text="<h1>secret internals</h1>")

    with pytest.raises(OAuthError) as caught:
        run_with_transport(handler, "https://mcp.example.com/mcp", NO_CHALLENGE_URL)

    assert caught.value.transient
    assert "HTTP 503" in str(caught.value)
    assert_plain(caught.value, "secret")


def test_metadata_requests_carry_no_client_credentials() -> None:
    sent: list[httpx2.Headers] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.headers)
        return httpx2.Response(404)

    found = run_with_transport(
        handler,
        "https://mcp.example.com/mcp",
        NO_CHALLENGE_URL,
        headers={"Authorization": "Bearer s3cret", "X-Api-Key": "k3y"},
        cookies={"session": "c00kie"},
        auth=("user", "pw"),
    )

    assert found.authorization_server.from_defaults  # nothing served: the 2025-03-26 default endpoints
    assert len(sent) == 4  # two protected resource URIs, then RFC 8414 and OIDC at the origin
    for headers in sent:
        assert {"authorization", "x-api-key", "cookie"}.isdisjoint(headers.keys())
        assert headers["accept"] == "application/json"
        assert headers["accept-encoding"] == "identity"


# --- redirects -------------------------------------------------------------------------------------------------


def test_cross_origin_redirect_is_not_followed(mcp_server_factory: Factory) -> None:
    target = mcp_server_factory(oauth_challenge=True)
    redirector = mcp_server_factory(redirect_to=f"{target.base_url}{PRM_PATH}/mcp")

    with pytest.raises(OAuthError) as caught:
        run_discovery(redirector.url, challenge_for(redirector.url))

    assert target.requests()["wellKnown"] == 0
    assert redirector.requests()["count"] == 1
    assert "not followed" in str(caught.value)
    assert_plain(caught.value, str(target.port))


def test_same_origin_redirect_is_followed(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True, redirect_to=f"{PRM_PATH}/mcp", redirect_status=308)

    found = run_discovery(server.url, challenge_for(server.url))

    assert found.protected_resource is not None
    assert server.requests()["count"] == 1
    assert server.requests()["wellKnown"] == 2


def test_same_origin_redirect_loop_is_cut(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True, redirect_to="/mcp")

    found = run_discovery(server.url, challenge_for(server.url))

    assert server.requests()["count"] == 1 + MAX_REDIRECTS
    assert found.protected_resource is not None  # found at the well-known URI after giving up on the loop


# --- HTTP failures ---------------------------------------------------------------------------------------------


def test_connection_failure_names_the_host(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory()
    server.stop()

    with pytest.raises(OAuthError) as caught:
        run_discovery(server.url, NO_CHALLENGE_URL)

    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert caught.value.transient
    assert_plain(caught.value)


def _refusing_handler(shape: str) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        refused = DestinationRefused("the destination is not allowed (resolved to a private address)")
        if shape == "bare":
            raise refused
        if shape == "wrapped":
            raise httpx2.ConnectError("connect failed") from refused
        try:
            raise refused
        except DestinationRefused as exc:
            wrapped = httpx2.ConnectError("connect failed")
            wrapped.__context__ = exc
            raise ExceptionGroup("connect attempts", [OSError("other attempt"), wrapped]) from None

    return handler


@pytest.mark.parametrize("shape", ["bare", "wrapped", "group"])
def test_destination_refused_from_the_client_propagates_unwrapped(shape: str) -> None:
    with pytest.raises(DestinationRefused, match="resolved to a private address"):
        run_with_transport(_refusing_handler(shape), "https://mcp.example.com/mcp", NO_CHALLENGE_URL)


def test_works_through_the_guarded_client(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True)

    found = discover(server.url, NO_CHALLENGE_URL, mcp_client_factory()())

    assert found.authorization_server.issuer == server.base_url


def test_guarded_client_refusal_of_a_name_that_resolves_inside_propagates() -> None:
    resolved: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        resolved.append(host)
        return [ipaddress.ip_address("10.0.0.8")]

    http = guarded_client_factory(OutboundPolicy(rules=(), resolver=resolver))()

    with pytest.raises(DestinationRefused):
        discover("https://mcp.example.com/mcp", NO_CHALLENGE_URL, http)

    assert resolved == ["mcp.example.com"]


def test_sync_wrapper_uses_and_closes_the_callers_client(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(oauth_challenge=True)
    http = new_client()

    found = discover(server.url, challenge_for(f"{server.base_url}{PRM_PATH}"), http)

    assert found.authorization_server.issuer == server.base_url
    assert http.is_closed  # its connections belonged to the event loop discover() ran


# --- the new server modes --------------------------------------------------------------------------------------


def test_redirect_mode_answers_every_request(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(redirect_to="https://elsewhere.example/mcp", redirect_status=302)

    with httpx2.Client(follow_redirects=False, trust_env=False, timeout=5) as http:
        post = http.post(server.url, json={})
        get = http.get(server.url)

    assert (post.status_code, post.headers["location"]) == (302, "https://elsewhere.example/mcp")
    assert (get.status_code, get.headers["location"]) == (302, "https://elsewhere.example/mcp")
    assert server.requests()["count"] == 2


def _read_stream(url: str, *, at_least: int, seconds: float) -> tuple[httpx2.Headers, bytes]:
    received = bytearray()
    deadline = time.monotonic() + seconds
    with (
        httpx2.Client(trust_env=False, timeout=5) as http,
        http.stream("POST", url, json={}, headers={"accept": "application/json, text/event-stream"}) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= at_least or time.monotonic() > deadline:
                break
        return response.headers, bytes(received)


def test_endless_body_streams_more_than_a_mebibyte(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(endless_body=True)

    headers, body = _read_stream(server.url, at_least=3 * MIB, seconds=10)

    assert headers["content-type"] == "application/json"
    assert "content-length" not in headers
    assert len(body) >= 3 * MIB
    # The server noticed the disconnect and still answers.
    assert server.requests()["count"] == 1


def test_endless_sse_event_never_ends_its_event(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(endless_sse_event=True)

    headers, body = _read_stream(server.url, at_least=2 * MIB, seconds=10)

    assert headers["content-type"] == "text/event-stream"
    assert body.startswith(b"event: message\ndata: xxx")
    assert len(body) >= 2 * MIB
    assert b"\n\n" not in body


def test_trickle_sends_only_comments(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(trickle=True)

    headers, body = _read_stream(server.url, at_least=len(b": ping\n\n") * 3, seconds=3)

    assert headers["content-type"] == "text/event-stream"
    assert body == b": ping\n\n" * 3


def test_description_size(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(tools=4, description_size=5000)

    tools = list_remote_tools(server.url, {}).tools

    assert [len(tool.description or "") for tool in tools] == [5000] * 4
    assert tools[2].description is not None
    assert tools[2].description.startswith("Test tool number 2. xxx")


def test_well_known_requests_are_counted_separately(mcp_server: RunningMcpServer) -> None:
    with httpx2.Client(trust_env=False, timeout=5) as http:
        response = http.get(f"{mcp_server.base_url}{PRM_PATH}")

    assert response.status_code == 404  # metadata is served only with --oauth-challenge
    assert mcp_server.requests() == {
        "count": 0,
        "headers": [],
        "rejected": 0,
        "wellKnown": 1,
        "modern": 0,
        "methods": [],
        "resumptions": [],
    }
