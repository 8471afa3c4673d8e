"""OAuth through the real worker on PostgreSQL, and one refresh at a time per server across processes."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from mcp_servers.limits import sync_limits
from mcp_servers.models import McpServerOAuth, SetupState
from mcp_servers.services import SyncOutcome, mcp_server_sync, oauth_access_token
from tests.conftest import Caller
from tests.mcp_servers.test_oauth_flow import approve, callback

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def connect(admin: Caller, url: str, settings: Any) -> str:
    settings.MCP_SYNC_WAIT_SECONDS = 15
    created = admin.client.post(admin.create_url(), {"displayName": "Protected", "serverUrl": url}, format="json")
    data = created.json()["data"]
    assert data["requiresAuth"] is True, data
    page = callback(approve(data["authUrl"]))
    assert page.status_code == 200
    assert b"Connected" in page.content, page.content
    return str(data["id"])


def race(count: int, action: Any) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(action())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_concurrent_users_of_an_expired_token_refresh_it_exactly_once(
    admin: Caller, oauth_mcp_server_factory: Any, celery_worker: Path, settings: Any
) -> None:
    remote = oauth_mcp_server_factory(refresh_delay=1.0)  # the refresh is slow, so the racers overlap
    server_id = uuid.UUID(connect(admin, remote.url, settings))
    remote.control({"expire": True})
    McpServerOAuth.objects.update(access_token_expires_at="2000-01-01T00:00:00Z")

    tokens = race(6, lambda: oauth_access_token(server_id=server_id, limits=sync_limits()))
    assert remote.stats()["token_requests"]["refresh_token"] == 1
    assert len(set(tokens)) == 1
    assert tokens[0] == McpServerOAuth.objects.get().access_token


def test_concurrent_syncs_with_an_expired_token_refresh_exactly_once(
    admin: Caller, oauth_mcp_server_factory: Any, celery_worker: Path, settings: Any
) -> None:
    remote = oauth_mcp_server_factory(refresh_delay=0.5)
    server_id = connect(admin, remote.url, settings)
    remote.control({"expire": True})
    McpServerOAuth.objects.update(access_token_expires_at="2000-01-01T00:00:00Z")

    outcomes = race(4, lambda: mcp_server_sync(server_id=server_id))
    assert SyncOutcome.SUCCESS in outcomes
    assert set(outcomes) <= {SyncOutcome.SUCCESS, SyncOutcome.BUSY}
    assert remote.stats()["token_requests"]["refresh_token"] == 1
    assert McpServerOAuth.objects.get().server.setup_state == SetupState.CONNECTED
