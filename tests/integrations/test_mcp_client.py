"""integrations.mcp, the MCP client, against real MCP servers (tests.servers.mcp_server in subprocesses, 127.0.0.1)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx2
import pytest

from integrations import mcp
from integrations.mcp import (
    AuthChallenge,
    McpAuthRequired,
    McpClientError,
    McpHeadersRejected,
    McpLimitExceeded,
    McpProtocolError,
    McpTimeout,
    McpUnreachable,
    SyncLimits,
    ToolListing,
    parse_bearer_challenge,
)
from integrations.outbound import OutboundPolicy, guarded_client_factory

if TYPE_CHECKING:
    # Only for annotations: importing the plugin module at runtime would stop pytest from rewriting it.
    from tests.servers.fixtures import RunningMcpServer

pytest_plugins = ["tests.servers.fixtures"]

Factory = Callable[..., "RunningMcpServer"]

SECRET = "s3cret-value-never-shown"

# As the service wires it (mcp_servers.limits): every request through the guarded client, the test servers allowlisted.
LOOPBACK_ONLY = guarded_client_factory(OutboundPolicy.from_allowlist("127.0.0.1"))


def list_remote_tools(url: str, headers: dict[str, str], **options: Any) -> ToolListing:
    options.setdefault("http_client_factory", LOOPBACK_ONLY)
    return mcp.list_remote_tools(url, headers, **options)


async def alist_remote_tools(url: str, headers: dict[str, str], **options: Any) -> ToolListing:
    options.setdefault("http_client_factory", LOOPBACK_ONLY)
    return await mcp.alist_remote_tools(url, headers, **options)


def assert_clean(exc: McpClientError, *forbidden: str) -> None:
    """A user-facing error: a sentence, no secrets, and no SDK/httpx2 exception attached."""
    message = str(exc)
    assert message.endswith(".")
    for value in (SECRET, *forbidden):
        assert value not in message
    assert exc.__cause__ is None
    assert exc.__context__ is None


def test_streamable_http_lists_tools(mcp_server: RunningMcpServer) -> None:
    listing = list_remote_tools(mcp_server.url, {})

    assert listing.transport == "STREAMABLE_HTTP"
    assert [tool.name for tool in listing.tools] == ["tool_0", "tool_1", "tool_2"]
    tool = listing.tools[0]
    assert tool.title == "Tool 0"
    assert tool.description == "Test tool number 0."
    assert tool.input_schema["type"] == "object"
    assert set(tool.input_schema["properties"]) == {"text", "repeat"}


def test_a_modern_server_is_listed_over_the_2026_protocol(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(tools=25, page_size=10)

    listing = list_remote_tools(server.url, {})

    assert listing.transport == "STREAMABLE_HTTP"
    assert [tool.name for tool in listing.tools] == [f"tool_{i}" for i in range(25)]
    seen = server.requests()
    # server/discover, then three tools/list pages; no initialize, no session.
    assert seen["count"] == seen["modern"] == 4


def test_a_handshake_era_server_is_listed_after_initialize(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(tools=25, page_size=10, legacy_only=True)

    listing = list_remote_tools(server.url, {})

    assert listing.transport == "STREAMABLE_HTTP"
    assert [tool.name for tool in listing.tools] == [f"tool_{i}" for i in range(25)]
    assert listing.tools[0].annotations == {"readOnlyHint": True}
    assert server.requests()["modern"] == 1  # only the discover probe, which it refused


def test_read_only_hint_and_annotations_are_parsed(mcp_server: RunningMcpServer) -> None:
    tools = list_remote_tools(mcp_server.url, {}).tools

    assert [tool.read_only_hint for tool in tools] == [True, False, True]
    assert tools[0].annotations == {"readOnlyHint": True}
    assert tools[1].annotations == {"readOnlyHint": False}


def test_legacy_sse_is_detected_by_the_probe(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(transport="sse")

    listing = list_remote_tools(server.url, {})

    assert listing.transport == "SSE"
    assert [tool.name for tool in listing.tools] == ["tool_0", "tool_1", "tool_2"]


def test_preferred_sse_on_an_sse_server(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(transport="sse", tools=4)

    listing = list_remote_tools(server.url, {}, preferred_transport="SSE")

    assert listing.transport == "SSE"
    assert len(listing.tools) == 4


def test_preferred_sse_falls_back_to_the_probe(mcp_server: RunningMcpServer) -> None:
    listing = list_remote_tools(mcp_server.url, {}, preferred_transport="SSE")

    assert listing.transport == "STREAMABLE_HTTP"
    assert len(listing.tools) == 3


def test_pagination_returns_every_tool_in_order(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(tools=25, page_size=10)

    listing = list_remote_tools(server.url, {})

    assert [tool.name for tool in listing.tools] == [f"tool_{i}" for i in range(25)]


def test_pagination_over_sse(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(transport="sse", tools=25, page_size=10)

    listing = list_remote_tools(server.url, {})

    assert listing.transport == "SSE"
    assert [tool.name for tool in listing.tools] == [f"tool_{i}" for i in range(25)]


# The three kinds of server the probe tells apart, as options of the test server.
SERVER_KINDS = {"modern": {}, "handshake-era": {"legacy_only": True}, "sse": {"transport": "sse"}}


@pytest.mark.parametrize("kind", list(SERVER_KINDS))
def test_a_server_without_the_tools_capability_has_no_tools_and_is_not_asked(
    mcp_server_factory: Factory, kind: str
) -> None:
    server = mcp_server_factory(**SERVER_KINDS[kind], no_tools_capability=True)

    listing = list_remote_tools(server.url, {})

    assert listing.tools == []
    methods = server.requests()["methods"]
    assert "tools/list" not in methods
    assert ("server/discover" if kind == "modern" else "initialize") in methods


@pytest.mark.parametrize(("kind", "requests"), [("modern", 2), ("handshake-era", 5), ("sse", 5)])
def test_required_header_is_sent_on_every_request(mcp_server_factory: Factory, kind: str, requests: int) -> None:
    server = mcp_server_factory(**SERVER_KINDS[kind], require_header=("X-Api-Key", SECRET))

    listing = list_remote_tools(server.url, {"X-Api-Key": SECRET})

    assert len(listing.tools) == 3
    seen = server.requests()
    assert seen["rejected"] == 0
    assert seen["count"] >= requests
    assert "x-api-key" in seen["headers"]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong-" + SECRET}])
def test_missing_or_wrong_header_is_rejected(
    mcp_server_factory: Factory, transport: str, headers: dict[str, str]
) -> None:
    server = mcp_server_factory(transport=transport, require_header=("X-Api-Key", SECRET))

    with pytest.raises(McpHeadersRejected) as caught:
        list_remote_tools(server.url, headers)

    assert "refused the request" in str(caught.value)
    assert "static headers" in str(caught.value)
    assert "401" in str(caught.value)
    assert caught.value.status_code == 401
    assert not caught.value.transient
    assert_clean(caught.value, "wrong-", "X-Api-Key")


@pytest.mark.parametrize("preferred", [None, "SSE"])
def test_oauth_challenge_raises_auth_required(mcp_server_factory: Factory, preferred: Any) -> None:
    server = mcp_server_factory(oauth_challenge=True)

    with pytest.raises(McpAuthRequired) as caught:
        list_remote_tools(server.url, {"Authorization": f"Bearer {SECRET}"}, preferred_transport=preferred)

    assert caught.value.challenge == AuthChallenge(
        resource_metadata_url=f"{server.base_url}/.well-known/oauth-protected-resource",
        scope="tools:read",
        error=None,
    )
    assert not caught.value.transient
    assert_clean(caught.value, "Bearer")


def test_unexpected_status_is_a_protocol_error(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(status=500)

    with pytest.raises(McpProtocolError) as caught:
        list_remote_tools(server.url, {})

    assert "500" in str(caught.value)
    assert not caught.value.transient
    assert_clean(caught.value)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_gateway_and_rate_limit_statuses_are_transient(mcp_server_factory: Factory, status: int) -> None:
    server = mcp_server_factory(status=status)

    with pytest.raises(McpUnreachable) as caught:
        list_remote_tools(server.url, {})

    assert caught.value.transient
    assert str(status) in str(caught.value)


def test_not_an_mcp_endpoint(mcp_server: RunningMcpServer) -> None:
    with pytest.raises(McpProtocolError) as caught:
        list_remote_tools(f"{mcp_server.base_url}/not-mcp", {})

    assert "does not look like an MCP endpoint" in str(caught.value)
    assert_clean(caught.value)


def test_stopped_server_is_unreachable(mcp_server: RunningMcpServer) -> None:
    url = mcp_server.url
    mcp_server.stop()

    with pytest.raises(McpUnreachable) as caught:
        list_remote_tools(url, {"X-Api-Key": SECRET})

    assert caught.value.transient
    assert f"127.0.0.1:{mcp_server.port}" in str(caught.value)
    assert_clean(caught.value)


def test_total_time_is_bounded(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(list_delay=5)

    started = time.monotonic()
    with pytest.raises(McpTimeout) as caught:
        list_remote_tools(server.url, {}, limits=SyncLimits(total_seconds=1))
    elapsed = time.monotonic() - started

    assert elapsed < 2.5
    assert "1 seconds" in str(caught.value)
    assert_clean(caught.value)


def test_read_timeout_names_the_read_bound(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(list_delay=5)

    with pytest.raises(McpTimeout) as caught:
        list_remote_tools(server.url, {}, limits=SyncLimits(total_seconds=10, read_seconds=0.5))

    assert "0.5 seconds" in str(caught.value)


def test_too_many_tools(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(tools=30)

    with pytest.raises(McpLimitExceeded) as caught:
        list_remote_tools(server.url, {}, limits=SyncLimits(max_tools=10))

    assert "more than 10 tools" in str(caught.value)
    assert_clean(caught.value)


def test_too_many_tools_across_pages(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(tools=30, page_size=10)

    with pytest.raises(McpLimitExceeded) as caught:
        list_remote_tools(server.url, {}, limits=SyncLimits(max_tools=25))

    assert "more than 25 tools" in str(caught.value)


def test_too_many_pages(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(tools=30, page_size=5)

    with pytest.raises(McpLimitExceeded) as caught:
        list_remote_tools(server.url, {}, limits=SyncLimits(max_pages=3))

    assert "more than 3 pages" in str(caught.value)
    # Exactly as many pages as allowed is fine.
    assert len(list_remote_tools(server.url, {}, limits=SyncLimits(max_pages=6)).tools) == 30


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_response_size_is_bounded(mcp_server_factory: Factory, transport: str) -> None:
    server = mcp_server_factory(transport=transport, tools=200)

    with pytest.raises(McpLimitExceeded) as caught:
        list_remote_tools(server.url, {}, limits=SyncLimits(max_response_bytes=8_000))

    assert "8000 bytes" in str(caught.value)
    assert_clean(caught.value)


def test_control_api_changes_the_listing(mcp_server_factory: Factory) -> None:
    server = mcp_server_factory(tools=4)

    server.control({"drop": ["tool_1"], "describe": {"tool_0": "Changed."}})
    changed = list_remote_tools(server.url, {}).tools
    server.control({"restore": True})
    restored = list_remote_tools(server.url, {}).tools

    assert [tool.name for tool in changed] == ["tool_0", "tool_2", "tool_3"]
    assert changed[0].description == "Changed."
    assert [tool.name for tool in restored] == ["tool_0", "tool_1", "tool_2", "tool_3"]
    assert restored[0].description == "Test tool number 0."


@pytest.mark.parametrize("kind", list(SERVER_KINDS))
def test_every_request_goes_through_the_factory(mcp_server_factory: Factory, kind: str) -> None:
    server = mcp_server_factory(**SERVER_KINDS[kind])
    calls: list[dict[str, Any]] = []
    sent: list[str] = []

    def factory(**kwargs: Any) -> httpx2.AsyncClient:
        calls.append(kwargs)

        async def record(request: httpx2.Request) -> None:
            assert request.headers["x-trace"] == "t-1"
            sent.append(request.method)

        return httpx2.AsyncClient(**kwargs, event_hooks={"request": [record]})

    listing = list_remote_tools(server.url, {"X-Trace": "t-1"}, http_client_factory=factory)

    assert len(listing.tools) == 3
    assert len(calls) == 1
    assert calls[0]["headers"] == {"X-Trace": "t-1"}
    assert "x-trace" in server.requests()["headers"]
    if kind == "sse":
        # The discover and initialize probes (405 each), the event-stream GET, then initialize, initialized and
        # tools/list POSTs.
        assert sent.count("GET") == 1
        assert sent.count("POST") == 5
    elif kind == "handshake-era":
        # The discover probe (400), the initialize probe and its DELETE, then the SDK's initialize, initialized,
        # tools/list and session DELETE.
        assert sent.count("POST") == 5
        assert sent.count("DELETE") == 2
    else:
        # The discover probe, then tools/list: stateless, nothing to open or release.
        assert sent == ["POST", "POST"]


def test_factory_can_veto_requests_with_its_own_error(mcp_server: RunningMcpServer) -> None:
    def factory(**kwargs: Any) -> httpx2.AsyncClient:
        async def refuse(request: httpx2.Request) -> None:
            raise McpUnreachable("Blocked by the outbound policy.")

        return httpx2.AsyncClient(**kwargs, event_hooks={"request": [refuse]})

    with pytest.raises(McpUnreachable, match="Blocked by the outbound policy"):
        list_remote_tools(mcp_server.url, {}, http_client_factory=factory)
    assert mcp_server.requests()["count"] == 0


def test_invalid_url() -> None:
    with pytest.raises(McpProtocolError) as caught:
        list_remote_tools("ftp://127.0.0.1/mcp", {})

    assert "not a valid http or https URL" in str(caught.value)


@pytest.mark.anyio
async def test_async_api(mcp_server: RunningMcpServer) -> None:
    listing = await alist_remote_tools(mcp_server.url, {}, preferred_transport="STREAMABLE_HTTP")

    assert listing.transport == "STREAMABLE_HTTP"
    assert len(listing.tools) == 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            ['Bearer resource_metadata="https://a.example/.well-known/x", scope="read write"'],
            AuthChallenge("https://a.example/.well-known/x", "read write", None),
        ),
        (
            ["bearer error=insufficient_scope, scope=tools:read,resource_metadata=https://a.example/m"],
            AuthChallenge("https://a.example/m", "tools:read", "insufficient_scope"),
        ),
        (
            ['Basic realm="x", Bearer realm="y", error="invalid_token"', "Negotiate abc=="],
            AuthChallenge(None, None, "invalid_token"),
        ),
        (['Basic realm="x"', "Bearer"], AuthChallenge(None, None, None)),
        (['Bearer scope="a \\"quoted\\" b"'], AuthChallenge(None, 'a "quoted" b', None)),
        (['Basic realm="Bearer"'], None),
        ([], None),
    ],
)
def test_parse_bearer_challenge(values: list[str], expected: AuthChallenge | None) -> None:
    assert parse_bearer_challenge(values) == expected
