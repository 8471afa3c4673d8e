"""Hostile servers are cut off within the sync's bounds, and the server row records why."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mcp_servers.models import McpServer, McpTool, SetupState, SyncStatus
from mcp_servers.services import SyncOutcome, mcp_server_create, mcp_server_sync
from organizations.models import Organization

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _tight_bounds(settings: Any) -> None:
    settings.MCP_SYNC_TOTAL_SECONDS = 3.0
    settings.MCP_SYNC_READ_SECONDS = 2.0
    settings.MCP_SYNC_MAX_RESPONSE_BYTES = 1024 * 1024
    settings.MCP_SYNC_MAX_TOOLS = 500
    settings.MCP_SYNC_MAX_PAGES = 5


def sync(organization: Organization, url: str, capture: Any) -> tuple[McpServer, float]:
    with capture(execute=False):
        server = mcp_server_create(organization=organization, created_by=None, display_name="Hostile", server_url=url)
    started = time.monotonic()
    assert mcp_server_sync(server_id=server.pk) is SyncOutcome.FAILED
    elapsed = time.monotonic() - started
    server.refresh_from_db()
    assert (server.setup_state, server.last_sync_status) == (SetupState.BROKEN, SyncStatus.FAILED)
    assert McpTool.objects.filter(server=server).count() == 0
    assert server.sync_lease_token is None
    return server, elapsed


@pytest.mark.parametrize("mode", ["endless_body", "endless_sse_event"])
def test_an_endless_response_is_cut_at_the_size_bound(
    organization: Organization, mcp_server_factory: Any, django_capture_on_commit_callbacks: Any, mode: str
) -> None:
    remote = mcp_server_factory(**{mode: True})
    server, elapsed = sync(organization, remote.url, django_capture_on_commit_callbacks)
    assert elapsed < 3
    message = (server.sync_error_message or "").lower()
    assert "larger than" in message or "size" in message, server.sync_error_message


def test_a_trickling_server_is_cut_at_the_time_bound(
    organization: Organization, mcp_server_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    remote = mcp_server_factory(trickle=True)
    server, elapsed = sync(organization, remote.url, django_capture_on_commit_callbacks)
    assert elapsed < 6
    assert "second" in (server.sync_error_message or "").lower(), server.sync_error_message


def test_too_many_tools_are_refused(
    organization: Organization, mcp_server_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    remote = mcp_server_factory(tools=600, page_size=200)
    server, _ = sync(organization, remote.url, django_capture_on_commit_callbacks)
    assert "500" in (server.sync_error_message or ""), server.sync_error_message


def test_too_many_pages_are_refused(
    organization: Organization, mcp_server_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    remote = mcp_server_factory(tools=60, page_size=10)
    server, _ = sync(organization, remote.url, django_capture_on_commit_callbacks)
    assert "page" in (server.sync_error_message or "").lower(), server.sync_error_message


def test_a_huge_listing_is_cut_at_the_size_bound(
    organization: Organization, mcp_server_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    remote = mcp_server_factory(tools=40, description_size=64 * 1024)  # ~2.6 MB in one page
    server, elapsed = sync(organization, remote.url, django_capture_on_commit_callbacks)
    assert elapsed < 3
    assert "larger than" in (server.sync_error_message or "").lower(), server.sync_error_message
