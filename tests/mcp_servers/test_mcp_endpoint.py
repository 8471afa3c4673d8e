"""The organization's MCP endpoint and the per-server endpoint, used by the official Python SDK's client over
Streamable HTTP, in both protocol eras (`legacy`: the 2025-11-25 handshake and a session; `auto`: the 2026-07-28
stateless protocol), against real SDK-built upstream servers.

What it shows: tools/list is the caller's catalog (paged); tools/call runs ALWAYS_ALLOW tools and returns the
upstream's result unchanged; NEEDS_APPROVAL asks through elicitation (accept runs, decline denies, cancel leaves it
pending) or, without elicitation, answers a tool error with how to approve, after which the same call goes through;
BLOCKED and unknown tools never reach the upstream; progress, log messages, sampling and elicitation of the upstream
reach the client; a cancelled call is cancelled at the upstream; 401 with the resource server's WWW-Authenticate,
Origin and Host checks, sessions; every call is in the audit trail with channel MCP.

The endpoint serves requests from the live server's threads and the process's background loop, which write through
their own database connections: the tests commit (transaction=True).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from django.utils import timezone
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_servers.models import McpSession, ToolCall, ToolCallChannel
from mcp_servers.services.mcp_sessions import mcp_sessions_purge_idle
from tests.conftest import Caller
from tests.mcp_servers.test_tool_calls import connect, tool_posts
from tests.servers.fixtures import REPO_ROOT, START_TIMEOUT_SECONDS, _wait_for_listening_line

pytestmark = pytest.mark.django_db(transaction=True)

MODES = ["legacy", "auto"]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(autouse=True)
def _call_settings(settings: Any, live_server: Any) -> None:
    settings.MCP_CALL_WAIT_SECONDS = 10.0
    settings.MCP_CALL_TIMEOUT_SECONDS = 10.0
    settings.MCP_CALL_READ_SECONDS = 10.0
    settings.PUBLIC_BASE_URL = live_server.url


@pytest.fixture
def remote(mcp_server_factory: Any) -> Any:
    """`tool_0` .. `tool_3` (even ones ALWAYS_ALLOW, odd ones NEEDS_APPROVAL) and the call-test tools."""
    return mcp_server_factory(tools=4, call_tools=True)


@pytest.fixture
def server(admin: Caller, remote: Any) -> dict[str, Any]:
    return connect(admin, remote.url)


def org_endpoint(caller: Caller, live_server: Any) -> str:
    return f"{live_server.url}/api/public/organizations/{caller.organization.pk}/mcp"


def server_endpoint(caller: Caller, live_server: Any, server: dict[str, Any]) -> str:
    return f"{live_server.url}/api/public/organizations/{caller.organization.pk}/mcp-servers/{server['id']}/mcp"


def use(url: str, key: str, mode: str, fn: Callable[[Client], Awaitable[Any]], **callbacks: Any) -> Any:
    """`fn(client)` with an SDK client connected to `url` with the API key."""

    async def run() -> Any:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30, trust_env=False) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode, **callbacks) as client,  # type: ignore[arg-type]
        ):
            return await fn(client)

    return anyio.run(run)


async def all_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def text_of(result: types.CallToolResult) -> str:
    first = result.content[0]
    assert isinstance(first, types.TextContent)
    return first.text


def calls_of(caller: Caller) -> list[ToolCall]:
    return list(ToolCall.objects.filter(requested_by=caller.user).order_by("created_at"))


def set_mode(admin: Caller, server: dict[str, Any], tool_name: str, mode: str) -> None:
    tool = next(t for t in server["tools"] if t["name"] == tool_name)
    url = f"{admin.create_url()}/{server['id']}/tools/{tool['id']}"
    assert admin.client.patch(url, {"accessMode": mode}, format="json").status_code == 200


# --- tools/list -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_tools_list_is_the_callers_catalog(
    admin: Caller, member: Caller, live_server: Any, mcp_server_factory: Any, server: dict[str, Any], mode: str
) -> None:
    private = connect(
        admin, mcp_server_factory(tools=2).url, name="Private tools", everyoneInOrganizationCanAccess=False
    )
    set_mode(admin, server, "tool_2", "BLOCKED")
    catalog = member.client.get(f"/api/public/organizations/{member.organization.pk}/mcp-tools?format=mcp").json()

    listed = use(org_endpoint(member, live_server), member.key, mode, all_tools)

    documents = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed]
    assert [d["name"] for d in documents] == [t["name"] for t in catalog["data"]]
    for document, exported in zip(documents, catalog["data"], strict=True):
        for key in ("description", "inputSchema", "outputSchema", "annotations"):
            assert document.get(key) == exported.get(key), (document["name"], key)
    names = {d["name"] for d in documents}
    assert "call_tools__tool_0" in names
    assert "call_tools__tool_2" not in names  # blocked
    assert not any(name.startswith(private["serverLabel"]) for name in names)  # a server the member may not use
    forecast = next(d for d in documents if d["name"] == "call_tools__forecast")
    assert forecast["outputSchema"]["properties"]["degrees"] == {"title": "Degrees", "type": "integer"}

    # An admin may use every server.
    admin_names = {t.name for t in use(org_endpoint(admin, live_server), admin.key, mode, all_tools)}
    assert {"private_tools__tool_0", "private_tools__tool_1"} <= admin_names


@pytest.mark.parametrize("mode", MODES)
def test_tools_list_pages_with_cursors(
    settings: Any, admin: Caller, live_server: Any, server: dict[str, Any], mode: str
) -> None:
    settings.MCP_ENDPOINT_PAGE_SIZE = 3

    async def pages(client: Client) -> list[list[str]]:
        seen: list[list[str]] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            seen.append([tool.name for tool in page.tools])
            cursor = page.next_cursor
            if not cursor:
                break
        with pytest.raises(MCPError) as bad:
            await client.list_tools(cursor="not a cursor!")
        assert bad.value.error.code == types.INVALID_PARAMS
        return seen

    seen = use(server_endpoint(admin, live_server, server), admin.key, mode, pages)
    flat = [name for page in seen for name in page]
    assert all(len(page) <= 3 for page in seen)
    assert len(seen) >= 3
    assert flat == sorted(flat)
    assert len(flat) == len(set(flat)) == len(server["tools"])  # every tool once, under its own name
    assert "tool_0" in flat


def test_the_per_server_endpoint_is_404_for_a_server_the_caller_may_not_use(
    admin: Caller, member: Caller, other_admin: Caller, live_server: Any, mcp_server_factory: Any
) -> None:
    private = connect(admin, mcp_server_factory(tools=1).url, everyoneInOrganizationCanAccess=False)
    with httpx2.Client(trust_env=False, timeout=10) as http:
        for caller in (member, other_admin):
            response = http.post(
                server_endpoint(member, live_server, private),
                json=INITIALIZE,
                headers={**ACCEPT, "Authorization": f"Bearer {caller.key}"},
            )
            assert response.status_code == 404
            assert response.json()["error"]["title"] == "NotFound"


# --- tools/call -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_an_always_allowed_call_returns_the_upstreams_result_unchanged(
    member: Caller, live_server: Any, remote: Any, server: dict[str, Any], mode: str
) -> None:
    async def direct(client: Client) -> list[types.CallToolResult]:
        return [
            await client.call_tool("forecast", {"city": "Lisbon"}),
            await client.call_tool("fail_tool", {"message": "no such order"}),
        ]

    async def through(client: Client) -> list[types.CallToolResult]:
        return [
            await client.call_tool("call_tools__forecast", {"city": "Lisbon"}),
            await client.call_tool("call_tools__fail_tool", {"message": "no such order"}),
        ]

    async def direct_session() -> list[types.CallToolResult]:
        async with Client(remote.url, mode=mode) as client:
            return await direct(client)

    expected = anyio.run(direct_session)
    got = use(org_endpoint(member, live_server), member.key, mode, through)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.content == theirs.content
        assert mine.structured_content == theirs.structured_content
        assert mine.is_error == theirs.is_error
    assert got[0].structured_content == {"city": "Lisbon", "degrees": 16, "sky": "clear"}
    if mode == "auto":  # the 2026 result names the server that answered: the endpoint, not the upstream
        assert (got[0].meta or {})["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-connectors"
    assert got[1].is_error is True

    # The per-server endpoint: the same tool under its own name.
    one = use(server_endpoint(member, live_server, server), member.key, mode, direct)
    assert one[0].structured_content == expected[0].structured_content

    # Every call is in the audit trail, as a REST call is, with the MCP channel.
    calls = calls_of(member)
    assert [(c.tool_name, c.status, c.channel) for c in calls] == [
        ("forecast", "COMPLETED", ToolCallChannel.MCP),
        ("fail_tool", "COMPLETED", ToolCallChannel.MCP),
        ("forecast", "COMPLETED", ToolCallChannel.MCP),
        ("fail_tool", "COMPLETED", ToolCallChannel.MCP),
    ]
    assert all(c.api_key is not None and member.key.startswith(f"mcpk_{c.api_key.prefix}_") for c in calls)
    listed = member.client.get(f"/api/public/organizations/{member.organization.pk}/tool-calls").json()["data"]
    assert {entry["channel"] for entry in listed} == {"MCP"}


@pytest.mark.parametrize("mode", MODES)
def test_blocked_and_unknown_tools_never_reach_the_upstream(
    admin: Caller, member: Caller, live_server: Any, remote: Any, server: dict[str, Any], mode: str
) -> None:
    set_mode(admin, server, "tool_0", "BLOCKED")
    before = tool_posts(remote)

    async def calls(client: Client) -> tuple[types.CallToolResult, MCPError, MCPError]:
        blocked = await client.call_tool("call_tools__tool_0", {"text": "x"})
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("call_tools__no_such_tool", {})
        with pytest.raises(MCPError) as other_server:
            await client.call_tool("someone_else__tool_0", {})
        return blocked, unknown.value, other_server.value

    blocked, unknown, other_server = use(org_endpoint(member, live_server), member.key, mode, calls)
    assert blocked.is_error is True
    assert "blocked" in text_of(blocked)
    assert unknown.error.code == other_server.error.code == types.INVALID_PARAMS
    assert "Unknown tool" in unknown.error.message
    assert tool_posts(remote) == before  # the upstream saw nothing
    assert [(c.tool_name, c.status) for c in calls_of(member)] == [("tool_0", "REFUSED")]


def test_arguments_outside_the_input_schema_are_a_tool_error_and_never_sent(
    member: Caller, live_server: Any, remote: Any, server: dict[str, Any]
) -> None:
    before = tool_posts(remote)

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("call_tools__forecast", {"city": 42})

    result = use(org_endpoint(member, live_server), member.key, "legacy", call)
    assert result.is_error is True
    assert "city" in text_of(result)
    assert tool_posts(remote) == before
    assert calls_of(member) == []


# --- NEEDS_APPROVAL -------------------------------------------------------------------------------------------------


def answering(action: str, asked: list[types.ElicitRequestParams]) -> Callable[..., Awaitable[types.ElicitResult]]:
    async def on_elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action=action, content={} if action == "accept" else None)  # type: ignore[arg-type]

    return on_elicitation


@pytest.mark.parametrize("mode", MODES)
def test_an_approval_asked_by_elicitation_and_accepted_runs_the_call(
    member: Caller, live_server: Any, remote: Any, server: dict[str, Any], mode: str
) -> None:
    asked: list[types.ElicitRequestParams] = []

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("call_tools__tool_1", {"text": "ship it"})

    result = use(
        org_endpoint(member, live_server), member.key, mode, call, elicitation_callback=answering("accept", asked)
    )
    assert not result.is_error
    assert text_of(result) == "tool_1: ship it"
    assert len(asked) == 1
    assert "tool_1" in asked[0].message
    assert "ship it" in asked[0].message
    [recorded] = calls_of(member)
    assert (recorded.status, recorded.channel) == ("COMPLETED", ToolCallChannel.MCP)
    assert recorded.decided_by == member.user


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("action", "status"), [("decline", "DENIED"), ("cancel", "AWAITING_APPROVAL")])
def test_a_declined_or_cancelled_approval_does_not_run_the_call(
    member: Caller, live_server: Any, remote: Any, server: dict[str, Any], mode: str, action: str, status: str
) -> None:
    before = tool_posts(remote)
    asked: list[types.ElicitRequestParams] = []

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("call_tools__tool_1", {"text": "no"})

    result = use(
        org_endpoint(member, live_server), member.key, mode, call, elicitation_callback=answering(action, asked)
    )
    assert result.is_error is True
    assert len(asked) == 1
    [recorded] = calls_of(member)
    assert recorded.status == status
    assert tool_posts(remote) == before
    if action == "decline":
        assert "denied" in text_of(result)
    else:
        assert "needs approval" in text_of(result)


@pytest.mark.parametrize("mode", MODES)
def test_without_elicitation_a_pending_call_says_how_to_approve_it_and_then_goes_through(
    member: Caller, live_server: Any, remote: Any, server: dict[str, Any], mode: str
) -> None:
    before = tool_posts(remote)
    url = org_endpoint(member, live_server)

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("call_tools__tool_1", {"text": "later"})

    pending = use(url, member.key, mode, call)
    assert pending.is_error is True
    meta = (pending.meta or {})["mcpConnectors"]
    call_id = meta["callId"]
    approve = f"{live_server.url}/api/public/organizations/{member.organization.pk}/tool-calls/{call_id}/approve"
    assert meta["approveUrl"] == approve
    assert call_id in text_of(pending)
    assert approve in text_of(pending)
    assert tool_posts(remote) == before

    # The same call again, still unapproved: the same pending call, not a second one.
    again = use(url, member.key, mode, call)
    assert again.is_error is True
    assert (again.meta or {})["mcpConnectors"]["callId"] == call_id
    assert len(calls_of(member)) == 1

    approved = member.client.post(f"/api/public/organizations/{member.organization.pk}/tool-calls/{call_id}/approve")
    assert approved.status_code == 200, approved.json()
    ran = tool_posts(remote)
    assert ran > before

    # Now the same call (same tool, same arguments) answers with the approved call's result, once.
    done = use(url, member.key, mode, call)
    assert not done.is_error
    assert text_of(done) == "tool_1: later"
    assert tool_posts(remote) == ran  # the approved call's result, not a second run
    assert ToolCall.objects.get(pk=call_id).delivered_at is not None

    # Made once more, it is a new call that needs approval again.
    fresh = use(url, member.key, mode, call)
    assert fresh.is_error is True
    assert (fresh.meta or {})["mcpConnectors"]["callId"] != call_id
    assert len(calls_of(member)) == 2


# --- What the upstream sends on the way -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_progress_notifications_reach_the_client(
    member: Caller, live_server: Any, server: dict[str, Any], mode: str
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool(
            "call_tools__progress_tool", {"steps": 3, "pause": 0.05}, progress_callback=on_progress
        )

    result = use(org_endpoint(member, live_server), member.key, mode, call)
    assert text_of(result) == "done after 3 steps"
    assert seen == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]


@pytest.fixture
def conformance_upstream() -> Iterator[str]:
    """tests/servers/conformance_server.py: tools that log, sample and elicit while they run."""
    command = [sys.executable, "-m", "tests.servers.conformance_server", "--port", "0", "--exit-with-parent"]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr)
        try:
            line = _wait_for_listening_line(process, START_TIMEOUT_SECONDS)
            if line is None:
                stderr.seek(0)
                pytest.fail(f"the conformance server did not start:\n{stderr.read().decode(errors='replace')}")
            yield line.split(" ", 1)[1]
        finally:
            process.terminate()
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()


@pytest.fixture
def relaying(admin: Caller, conformance_upstream: str) -> dict[str, Any]:
    server = connect(admin, conformance_upstream, name="Relaying")
    for name in ("test_tool_with_logging", "test_sampling", "test_elicitation"):
        set_mode(admin, server, name, "ALWAYS_ALLOW")
    return server


@pytest.mark.parametrize("mode", MODES)
def test_log_messages_sampling_and_elicitation_of_the_upstream_reach_the_client(
    member: Caller, live_server: Any, relaying: dict[str, Any], mode: str
) -> None:
    logs: list[tuple[str, Any]] = []
    sampled: list[types.CreateMessageRequestParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append((params.level, params.data))

    async def on_sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        sampled.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="forty-two"), model="test-model"
        )

    async def on_elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    async def calls(client: Client) -> list[types.CallToolResult]:
        return [
            await client.call_tool("relaying__test_tool_with_logging", {}),
            await client.call_tool("relaying__test_sampling", {"prompt": "the answer?"}),
            await client.call_tool("relaying__test_elicitation", {"message": "who are you?"}),
        ]

    logged, sampling, elicited = use(
        org_endpoint(member, live_server),
        member.key,
        mode,
        calls,
        logging_callback=on_log,
        log_level="debug",
        sampling_callback=on_sampling,
        elicitation_callback=on_elicitation,
    )
    assert not logged.is_error
    assert [data for _, data in logs] == ["Tool execution started", "Tool processing data", "Tool execution completed"]
    if mode == "legacy":  # a handshake-era upstream session: the server asks its client on the open stream
        assert text_of(sampling) == "LLM response: forty-two"
        assert [m.content.text for m in sampled[0].messages] == ["the answer?"]  # type: ignore[union-attr]
        assert "ada@example.com" in text_of(elicited)


def test_log_messages_follow_the_sessions_level(member: Caller, live_server: Any, relaying: dict[str, Any]) -> None:
    logs: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.level)

    async def call(client: Client) -> list[str]:
        await client.session.set_logging_level("warning")
        assert not (await client.call_tool("test_tool_with_logging", {})).is_error
        quiet = list(logs)  # the tool logs at info
        await client.session.set_logging_level("info")
        assert not (await client.call_tool("test_tool_with_logging", {})).is_error
        return quiet

    url = server_endpoint(member, live_server, relaying)
    assert use(url, member.key, "legacy", call, logging_callback=on_log) == []
    assert logs == ["info", "info", "info"]


def test_a_cancelled_call_is_cancelled_at_the_upstream(
    member: Caller, live_server: Any, remote: Any, server: dict[str, Any]
) -> None:
    async def call_and_cancel(client: Client) -> None:
        with anyio.move_on_after(1.5):
            await client.call_tool("call_tools__slow_tool", {"seconds": 30})

    started = time.monotonic()
    use(org_endpoint(member, live_server), member.key, "legacy", call_and_cancel)
    deadline = time.monotonic() + 10
    recorded = calls_of(member)
    while time.monotonic() < deadline and (not recorded or recorded[0].status == "RUNNING"):
        time.sleep(0.1)
        recorded = calls_of(member)
    assert [(c.tool_name, c.status) for c in recorded] == [("slow_tool", "CANCELLED")]
    assert time.monotonic() - started < 15


# --- HTTP: authentication, origins, sessions ------------------------------------------------------------------------


def test_a_bad_key_is_a_401_that_names_the_protected_resource_metadata(admin: Caller, live_server: Any) -> None:
    url = org_endpoint(admin, live_server)
    path = url.removeprefix(live_server.url)
    with httpx2.Client(trust_env=False, timeout=10) as http:
        for authorization in (None, "Bearer mcpk_nope_nope", f"Basic {admin.key}"):
            headers = ACCEPT if authorization is None else {**ACCEPT, "Authorization": authorization}
            response = http.post(url, json=INITIALIZE, headers=headers)
            assert response.status_code == 401, authorization
            assert response.json()["error"]["title"] == "Unauthorized"
            metadata_url = f"{live_server.url}/.well-known/oauth-protected-resource{path}"
            assert response.headers["WWW-Authenticate"] == (f'Bearer realm="mcp", resource_metadata="{metadata_url}"')
        metadata = http.get(metadata_url)
    assert metadata.status_code == 200
    assert metadata.json()["resource"] == url
    assert metadata.json()["bearer_methods_supported"] == ["header"]


def test_origin_and_host_are_checked(settings: Any, admin: Caller, live_server: Any) -> None:
    url = org_endpoint(admin, live_server)
    headers = {**ACCEPT, "Authorization": f"Bearer {admin.key}"}
    with httpx2.Client(trust_env=False, timeout=10) as http:
        foreign = http.post(url, json=INITIALIZE, headers={**headers, "Origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert foreign.json()["error"]["title"] == "Forbidden"
        own = http.post(url, json=INITIALIZE, headers={**headers, "Origin": live_server.url})
        assert own.status_code == 200
        settings.MCP_ENDPOINT_ALLOWED_ORIGINS = ["https://app.example.com"]
        listed = http.post(url, json=INITIALIZE, headers={**headers, "Origin": "https://app.example.com"})
        assert listed.status_code == 200
        rebound = http.post(url, json=INITIALIZE, headers={**headers, "Host": "evil.example"})
        assert rebound.status_code == 400


def test_sessions_belong_to_their_key_and_end_on_delete_or_when_idle(
    admin: Caller, member: Caller, live_server: Any, server: dict[str, Any]
) -> None:
    url = org_endpoint(admin, live_server)
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    with httpx2.Client(trust_env=False, timeout=10) as http:
        opened = http.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {admin.key}"})
        assert opened.status_code == 200
        session_id = opened.headers["Mcp-Session-Id"]
        mine = {**ACCEPT, "Authorization": f"Bearer {admin.key}", "Mcp-Session-Id": session_id}
        theirs = {**mine, "Authorization": f"Bearer {member.key}"}
        assert http.post(url, json=ping, headers=mine).json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
        assert http.post(url, json=ping, headers=theirs).status_code == 404  # another key's session
        assert (
            http.post(url.replace("/mcp", f"/mcp-servers/{server['id']}/mcp"), json=ping, headers=mine).status_code
            == 404
        )
        missing = http.post(url, json=ping, headers={**ACCEPT, "Authorization": f"Bearer {admin.key}"})
        assert missing.status_code == 400
        assert http.get(url, headers=mine).status_code == 405
        assert http.delete(url, headers=mine).status_code == 200
        assert http.post(url, json=ping, headers=mine).status_code == 404

        again = http.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {admin.key}"})
        assert McpSession.objects.count() == 1
        McpSession.objects.update(last_seen_at=timezone.now() - timedelta(days=2))
        idle = {**mine, "Mcp-Session-Id": again.headers["Mcp-Session-Id"]}
        assert http.post(url, json=ping, headers=idle).status_code == 404  # idle past MCP_ENDPOINT_SESSION_IDLE_SECONDS
    assert mcp_sessions_purge_idle() == 1
    assert McpSession.objects.count() == 0


def test_a_json_only_client_gets_json_answers(admin: Caller, live_server: Any, server: dict[str, Any]) -> None:
    url = org_endpoint(admin, live_server)
    headers = {"Accept": "application/json", "Content-Type": "application/json", "Authorization": f"Bearer {admin.key}"}
    with httpx2.Client(trust_env=False, timeout=10) as http:
        opened = http.post(url, json=INITIALIZE, headers=headers)
        session = {**headers, "Mcp-Session-Id": opened.headers["Mcp-Session-Id"]}
        call = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "call_tools__progress_tool",
                "arguments": {"steps": 2, "pause": 0.05},
                "_meta": {"progressToken": 7},
            },
        }
        answered = http.post(url, json=call, headers=session)
        assert answered.headers["content-type"].startswith("application/json")
        assert answered.json()["result"]["content"] == [{"type": "text", "text": "done after 2 steps"}]
        unacceptable = http.post(url, json=call, headers={**session, "Accept": "text/html"})
        assert unacceptable.status_code == 406
        broken = http.post(url, content=b"{nope", headers=session)
        assert broken.status_code == 400
        assert broken.json()["error"]["code"] == types.PARSE_ERROR
        not_jsonrpc = http.post(url, json=[1, 2], headers=session)
        assert not_jsonrpc.status_code == 400
    assert json.loads(ToolCall.objects.get().arguments) == {"steps": 2, "pause": 0.05}
