"""Creates through the API, synced by a real Celery worker over Redis, on PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection, connections

from mcp_servers.models import McpServer, McpServerHeader
from mcp_servers.services import mcp_server_create
from organizations.models import Organization
from organizations.services import organization_start_trial
from tests.conftest import Caller
from tests.contract import assert_matches_contract
from tests.test_secrets import database_dump

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_database_is_postgresql(services_available: None) -> None:
    assert connection.vendor == "postgresql"


def test_create_ends_connected_within_the_wait(
    admin: Caller, mcp_server_factory: Any, celery_worker: Path, settings: Any
) -> None:
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    settings.MCP_SYNC_WAIT_SECONDS = 15
    remote = mcp_server_factory(tools=5, page_size=2)
    started = time.monotonic()
    response = admin.client.post(
        admin.create_url(), {"displayName": "Worker synced", "serverUrl": remote.url}, format="json"
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 201
    body = response.json()
    assert_matches_contract(201, body)
    assert body["data"]["setupState"] == "CONNECTED", body
    assert body["data"]["lastSyncStatus"] == "SUCCESS"
    assert len(body["data"]["tools"]) == 5
    assert elapsed < 15
    assert remote.requests()["count"] > 0  # the worker process, not this one, talked to the server


def test_wait_zero_answers_pending_and_get_polls_to_connected(
    admin: Caller, mcp_server_factory: Any, celery_worker: Path, settings: Any
) -> None:
    settings.MCP_SYNC_WAIT_SECONDS = 0
    remote = mcp_server_factory(tools=2, list_delay=1)
    response = admin.client.post(admin.create_url(), {"displayName": "Polled", "serverUrl": remote.url}, format="json")
    data = response.json()["data"]
    assert_matches_contract(201, response.json())
    assert (data["setupState"], data["lastSyncStatus"], data["tools"]) == ("INCOMPLETE", "PENDING", [])

    deadline = time.monotonic() + 20
    while True:
        current = admin.client.get(f"{admin.create_url()}/{data['id']}").json()["data"]
        if current["lastSyncStatus"] != "PENDING" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert current["setupState"] == "CONNECTED"
    assert len(current["tools"]) == 2


def test_trial_starts_exactly_once_under_concurrent_creates(organization: Organization, admin: Caller) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    results: list[bool] = []
    servers: list[McpServer] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait()
            results.append(organization_start_trial(organization_id=organization.pk))
            servers.append(
                mcp_server_create(
                    organization=organization,
                    created_by=None,
                    display_name="Same name",
                    server_url="https://mcp.example.com/mcp",
                )
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=create) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert not errors, errors
    assert results.count(True) == 1
    labels = sorted(server.server_label for server in servers)
    assert len(set(labels)) == threads
    assert labels[0] == "same_name"
    organization.refresh_from_db()
    assert organization.trial_started_at is not None


def test_no_secret_in_broker_messages_worker_logs_or_database(
    admin: Caller, mcp_server_factory: Any, celery_worker: Path, redis_client: redis.Redis, settings: Any
) -> None:
    settings.MCP_SYNC_WAIT_SECONDS = 15
    canary = f"canary-{uuid.uuid4().hex}"
    remote = mcp_server_factory(require_header=f"X-Api-Key={canary}")
    refusing = mcp_server_factory(require_header="X-Api-Key=other")
    seen: list[str] = []
    stop_marker = f"stop-{uuid.uuid4().hex}"

    def monitor() -> None:
        with redis_client.monitor() as m:
            for command in m.listen():
                seen.append(str(command.get("command", "")))
                if stop_marker in seen[-1]:
                    return

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    time.sleep(0.3)  # MONITOR is subscribed before the first create
    for name, target in [("ok", remote), ("refused", refusing)]:
        response = admin.client.post(
            admin.create_url(),
            {"displayName": name, "serverUrl": target.url, "headers": [{"key": "X-Api-Key", "value": canary}]},
            format="json",
        )
        assert canary not in response.content.decode()
    redis_client.echo(stop_marker)
    watcher.join(timeout=10)

    states = dict(McpServer.objects.values_list("display_name", "setup_state"))
    assert states == {"ok": "CONNECTED", "refused": "BROKEN"}
    broker_traffic = "\n".join(seen)
    assert "mcp_servers.sync_server_tools" in broker_traffic  # the monitor really saw the task messages
    assert canary not in broker_traffic
    assert canary not in celery_worker.read_text(errors="replace")
    assert canary not in database_dump()
    assert {h.value for h in McpServerHeader.objects.all()} == {canary}


def test_a_sync_held_by_a_dead_worker_is_finished_after_its_lease_expires(
    admin: Caller, mcp_server_factory: Any, celery_worker: Path, settings: Any
) -> None:
    """A killed pool child's message comes back at once while its lease still stands: the sync must wait for
    the lease, not be dropped."""
    from django.utils import timezone

    from mcp_servers.tasks import sync_server_tools

    settings.MCP_SYNC_WAIT_SECONDS = 0
    remote = mcp_server_factory(tools=2)
    created = admin.client.post(admin.create_url(), {"displayName": "Orphan", "serverUrl": remote.url}, format="json")
    server_id = created.json()["data"]["id"]
    deadline = time.monotonic() + 15
    while McpServer.objects.get(pk=server_id).last_sync_status == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.1)
    # A holder that died mid-sync: the lease stands for 3 more seconds and the server waits for a sync.
    McpServer.objects.filter(pk=server_id).update(
        last_sync_status="PENDING",
        sync_lease_token=uuid.uuid4(),
        sync_lease_expires_at=timezone.now() + timezone.timedelta(seconds=3),
    )
    before = remote.requests()["count"]
    sync_server_tools.delay(server_id)  # the redelivered message
    deadline = time.monotonic() + 20
    while McpServer.objects.get(pk=server_id).last_sync_status == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
    server = McpServer.objects.get(pk=server_id)
    assert (server.setup_state, server.last_sync_status) == ("CONNECTED", "SUCCESS")
    assert remote.requests()["count"] > before
    assert server.sync_lease_token is None
