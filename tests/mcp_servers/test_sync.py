"""The tool sync service against real MCP servers built with the SDK on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mcp_servers.models import AccessMode, McpServer, McpTool, SetupState, SyncStatus, TransportType
from mcp_servers.services import (
    AUTH_REQUIRED_MESSAGE,
    Retryable,
    SyncOutcome,
    mcp_server_create,
    mcp_server_sync,
    mcp_tool_set_access_mode,
)
from mcp_servers.validation import HeaderInput
from organizations.models import Organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_server(organization: Organization, django_capture_on_commit_callbacks: Any) -> Callable[..., McpServer]:
    """A server row as the create service writes it, with its queued sync not run (the tests run it)."""

    def make(url: str, headers: list[HeaderInput] | None = None, name: str = "Acme") -> McpServer:
        with django_capture_on_commit_callbacks(execute=False):
            return mcp_server_create(
                organization=organization, created_by=None, display_name=name, server_url=url, headers=headers or []
            )

    return make


def tools_of(server: McpServer) -> dict[str, McpTool]:
    return {tool.name: tool for tool in McpTool.objects.filter(server=server)}


def test_streamable_http(mcp_server_factory: Any, make_server: Callable[..., McpServer]) -> None:
    server = make_server(mcp_server_factory(tools=3).url)
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.SUCCESS
    server.refresh_from_db()
    assert server.transport_type == TransportType.STREAMABLE_HTTP
    assert (server.setup_state, server.last_sync_status) == (SetupState.CONNECTED, SyncStatus.SUCCESS)
    assert server.has_completed_first_sync
    assert server.last_successful_sync_at
    assert server.last_sync_attempt_at
    assert server.sync_lease_token is None
    tools = tools_of(server)
    assert sorted(tools) == ["tool_0", "tool_1", "tool_2"]
    assert tools["tool_0"].input_schema["type"] == "object"
    assert tools["tool_0"].annotations == {"readOnlyHint": True}
    assert tools["tool_0"].description


def test_legacy_sse(mcp_server_factory: Any, make_server: Callable[..., McpServer]) -> None:
    server = make_server(mcp_server_factory(transport="sse", tools=2).url)
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.SUCCESS
    server.refresh_from_db()
    assert server.transport_type == TransportType.SSE
    assert len(tools_of(server)) == 2
    # The transport that worked is tried first next time.
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.SUCCESS


def test_a_server_without_the_tools_capability_connects_with_zero_tools(
    mcp_server_factory: Any, make_server: Callable[..., McpServer]
) -> None:
    running = mcp_server_factory(legacy_only=True, no_tools_capability=True)
    server = make_server(running.url)
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.SUCCESS
    server.refresh_from_db()
    assert (server.setup_state, server.last_sync_status) == (SetupState.CONNECTED, SyncStatus.SUCCESS)
    assert server.has_completed_first_sync
    assert server.sync_error_message is None
    assert tools_of(server) == {}
    assert "tools/list" not in running.requests()["methods"]


def test_pagination_is_followed(mcp_server_factory: Any, make_server: Callable[..., McpServer]) -> None:
    server = make_server(mcp_server_factory(tools=25, page_size=10).url)  # 3 pages
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.SUCCESS
    assert len(tools_of(server)) == 25


def test_static_header_is_sent(mcp_server_factory: Any, make_server: Callable[..., McpServer]) -> None:
    remote = mcp_server_factory(require_header="X-Api-Key=letmein")
    server = make_server(remote.url, headers=[HeaderInput(key="X-Api-Key", value="letmein")])
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.SUCCESS
    assert "x-api-key" in remote.requests()["headers"]


def test_refused_headers_are_broken(mcp_server_factory: Any, make_server: Callable[..., McpServer]) -> None:
    remote = mcp_server_factory(require_header="X-Api-Key=letmein")
    server = make_server(remote.url, headers=[HeaderInput(key="X-Api-Key", value="not-the-key")])
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.FAILED
    server.refresh_from_db()
    assert (server.setup_state, server.last_sync_status) == (SetupState.BROKEN, SyncStatus.FAILED)
    assert "header" in (server.sync_error_message or "").lower()
    assert "not-the-key" not in (server.sync_error_message or "")


def test_oauth_challenge_requires_auth(
    mcp_server_factory: Any, make_server: Callable[..., McpServer], settings: Any
) -> None:
    remote = mcp_server_factory(oauth_challenge=True)
    settings.MCP_OAUTH_CLIENTS = {remote.base_url: {"client_id": "preregistered-client"}}
    server = make_server(remote.url)
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.AUTH_REQUIRED
    server.refresh_from_db()
    assert (server.setup_state, server.last_sync_status) == (SetupState.INCOMPLETE, SyncStatus.FAILED)
    assert server.requires_auth is True
    assert server.sync_error_message == AUTH_REQUIRED_MESSAGE
    assert (server.auth_url or "").startswith(f"{remote.base_url}/authorize?")


def test_oauth_without_a_way_to_register_is_broken(
    mcp_server_factory: Any, make_server: Callable[..., McpServer]
) -> None:
    """The plain test server advertises a registration endpoint it does not serve: nothing to authorize with."""
    server = make_server(mcp_server_factory(oauth_challenge=True).url)
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.FAILED
    server.refresh_from_db()
    assert server.setup_state == SetupState.BROKEN
    assert "registration" in (server.sync_error_message or ""), server.sync_error_message


def test_a_server_that_disappears(mcp_server_factory: Any, make_server: Callable[..., McpServer]) -> None:
    remote = mcp_server_factory(tools=2)
    server = make_server(remote.url)
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.SUCCESS
    remote.stop()

    # Not the last attempt: a transient error asks for a retry and leaves the lease free.
    with pytest.raises(Retryable):
        mcp_server_sync(server_id=server.pk, final_attempt=False)
    server.refresh_from_db()
    assert server.sync_lease_token is None
    assert server.setup_state == SetupState.CONNECTED

    assert mcp_server_sync(server_id=server.pk, final_attempt=True) is SyncOutcome.FAILED
    server.refresh_from_db()
    assert (server.setup_state, server.last_sync_status) == (SetupState.BROKEN, SyncStatus.FAILED)
    assert server.sync_error_message
    assert server.has_completed_first_sync  # history is kept
    assert all(tool.found_in_server for tool in tools_of(server).values())  # a failed sync proves nothing


def test_a_slow_server_is_cut_off_at_the_time_bound(
    mcp_server_factory: Any, make_server: Callable[..., McpServer], settings: Any
) -> None:
    settings.MCP_SYNC_TOTAL_SECONDS = 1.0
    server = make_server(mcp_server_factory(list_delay=8).url)
    started = time.monotonic()
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.FAILED
    assert time.monotonic() - started < 4
    server.refresh_from_db()
    assert server.setup_state == SetupState.BROKEN
    assert "1" in (server.sync_error_message or "")
    assert "second" in (server.sync_error_message or "").lower()


def test_a_server_error_is_broken(mcp_server_factory: Any, make_server: Callable[..., McpServer]) -> None:
    server = make_server(mcp_server_factory(status=500).url)
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.FAILED
    server.refresh_from_db()
    assert "500" in (server.sync_error_message or "")


def test_a_dropped_tool_is_kept_as_not_found_and_comes_back_as_it_was(
    mcp_server_factory: Any, make_server: Callable[..., McpServer]
) -> None:
    remote = mcp_server_factory(tools=3)
    server = make_server(remote.url)
    mcp_server_sync(server_id=server.pk)
    before = tools_of(server)
    mcp_tool_set_access_mode(tool=before["tool_1"], access_mode=AccessMode.BLOCKED)

    remote.control({"drop": ["tool_1"]})
    mcp_server_sync(server_id=server.pk)
    after = tools_of(server)
    assert after["tool_1"].found_in_server is False
    assert after["tool_1"].access_mode == AccessMode.BLOCKED
    assert after["tool_0"].found_in_server
    assert after["tool_2"].found_in_server

    remote.control({"restore": True})
    mcp_server_sync(server_id=server.pk)
    restored = tools_of(server)
    assert restored["tool_1"].found_in_server is True
    assert restored["tool_1"].id == before["tool_1"].id
    assert restored["tool_1"].access_mode == AccessMode.BLOCKED


def test_a_changed_definition_withdraws_always_allow_and_never_loosens_blocked(
    mcp_server_factory: Any, make_server: Callable[..., McpServer]
) -> None:
    remote = mcp_server_factory(tools=4)
    server = make_server(remote.url)
    mcp_server_sync(server_id=server.pk)
    tools = tools_of(server)
    assert tools["tool_0"].access_mode == AccessMode.ALWAYS_ALLOW  # readOnlyHint: true
    assert tools["tool_1"].access_mode == AccessMode.NEEDS_APPROVAL  # readOnlyHint: false
    mcp_tool_set_access_mode(tool=tools["tool_1"], access_mode=AccessMode.ALWAYS_ALLOW)
    mcp_tool_set_access_mode(tool=tools["tool_2"], access_mode=AccessMode.BLOCKED)

    remote.control({"describe": {"tool_0": "Now deletes things", "tool_1": "Changed", "tool_2": "Changed too"}})
    mcp_server_sync(server_id=server.pk)
    changed = tools_of(server)
    assert changed["tool_0"].access_mode == AccessMode.NEEDS_APPROVAL
    assert changed["tool_1"].access_mode == AccessMode.NEEDS_APPROVAL
    assert changed["tool_2"].access_mode == AccessMode.BLOCKED
    assert changed["tool_3"].access_mode == AccessMode.NEEDS_APPROVAL
    assert changed["tool_0"].definition_changed_since_review
    assert not changed["tool_3"].definition_changed_since_review
    assert changed["tool_0"].description == "Now deletes things"

    # An admin's review of the new definition sticks through later syncs.
    mcp_tool_set_access_mode(tool=changed["tool_0"], access_mode=AccessMode.ALWAYS_ALLOW)
    mcp_server_sync(server_id=server.pk)
    assert tools_of(server)["tool_0"].access_mode == AccessMode.ALWAYS_ALLOW


def test_awkward_definitions_are_stored_exactly_as_listed(organization: Organization) -> None:
    """The upsert embeds each tool's canonical definition text in its JSON document; every field must come back."""
    from django.utils import timezone

    from integrations.mcp import RemoteTool
    from mcp_servers.services.tool_upsert import definition_hash, tools_upsert

    server = McpServer.objects.create(
        organization=organization, display_name="Awkward", server_label="awkward", server_url="https://a.example/mcp"
    )
    listed = [
        RemoteTool(
            name='quote"back\\slash ünï',
            title='Ünïcode "q" \u2028',
            description="line\nbreak \\ tab\t {braces} %s %(x)s",
            input_schema={"type": "object", "properties": {"x": {"type": "number", "maximum": 1e16, "minimum": -0.5}}},
            output_schema={"type": "object", "properties": {"ok": {"type": "boolean"}}},
            annotations={"readOnlyHint": True, "title": "\u2603"},
            read_only_hint=True,
        ),
        RemoteTool(
            name="plain",
            title=None,
            description=None,
            input_schema={},
            output_schema=None,
            annotations={},
            read_only_hint=None,
        ),
        # Beyond 64 bits: orjson cannot encode it, so its canonical form comes from the standard library.
        RemoteTool(
            name="huge",
            title=None,
            description=None,
            input_schema={"maximum": 2**70, "b": [1, 2.5]},
            output_schema=None,
            annotations={},
            read_only_hint=False,
        ),
    ]
    tools_upsert(server.pk, listed, timezone.now())
    stored = tools_of(server)
    for tool in listed:
        row = stored[tool.name]
        assert (row.title, row.description, row.input_schema, row.output_schema, row.annotations) == (
            tool.title,
            tool.description,
            tool.input_schema,
            tool.output_schema,
            tool.annotations,
        )
        assert row.read_only_hint is tool.read_only_hint
        assert row.definition_hash == row.reviewed_definition_hash == definition_hash(tool)
    assert stored[listed[0].name].access_mode == AccessMode.ALWAYS_ALLOW
    assert stored["plain"].access_mode == AccessMode.NEEDS_APPROVAL


