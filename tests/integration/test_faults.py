"""Worker faults on PostgreSQL + Redis with real worker processes: a sync whose worker is SIGKILLed mid-listing
is finished afterwards, exactly once, within the bound the settings promise.

Each test sends its sync to a queue of its own, consumed only by the workers it starts, so a session worker
(`celery_worker`) that other tests left running cannot take it. The bounds come from the settings:

* A killed pool child: the main process rejects the message and Redis requeues it at once
  (acks_late + reject_on_worker_lost). The redelivered sync finds the dead sync's lease, which stands for
  MCP_SYNC_TOTAL_SECONDS + 15 s from the dead sync's start, and comes back 1 s after it expires (the BUSY
  path of `sync_server_tools`); then one sync runs (the listing takes LIST_DELAY).
* A killed worker (main process and children): nobody rejects the message; it sits unacknowledged in Redis
  until another worker's restore sweep (every 5 s) finds it older than the visibility timeout. By then the
  lease (shorter than the visibility timeout) has expired, so the sync runs at once.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from integrations import mcp
from mcp_servers.limits import mcp_client_factory, sync_limits
from mcp_servers.models import McpServer, McpTool, SetupState, SyncStatus
from mcp_servers.tasks import sync_server_tools
from organizations.models import Organization
from tests.integration.conftest import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOOLS = 3
LIST_DELAY = 3.0  # the slow server sleeps this long in tools/list: the window in which the worker is killed
SYNC_TOTAL = 6  # MCP_SYNC_TOTAL_SECONDS of the workers started here
LEASE = SYNC_TOTAL + 15  # services._LEASE_MARGIN
BUSY_EXTRA = 1  # sync_server_tools comes back 1 s after the lease expires
SWEEP = 5  # CELERY_BROKER_TRANSPORT_OPTIONS["unacked_restore_interval"]
SLACK = 5.0  # process scheduling, connects, the DB writes
# Faster than the defaults (50 s / 40 s / 45 s), keeping their relations: time limits < visibility timeout,
# lease (6 + 15 = 21 s) < visibility timeout.
VISIBILITY_TIMEOUT = 25
FAST_REDELIVERY_ENV = {
    "MCP_SYNC_TOTAL_SECONDS": str(SYNC_TOTAL),
    "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    "CELERY_TASK_SOFT_TIME_LIMIT": "15",
    "CELERY_TASK_TIME_LIMIT": "20",
}


def requests_of_one_sync(mcp_server_factory: Callable[..., Any]) -> int:
    """How many requests the MCP test server sees for one complete tool sync (same client, same server)."""
    baseline = mcp_server_factory(tools=TOOLS)
    mcp.list_remote_tools(
        baseline.url, {}, preferred_transport=None, http_client_factory=mcp_client_factory(), limits=sync_limits()
    )
    count: int = baseline.requests()["count"]
    baseline.stop()
    return count


def pending_server(organization: Organization, url: str) -> McpServer:
    """A server waiting for its first sync, as a create leaves it (without queuing the create's sync)."""
    return McpServer.objects.create(
        organization=organization,
        display_name="Slow",
        server_url=url,
        server_label=f"slow_{uuid.uuid4().hex[:8]}",
        setup_state=SetupState.INCOMPLETE,
        last_sync_status=SyncStatus.PENDING,
    )


def wait_until_listing(server: McpServer, remote: Any, timeout: float = 15.0) -> McpServer:
    """Wait until the worker holds the lease and the server sits in tools/list (its request count is still)."""
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = remote.requests()["count"]
        if count != last:
            last, still_since = count, time.monotonic()
        row = McpServer.objects.get(pk=server.pk)
        if count > 0 and row.sync_lease_token is not None and time.monotonic() - still_since >= 0.5:
            return row
        time.sleep(0.05)
    pytest.fail("the worker never reached the tool listing")


def wait_until_synced(server: McpServer, timeout: float) -> McpServer:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = McpServer.objects.get(pk=server.pk)
        if row.last_sync_status != SyncStatus.PENDING:
            return row
        time.sleep(0.1)
    pytest.fail(f"the sync did not finish within {timeout:g} s")


def assert_synced_exactly_once(row: McpServer, remote: Any, at_kill: int, one_sync: int) -> None:
    assert (row.setup_state, row.last_sync_status) == (SetupState.CONNECTED, SyncStatus.SUCCESS)
    assert row.has_completed_first_sync
    assert row.last_successful_sync_at is not None
    assert row.sync_lease_token is None
    assert sorted(McpTool.objects.filter(server=row).values_list("name", flat=True)) == [
        f"tool_{i}" for i in range(TOOLS)
    ]
    # One complete listing after the kill, and no late duplicate: the count stays put.
    assert remote.requests()["count"] - at_kill == one_sync
    time.sleep(2)
    assert remote.requests()["count"] - at_kill == one_sync
    assert McpServer.objects.get(pk=row.pk).last_successful_sync_at == row.last_successful_sync_at


def test_a_killed_pool_child_is_replaced_and_its_sync_finishes_once_after_the_lease(
    organization: Organization,
    mcp_server_factory: Callable[..., Any],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    one_sync = requests_of_one_sync(mcp_server_factory)
    remote = mcp_server_factory(tools=TOOLS, list_delay=LIST_DELAY)
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    # It also consumes the default queue, where the BUSY path sends the sync back.
    worker = worker_factory(env={"MCP_SYNC_TOTAL_SECONDS": str(SYNC_TOTAL)}, queues=f"{queue},celery", concurrency=1)
    [child] = worker.children()
    server = pending_server(organization, remote.url)

    sync_server_tools.apply_async(args=[str(server.pk)], queue=queue)
    held = wait_until_listing(server, remote)
    at_kill = remote.requests()["count"]
    # Mid-sync: the listing was received (over the 2026 protocol it is a sync's last request), not answered.
    assert at_kill <= one_sync
    assert McpServer.objects.get(pk=server.pk).last_sync_status == SyncStatus.PENDING
    os.kill(child, signal.SIGKILL)
    killed_at = time.monotonic()

    deadline = time.monotonic() + 10
    while worker.children() in ([], [child]) and time.monotonic() < deadline:
        time.sleep(0.1)
    replacement = worker.children()
    assert replacement, "the pool did not replace its child"
    assert child not in replacement

    bound = LEASE + BUSY_EXTRA + LIST_DELAY + SLACK
    row = wait_until_synced(server, timeout=bound)
    elapsed = time.monotonic() - killed_at
    print(f"\n[faults] pool child SIGKILL -> sync finished in {elapsed:.1f} s (bound {bound:g} s)")
    assert_synced_exactly_once(row, remote, at_kill, one_sync)
    # The redelivered sync waited for the dead sync's lease instead of running beside it.
    assert held.sync_lease_expires_at is not None
    assert row.last_sync_attempt_at is not None
    assert row.last_sync_attempt_at >= held.sync_lease_expires_at
    assert "WorkerLostError" in worker.log()
    assert "another sync holds the lease" in worker.log()


def test_a_killed_worker_s_sync_is_redelivered_to_a_new_worker_after_the_visibility_timeout(
    organization: Organization,
    mcp_server_factory: Callable[..., Any],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    one_sync = requests_of_one_sync(mcp_server_factory)
    remote = mcp_server_factory(tools=TOOLS, list_delay=LIST_DELAY)
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    first = worker_factory(env=FAST_REDELIVERY_ENV, queues=queue, concurrency=1)
    server = pending_server(organization, remote.url)

    sent_at = time.monotonic()
    task = sync_server_tools.apply_async(args=[str(server.pk)], queue=queue)
    wait_until_listing(server, remote)
    at_kill = remote.requests()["count"]
    assert at_kill <= one_sync  # mid-sync, as above
    assert McpServer.objects.get(pk=server.pk).last_sync_status == SyncStatus.PENDING
    first.kill()
    killed_at = time.monotonic()
    second = worker_factory(env=FAST_REDELIVERY_ENV, queues=queue, concurrency=1)
    started_in = time.monotonic() - killed_at

    bound = VISIBILITY_TIMEOUT + SWEEP + LIST_DELAY + SLACK  # from the delivery, which is the send
    row = wait_until_synced(server, timeout=bound - (time.monotonic() - sent_at))
    done = time.monotonic()
    print(
        f"\n[faults] worker SIGKILL -> new worker ready in {started_in:.1f} s, sync finished "
        f"{done - killed_at:.1f} s after the kill, {done - sent_at:.1f} s after the send (bound {bound:g} s)"
    )
    assert_synced_exactly_once(row, remote, at_kill, one_sync)
    # Redelivered by the broker's restore of an unacknowledged message, which cannot happen sooner.
    assert done - sent_at >= VISIBILITY_TIMEOUT
    assert f"[{task.id}]" in first.log()
    assert f"[{task.id}]" in second.log()  # the same message, redelivered
    assert "another sync holds the lease" not in second.log()  # the lease had expired by then


def test_two_beats_at_once_queue_each_server_once(
    organization: Organization, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """Two `resync_all` runs racing on PostgreSQL (two beats, or a redelivered tick): locked rows are skipped
    and claimed rows are PENDING, so no server is queued twice."""
    import threading

    from django.db import connections
    from django.utils import timezone

    from mcp_servers.services import scheduling

    settings.MCP_RESYNC_INTERVAL_SECONDS = 120  # one tick's batch covers the whole rotation
    servers = [
        McpServer.objects.create(
            organization=organization,
            display_name=f"s{i}",
            server_url="https://mcp.example.com/mcp",
            server_label=f"s{i}",
            setup_state=SetupState.CONNECTED,
            last_sync_status=SyncStatus.SUCCESS,
        )
        for i in range(40)
    ]
    queued: list[str] = []
    monkeypatch.setattr(sync_server_tools, "apply_async", lambda args=(), **_: queued.append(args[0]))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            barrier.wait()
            scheduling.resync_all(now=timezone.now())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(queued) == sorted(str(s.pk) for s in servers)
