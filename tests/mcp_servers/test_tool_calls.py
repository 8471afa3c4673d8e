"""Tool calls through the service, against real SDK-built MCP servers: governance by access mode, approvals and
denials, expiry, a definition that changes before approval, bounds against servers that hang or misbehave, OAuth
refresh and step-up mid-call, the audit trail, and organization isolation on every route.

The calls run in the process's background event loop, which writes through its own database connections:
the tests commit (transaction=True).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from mcp_servers.models import AccessMode, McpServer, McpTool, ToolCall
from mcp_servers.services.tool_calls import tool_calls_upkeep
from organizations.models import Membership
from tests.conftest import Caller, make_caller
from tests.mcp_servers.test_oauth_flow import approve, callback
from tests.test_secrets import database_dump

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _call_settings(settings: Any) -> None:
    settings.MCP_CALL_WAIT_SECONDS = 10.0
    settings.MCP_CALL_TIMEOUT_SECONDS = 10.0
    settings.MCP_CALL_READ_SECONDS = 10.0


def calls_url(caller: Caller) -> str:
    return f"/api/public/organizations/{caller.organization.pk}/tool-calls"


def connect(admin: Caller, url: str, name: str = "Call tools", **body: Any) -> dict[str, Any]:
    response = admin.client.post(admin.create_url(), {"displayName": name, "serverUrl": url, **body}, format="json")
    assert response.status_code == 201, response.json()
    server: dict[str, Any] = response.json()["data"]
    assert server["setupState"] == "CONNECTED", server["syncErrorMessage"]
    return server


def call(caller: Caller, tool: str, arguments: dict[str, Any] | None = None, **body: Any) -> Any:
    payload = {"tool": tool, "arguments": arguments if arguments is not None else {}, **body}
    return caller.client.post(calls_url(caller), payload, format="json")


def error_of(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def tool_posts(remote: Any) -> int:
    """Every request the server saw on its MCP path: unchanged means nothing reached it."""
    count: int = remote.requests()["count"]
    return count


@pytest.fixture
def remote(mcp_server_factory: Any) -> Any:
    """`tool_0` .. `tool_3` (even ones read-only: ALWAYS_ALLOW; odd ones NEEDS_APPROVAL) and the call-test tools."""
    return mcp_server_factory(tools=4, call_tools=True)


@pytest.fixture
def server(admin: Caller, remote: Any) -> dict[str, Any]:
    return connect(admin, remote.url)


# --- ALWAYS_ALLOW ---------------------------------------------------------------------------------------------------


def test_an_always_allowed_call_runs_now_and_answers_with_the_result(
    admin: Caller, member: Caller, server: dict[str, Any]
) -> None:
    response = call(member, "call_tools__tool_0", {"text": "hi", "repeat": 2})
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["status"] == "COMPLETED"
    assert data["result"]["content"] == [{"type": "text", "text": "tool_0: hihi"}]
    assert data["result"]["structuredContent"] == {"result": "tool_0: hihi"}
    assert data["result"]["isError"] is False
    assert data["arguments"] == {"text": "hi", "repeat": 2}
    assert (data["serverId"], data["serverLabel"], data["toolName"]) == (server["id"], "call_tools", "tool_0")
    assert data["requestedBy"] == {"userId": str(member.user.pk), "email": member.user.email}
    assert data["apiKeyPrefix"] == member.key.split("_")[1]
    assert isinstance(data["durationMs"], int)
    assert data["startedAt"] <= data["finishedAt"]
    assert (data["error"], data["requiresAuth"], data["authUrl"]) == (None, False, None)

    # The same tool by server id and its own name.
    by_id = call(member, "", serverId=server["id"], toolName="tool_2", arguments={"text": "x"})
    assert by_id.status_code == 400  # `tool` and `serverId` together
    by_id = member.client.post(
        calls_url(member), {"serverId": server["id"], "toolName": "tool_2", "arguments": {"text": "x"}}, format="json"
    )
    assert by_id.status_code == 200, by_id.json()
    assert by_id.json()["data"]["result"]["content"][0]["text"] == "tool_2: x"


def test_structured_content_and_tool_errors_are_results(member: Caller, server: dict[str, Any]) -> None:
    structured = call(member, "call_tools__forecast", {"city": "Lisbon"})
    assert structured.status_code == 200
    assert structured.json()["data"]["result"]["structuredContent"] == {"city": "Lisbon", "degrees": 16, "sky": "clear"}

    failed = call(member, "call_tools__fail_tool", {"message": "no such order"})
    assert failed.status_code == 200  # a tool error is a result, not an HTTP error
    data = failed.json()["data"]
    assert data["status"] == "COMPLETED"
    assert data["result"]["isError"] is True
    assert "no such order" in data["result"]["content"][0]["text"]


@pytest.mark.parametrize("kind", [{"transport": "sse"}, {"legacy_only": True}])
def test_calls_use_the_servers_transport(admin: Caller, mcp_server_factory: Any, kind: dict[str, Any]) -> None:
    remote = mcp_server_factory(tools=1, **kind)
    created = connect(admin, remote.url, name="Other era")
    for text in ("a", "b"):  # the second call reuses the open session
        response = call(admin, "other_era__tool_0", {"text": text})
        assert response.status_code == 200, response.json()
        assert response.json()["data"]["result"]["content"][0]["text"] == f"tool_0: {text}"
    assert created["transportType"] == ("SSE" if kind.get("transport") == "sse" else "STREAMABLE_HTTP")


def test_static_headers_go_with_every_call(admin: Caller, mcp_server_factory: Any) -> None:
    secret = f"canary-{uuid.uuid4().hex}"
    remote = mcp_server_factory(tools=1, require_header=("X-Api-Key", secret))
    connect(admin, remote.url, name="Keyed", headers=[{"key": "X-Api-Key", "value": secret}])
    response = call(admin, "keyed__tool_0", {"text": "ok"})
    assert response.status_code == 200
    assert remote.requests()["rejected"] == 0


# --- NEEDS_APPROVAL ------------------------------------------------------------------------------------------------


def test_a_call_needing_approval_waits_and_runs_exactly_what_was_approved(
    member: Caller, server: dict[str, Any], remote: Any
) -> None:
    before = tool_posts(remote)
    pending = call(member, "call_tools__tool_1", {"text": "approved text", "repeat": 3})
    assert pending.status_code == 202
    data = pending.json()["data"]
    assert data["status"] == "AWAITING_APPROVAL"
    assert data["result"] is None
    assert pending["Location"].endswith(f"/tool-calls/{data['id']}")
    expires = timezone.datetime.fromisoformat(data["expiresAt"])
    assert timedelta(minutes=14) < expires - timezone.now() <= timedelta(minutes=15)
    assert tool_posts(remote) == before  # nothing reached the server

    approved = member.client.post(f"{calls_url(member)}/{data['id']}/approve")
    assert approved.status_code == 200, approved.json()
    result = approved.json()["data"]
    assert result["status"] == "COMPLETED"
    assert result["result"]["content"][0]["text"] == "tool_1: approved textapproved textapproved text"
    assert result["decidedBy"]["userId"] == str(member.user.pk)

    again = member.client.post(f"{calls_url(member)}/{data['id']}/approve")
    assert again.status_code == 409
    assert error_of(again)["title"] == "Conflict"


def test_an_admin_approves_a_members_call_and_other_members_cannot(
    admin: Caller, member: Caller, server: dict[str, Any]
) -> None:
    pending = call(member, "call_tools__tool_3", {"text": "t"}).json()["data"]
    other = make_caller(organization=member.organization, email="other@acme.test", role=Membership.Role.MEMBER)
    assert other.client.post(f"{calls_url(other)}/{pending['id']}/approve").status_code == 404
    assert other.client.post(f"{calls_url(other)}/{pending['id']}/deny").status_code == 404
    assert other.client.get(f"{calls_url(other)}/{pending['id']}").status_code == 404
    approved = admin.client.post(f"{calls_url(admin)}/{pending['id']}/approve")
    assert approved.status_code == 200
    assert approved.json()["data"]["decidedBy"]["userId"] == str(admin.user.pk)


def test_a_denied_call_never_reaches_the_server(member: Caller, server: dict[str, Any], remote: Any) -> None:
    before = tool_posts(remote)
    pending = call(member, "call_tools__tool_1", {"text": "t"}).json()["data"]
    denied = member.client.post(f"{calls_url(member)}/{pending['id']}/deny")
    assert denied.status_code == 200
    assert denied.json()["data"]["status"] == "DENIED"
    late = member.client.post(f"{calls_url(member)}/{pending['id']}/approve")
    assert late.status_code == 409
    assert error_of(late)["status"] == "DENIED"
    assert tool_posts(remote) == before


def test_an_unapproved_call_expires(member: Caller, server: dict[str, Any], settings: Any) -> None:
    settings.MCP_CALL_APPROVAL_SECONDS = 1
    first = call(member, "call_tools__tool_1", {"text": "t"}).json()["data"]
    second = call(member, "call_tools__tool_1", {"text": "u"}).json()["data"]
    time.sleep(1.2)
    late = member.client.post(f"{calls_url(member)}/{first['id']}/approve")
    assert late.status_code == 409
    assert error_of(late)["status"] == "EXPIRED"
    assert member.client.get(f"{calls_url(member)}/{second['id']}").json()["data"]["status"] == "EXPIRED"
    third = call(member, "call_tools__tool_1", {"text": "v"}).json()["data"]
    time.sleep(1.2)
    assert tool_calls_upkeep().expired == 1  # the third; the first two were expired when read
    assert ToolCall.objects.get(pk=third["id"]).status == "EXPIRED"


def test_a_call_approved_after_its_tool_changed_is_refused(
    admin: Caller, member: Caller, server: dict[str, Any], remote: Any
) -> None:
    pending = call(member, "call_tools__tool_1", {"text": "t"}).json()["data"]
    remote.control({"describe": {"tool_1": "Now it deletes everything."}})
    assert admin.client.post(f"{admin.create_url()}/{server['id']}/sync").status_code == 200
    before = tool_posts(remote)
    refused = admin.client.post(f"{calls_url(admin)}/{pending['id']}/approve")
    assert refused.status_code == 409
    error = error_of(refused)
    assert (error["status"], error["code"]) == ("REFUSED", "DEFINITION_CHANGED")
    assert tool_posts(remote) == before
    assert member.client.get(f"{calls_url(member)}/{pending['id']}").json()["data"]["status"] == "REFUSED"


# --- Refusals that never reach the server ---------------------------------------------------------------------------


def test_a_blocked_tool_is_refused_and_the_refusal_recorded(
    admin: Caller, member: Caller, server: dict[str, Any], remote: Any
) -> None:
    tool = McpTool.objects.get(server_id=server["id"], name="tool_0")
    assert (
        admin.client.patch(
            f"{admin.create_url()}/{server['id']}/tools/{tool.pk}", {"accessMode": "BLOCKED"}, format="json"
        ).status_code
        == 200
    )
    before = tool_posts(remote)
    refused = call(member, "call_tools__tool_0", {"text": "t"})
    assert refused.status_code == 403
    error = error_of(refused)
    assert (error["title"], error["code"]) == ("Forbidden", "BLOCKED")
    assert ToolCall.objects.get(pk=error["callId"]).status == "REFUSED"
    by_id = member.client.post(
        calls_url(member), {"serverId": server["id"], "toolName": "tool_0", "arguments": {"text": "t"}}, format="json"
    )
    assert by_id.status_code == 403
    assert tool_posts(remote) == before


def test_unknown_unlisted_and_unusable_tools_are_not_found(
    admin: Caller, member: Caller, other_admin: Caller, server: dict[str, Any], remote: Any
) -> None:
    remote.control({"drop": ["tool_2"]})
    assert admin.client.post(f"{admin.create_url()}/{server['id']}/sync").status_code == 200
    before = tool_posts(remote)
    for name in ("call_tools__tool_2", "call_tools__nope", "nope__tool_0", "tool_0", ""):
        response = call(member, name, {"text": "t"})
        assert response.status_code in (400, 404), (name, response.json())
        assert error_of(response)["title"] in ("NotFound", "ValidationError")
    assert "no longer lists" in error_of(call(member, "call_tools__tool_2", {"text": "t"}))["detail"]
    # Not everyone may use the server any more, and the member has no grant: same as not there.
    assert (
        admin.client.patch(
            f"{admin.create_url()}/{server['id']}", {"everyoneInOrganizationCanAccess": False}, format="json"
        ).status_code
        == 200
    )
    assert call(member, "call_tools__tool_0", {"text": "t"}).status_code == 404
    # Another organization's key: not found, whatever the name.
    other = other_admin.client.post(
        f"/api/public/organizations/{other_admin.organization.pk}/tool-calls",
        {"tool": "call_tools__tool_0", "arguments": {"text": "t"}},
        format="json",
    )
    assert other.status_code == 404
    assert tool_posts(remote) == before
    assert call(admin, "call_tools__tool_0", {"text": "t"}).status_code == 200  # admins always may


def test_arguments_must_fit_the_input_schema(member: Caller, server: dict[str, Any], remote: Any) -> None:
    before = tool_posts(remote)
    missing = call(member, "call_tools__tool_0", {"repeat": 2})
    assert missing.status_code == 400
    assert "'text' is a required property" in error_of(missing)["detail"]
    wrong = call(member, "call_tools__tool_0", {"text": "t", "repeat": "twice"})
    assert wrong.status_code == 400
    assert error_of(wrong)["detail"].startswith("arguments.repeat: ")
    for body in ({"tool": "call_tools__tool_0", "arguments": [1]}, {"arguments": {}}, {"toolName": "tool_0"}):
        response = member.client.post(calls_url(member), body, format="json")
        assert response.status_code == 400, body
    assert ToolCall.objects.count() == 0
    assert tool_posts(remote) == before


# --- Bounds and failures ------------------------------------------------------------------------------------------


def test_a_call_past_the_wait_answers_202_and_finishes_in_the_background(
    member: Caller, server: dict[str, Any], settings: Any
) -> None:
    settings.MCP_CALL_WAIT_SECONDS = 0.5
    started = time.monotonic()
    response = call(member, "call_tools__progress_tool", {"steps": 3, "pause": 1.2})
    assert time.monotonic() - started < 3
    assert response.status_code == 202
    call_id = response.json()["data"]["id"]
    progress_seen = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        data = member.client.get(f"{calls_url(member)}/{call_id}").json()["data"]
        if data["progress"]:
            progress_seen = progress_seen or data["progress"]
        if data["status"] != "RUNNING":
            break
        time.sleep(0.2)
    assert data["status"] == "COMPLETED"
    assert data["result"]["content"][0]["text"] == "done after 3 steps"
    assert progress_seen is not None
    assert progress_seen["total"] == 3
    assert progress_seen["message"].startswith("step ")


def test_a_server_that_hangs_is_cut_off_at_the_calls_bound(
    member: Caller, server: dict[str, Any], settings: Any
) -> None:
    settings.MCP_CALL_TIMEOUT_SECONDS = 1.5
    settings.MCP_CALL_WAIT_SECONDS = 5
    started = time.monotonic()
    response = call(member, "call_tools__slow_tool", {"seconds": 30})
    assert time.monotonic() - started < 4
    assert response.status_code == 504
    error = error_of(response)
    assert (error["title"], error["code"]) == ("UpstreamTimeout", "TIMEOUT")
    assert ToolCall.objects.get(pk=error["callId"]).status == "FAILED"
    # The next call gets a fresh session and works.
    assert call(member, "call_tools__tool_0", {"text": "t"}).status_code == 200


@pytest.mark.parametrize(
    ("options", "status", "code"),
    [
        ({"trickle": True}, 504, "TIMEOUT"),  # a stream of comments that never ends
        ({"endless_body": True}, 502, "RESPONSE_TOO_LARGE"),
        ({"status": 500}, 502, "PROTOCOL_ERROR"),
        ({"status": 503}, 502, "UNREACHABLE"),
    ],
)
def test_a_hostile_or_failing_server_gives_a_clear_status(
    admin: Caller, mcp_server_factory: Any, settings: Any, options: dict[str, Any], status: int, code: str
) -> None:
    settings.MCP_CALL_TIMEOUT_SECONDS = 2.0
    settings.MCP_CALL_READ_SECONDS = 1.0
    settings.MCP_CALL_MAX_RESPONSE_BYTES = 256 * 1024
    healthy = mcp_server_factory(tools=1)
    connect(admin, healthy.url, name="Turns hostile")
    # The server row now points at a server that misbehaves on every POST (what a compromised server would do).
    hostile = mcp_server_factory(tools=1, **options)
    McpServer.objects.filter(server_label="turns_hostile").update(server_url=hostile.url)
    started = time.monotonic()
    response = call(admin, "turns_hostile__tool_0", {"text": "t"})
    assert time.monotonic() - started < 6
    assert response.status_code == status, response.json()
    assert error_of(response)["code"] == code


# --- OAuth ---------------------------------------------------------------------------------------------------------


def oauth_connect(admin: Caller, remote: Any, name: str = "Protected") -> dict[str, Any]:
    created = admin.client.post(admin.create_url(), {"displayName": name, "serverUrl": remote.url}, format="json")
    assert created.status_code == 201
    assert callback(approve(created.json()["data"]["authUrl"])).status_code == 200
    server: dict[str, Any] = admin.client.get(f"{admin.create_url()}/{created.json()['data']['id']}").json()["data"]
    assert server["setupState"] == "CONNECTED"
    return server


def test_a_401_mid_call_refreshes_the_token_once_and_retries(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    remote = oauth_mcp_server_factory(tools=2)
    oauth_connect(admin, remote)
    assert call(admin, "protected__tool_0", {"text": "a"}).status_code == 200
    remote.control({"expire": True})  # the token we hold (and think fresh) is refused from now on
    response = call(admin, "protected__tool_0", {"text": "b"})
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["result"]["content"][0]["text"] == "tool_0: b"
    assert remote.stats()["token_requests"]["refresh_token"] == 1


def test_a_revoked_grant_asks_for_authorization_again(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    remote = oauth_mcp_server_factory(tools=1)
    server = oauth_connect(admin, remote)
    remote.control({"revoke": True})
    response = call(admin, "protected__tool_0", {"text": "t"})
    assert response.status_code == 403
    error = error_of(response)
    assert (error["title"], error["requiresAuth"]) == ("AuthorizationRequired", True)
    assert error["authUrl"].startswith(remote.base_url)
    refreshed = admin.client.get(f"{admin.create_url()}/{server['id']}").json()["data"]
    assert (refreshed["requiresAuth"], refreshed["authUrl"]) == (True, error["authUrl"])


def test_insufficient_scope_steps_up_and_the_call_then_goes_through(
    admin: Caller, oauth_mcp_server_factory: Any
) -> None:
    remote = oauth_mcp_server_factory(tools=1, call_scopes="tools:call")
    server = oauth_connect(admin, remote)
    response = call(admin, "protected__tool_0", {"text": "t"})
    assert response.status_code == 403, response.json()
    error = error_of(response)
    assert (error["title"], error["requiresAuth"]) == ("AuthorizationRequired", True)
    assert "insufficient_scope" in error["detail"]
    assert "scope=tools%3Aread+tools%3Acall" in error["authUrl"]
    assert remote.stats()["mcp_insufficient_scope"] == 1
    # The server stays connected for what its tokens cover.
    still = admin.client.get(f"{admin.create_url()}/{server['id']}").json()["data"]
    assert (still["setupState"], still["requiresAuth"]) == ("CONNECTED", False)

    assert callback(approve(error["authUrl"])).status_code == 200
    again = call(admin, "protected__tool_0", {"text": "t"})
    assert again.status_code == 200, again.json()
    assert remote.stats()["tool_calls"] == 1


# --- The audit trail --------------------------------------------------------------------------------------------


def test_the_trail_lists_and_filters_calls_admins_see_all_members_their_own(
    admin: Caller, member: Caller, server: dict[str, Any], settings: Any
) -> None:
    call(member, "call_tools__tool_0", {"text": "m1"})
    call(member, "call_tools__tool_1", {"text": "m2"})
    call(admin, "call_tools__tool_0", {"text": "a1"})
    mine = member.client.get(calls_url(member)).json()
    assert [c["toolName"] for c in mine["data"]] == ["tool_1", "tool_0"]  # newest first, the member's own
    assert "arguments" not in mine["data"][0]
    assert "result" not in mine["data"][0]
    everyone = admin.client.get(calls_url(admin)).json()["data"]
    assert len(everyone) == 3
    awaiting = admin.client.get(calls_url(admin), {"status": "AWAITING_APPROVAL"}).json()["data"]
    assert [c["toolName"] for c in awaiting] == ["tool_1"]
    assert len(admin.client.get(calls_url(admin), {"serverId": server["id"]}).json()["data"]) == 3
    assert admin.client.get(calls_url(admin), {"serverId": str(uuid.uuid4())}).json()["data"] == []
    first = admin.client.get(calls_url(admin), {"limit": 2}).json()
    assert first["pagination"]["hasMore"] is True
    rest = admin.client.get(calls_url(admin), {"limit": 2, "cursor": first["pagination"]["nextCursor"]}).json()
    assert len(rest["data"]) == 1
    assert rest["pagination"] == {"nextCursor": None, "hasMore": False}
    for bad in ({"status": "DONE"}, {"serverId": "x"}, {"cursor": "x"}, {"limit": "0"}):
        response = admin.client.get(calls_url(admin), bad)
        assert response.status_code == 400, bad
        assert error_of(response)["title"] == "ValidationError"


def test_every_route_is_isolated_by_organization(admin: Caller, other_admin: Caller, server: dict[str, Any]) -> None:
    made = call(admin, "call_tools__tool_1", {"text": "t"}).json()["data"]
    ours = f"/api/public/organizations/{admin.organization.pk}/tool-calls"
    theirs = f"/api/public/organizations/{other_admin.organization.pk}/tool-calls"
    assert other_admin.client.get(ours).status_code == 404
    assert other_admin.client.post(ours, {"tool": "x__y"}, format="json").status_code == 404
    for path in (f"{ours}/{made['id']}", f"{theirs}/{made['id']}"):
        assert other_admin.client.get(path).status_code == 404
        assert other_admin.client.post(f"{path}/approve").status_code == 404
        assert other_admin.client.post(f"{path}/deny").status_code == 404
    assert other_admin.client.get(theirs).json()["data"] == []
    assert ToolCall.objects.get(pk=made["id"]).status == "AWAITING_APPROVAL"


def test_arguments_and_results_stay_secret(
    admin: Caller, server: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"canary-{uuid.uuid4().hex}"
    response = call(admin, "call_tools__tool_0", {"text": canary})
    assert response.status_code == 200
    assert canary in json.dumps(response.json())  # the caller gets their own call back
    assert canary not in caplog.text
    assert canary not in database_dump()  # arguments and result are stored encrypted
    stored = ToolCall.objects.get()
    assert canary in stored.arguments
    assert canary in (stored.result or "")
    with connection.cursor() as cursor:
        cursor.execute("SELECT arguments, result FROM mcp_servers_toolcall")
        assert all(canary not in str(value) for value in cursor.fetchone())


def test_upkeep_fails_interrupted_calls_and_purges_old_records(
    admin: Caller, server: dict[str, Any], settings: Any
) -> None:
    done = call(admin, "call_tools__tool_0", {"text": "t"}).json()["data"]
    stuck = ToolCall.objects.create(
        organization=admin.organization,
        server_id=server["id"],
        server_label="call_tools",
        tool_name="tool_0",
        requested_by=admin.user,
        status="RUNNING",
        arguments="{}",
        definition_hash="x",
        started_at=timezone.now() - timedelta(hours=1),
    )
    counts = tool_calls_upkeep()
    assert (counts.interrupted, counts.purged) == (1, 0)
    stuck.refresh_from_db()
    assert (stuck.status, stuck.error_code) == ("FAILED", "INTERRUPTED")
    ToolCall.objects.filter(pk=done["id"]).update(created_at=timezone.now() - timedelta(days=31))
    assert tool_calls_upkeep().purged == 1
    assert not ToolCall.objects.filter(pk=done["id"]).exists()


def test_the_request_costs_the_same_queries_whatever_the_servers_size(
    admin: Caller, mcp_server_factory: Any, django_assert_max_num_queries: Any
) -> None:
    small = mcp_server_factory(tools=4)
    large = mcp_server_factory(tools=400)
    connect(admin, small.url, name="Small")
    connect(admin, large.url, name="Large")
    assert call(admin, "small__tool_0", {"text": "warm"}).status_code == 200
    assert call(admin, "large__tool_0", {"text": "warm"}).status_code == 200
    with django_assert_max_num_queries(40) as few:
        assert call(admin, "small__tool_2", {"text": "t"}).status_code == 200
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert call(admin, "large__tool_398", {"text": "t"}).status_code == 200
    assert AccessMode.ALWAYS_ALLOW in McpTool.objects.filter(name="tool_398").values_list("access_mode", flat=True)


# --- a stream the server closes mid-call (SSE resumption, SEP-1699) ---------------------------------------------------


def test_a_call_whose_stream_the_server_closes_resumes_after_the_servers_retry(
    admin: Caller, mcp_server_factory: Any
) -> None:
    remote = mcp_server_factory(legacy_only=True, retry_ms=600)
    server = connect(admin, remote.url, name="Resumable")

    started = time.monotonic()
    response = call(admin, f"{server['serverLabel']}__close_stream")
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["status"] == "COMPLETED"
    # The answer was sent only on the resumed stream: after the server's retry, with the last event id seen.
    assert data["result"]["content"] == [{"type": "text", "text": "answered on the resumed stream"}]
    assert elapsed >= 0.6
    assert len(remote.requests()["resumptions"]) == 1


def test_a_retry_longer_than_the_calls_bound_is_cut_off_at_the_bound(
    admin: Caller, mcp_server_factory: Any, settings: Any
) -> None:
    settings.MCP_CALL_TIMEOUT_SECONDS = 2.0
    remote = mcp_server_factory(legacy_only=True, retry_ms=60_000)
    server = connect(admin, remote.url, name="Resumable")

    started = time.monotonic()
    response = call(admin, f"{server['serverLabel']}__close_stream")
    elapsed = time.monotonic() - started

    assert response.status_code == 504, response.json()
    assert elapsed < 10
    assert remote.requests()["resumptions"] == []