def test_a_sync_holding_the_lease_is_not_run_twice(
    mcp_server_factory: Any, make_server: Callable[..., McpServer]
) -> None:
    remote = mcp_server_factory()
    server = make_server(remote.url)
    McpServer.objects.filter(pk=server.pk).update(
        sync_lease_token="00000000-0000-0000-0000-000000000001",
        sync_lease_expires_at=server.created_at.replace(year=server.created_at.year + 1),
    )
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.BUSY
    assert remote.requests()["count"] == 0


def test_a_deleted_server_is_skipped_quietly() -> None:
    assert mcp_server_sync(server_id="00000000-0000-0000-0000-000000000000") is SyncOutcome.SKIPPED


def _sync_queries(server: McpServer) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert mcp_server_sync(server_id=server.pk) is SyncOutcome.SUCCESS
    return len(queries.captured_queries)


def test_query_count_does_not_grow_with_the_tool_count(
    mcp_server_factory: Any, make_server: Callable[..., McpServer]
) -> None:
    small = make_server(mcp_server_factory(tools=10).url, name="Small")
    large = make_server(mcp_server_factory(tools=1000, page_size=250).url, name="Large")
    first = (_sync_queries(small), _sync_queries(large))
    again = (_sync_queries(small), _sync_queries(large))
    # server, lease, headers, savepoint, fenced update, upsert, not-found update, release savepoint
    assert first == (8, 8)
    assert again == (8, 8)
    assert McpTool.objects.filter(server=large).count() == 1000


def test_the_task_retries_transient_errors_then_records_the_failure(
    mcp_server_factory: Any, make_server: Callable[..., McpServer]
) -> None:
    from mcp_servers.tasks import sync_server_tools

    remote = mcp_server_factory(status=503)
    server = make_server(remote.url)
    sync_server_tools.apply(args=[str(server.pk)])  # in process, as without REDIS_URL; retries run inline
    assert remote.requests()["count"] == sync_server_tools.max_retries + 1
    server.refresh_from_db()
    assert (server.setup_state, server.last_sync_status) == (SetupState.BROKEN, SyncStatus.FAILED)
    assert "503" in (server.sync_error_message or "")
    assert server.sync_lease_token is None


def test_the_task_does_not_retry_permanent_errors(
    mcp_server_factory: Any, make_server: Callable[..., McpServer]
) -> None:
    from mcp_servers.tasks import sync_server_tools

    remote = mcp_server_factory(status=500)
    server = make_server(remote.url)
    sync_server_tools.apply(args=[str(server.pk)])
    assert remote.requests()["count"] == 1


def test_a_duplicate_delivery_of_one_request_syncs_once(
    mcp_server_factory: Any, make_server: Callable[..., McpServer], django_capture_on_commit_callbacks: Any
) -> None:
    from mcp_servers.services import mcp_server_sync_request

    remote = mcp_server_factory()
    server = make_server(remote.url)  # request 1 queued (and not run)
    assert mcp_server_sync(server_id=server.pk, request_seq=1) is SyncOutcome.SUCCESS
    seen = remote.requests()["count"]
    assert mcp_server_sync(server_id=server.pk, request_seq=1) is SyncOutcome.SKIPPED  # redelivered
    assert remote.requests()["count"] == seen

    with django_capture_on_commit_callbacks(execute=False):
        mcp_server_sync_request(server=server)  # request 2
    server.refresh_from_db()
    assert (server.sync_requested_seq, server.sync_served_seq) == (2, 1)
    assert mcp_server_sync(server_id=server.pk, request_seq=2) is SyncOutcome.SUCCESS
    assert remote.requests()["count"] > seen
    server.refresh_from_db()
    assert server.sync_served_seq == 2
