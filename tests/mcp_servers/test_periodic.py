"""Periodic work: which servers a re-sync tick claims, how a cycle is spread, and refreshing OAuth access
tokens ahead of expiry against the real OAuth test server. Tasks run in process."""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from config.celery import app as celery_app
from mcp_servers import tasks
from mcp_servers.models import McpServer, McpServerOAuth, McpTool, SetupState, SyncStatus
from mcp_servers.services import oauth_tokens
from mcp_servers.services import scheduling as periodic
from mcp_servers.services.scheduling import RefreshOutcome
from organizations.models import Organization
from tests.conftest import Caller
from tests.mcp_servers.test_oauth_flow import approve, callback, create

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = timedelta(hours=1)


@pytest.fixture
def queued_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The server ids a sync was queued for (nothing runs)."""
    calls: list[str] = []
    monkeypatch.setattr(tasks.sync_server_tools, "apply_async", lambda args=(), **_: calls.append(args[0]))
    return calls


@pytest.fixture
def queued_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """(server id, countdown) of every `refresh_token.apply_async` call (nothing runs)."""
    calls: list[tuple[str, float]] = []

    def record(args: list[str], countdown: float, **_: Any) -> None:
        calls.append((args[0], countdown))

    monkeypatch.setattr(tasks.refresh_token, "apply_async", record)
    return calls


def make_server(organization: Organization, name: str, **fields: Any) -> McpServer:
    updated_at = fields.pop("updated_at", None)
    defaults: dict[str, Any] = {
        "setup_state": SetupState.CONNECTED,
        "last_sync_status": SyncStatus.SUCCESS,
        "last_sync_attempt_at": timezone.now() - 2 * HOUR,
    }
    server = McpServer.objects.create(
        organization=organization,
        display_name=name,
        server_url="https://mcp.example.com/mcp",
        server_label=name,
        **{**defaults, **fields},
    )
    if updated_at is not None:  # auto_now on save; a queryset update keeps it
        McpServer.objects.filter(pk=server.pk).update(updated_at=updated_at)
    return server


# --- Re-sync ----------------------------------------------------------------------------------------------------


def test_a_tick_claims_due_servers_in_rotation_and_skips_the_rest(
    organization: Organization, queued_syncs: list[str], settings: Any
) -> None:
    settings.MCP_RESYNC_INTERVAL_SECONDS = 120  # spread over one tick: the whole rotation fits in one batch
    now = timezone.now()
    stuck_since = now - timedelta(seconds=periodic.STUCK_PENDING_SECONDS + 60)
    due = {
        make_server(organization, "connected"),
        make_server(organization, "broken", setup_state=SetupState.BROKEN, last_sync_status=SyncStatus.FAILED),
        make_server(organization, "never_attempted", last_sync_attempt_at=None),
        # PENDING for too long: its message was lost (any setup state, a first sync too).
        make_server(
            organization,
            "stuck",
            setup_state=SetupState.INCOMPLETE,
            last_sync_status=SyncStatus.PENDING,
            last_sync_attempt_at=None,
            updated_at=stuck_since,
        ),
    }
    skipped = {
        make_server(organization, "recent", last_sync_attempt_at=now - timedelta(seconds=60)),
        make_server(organization, "needs_auth", requires_auth=True),
        make_server(organization, "needs_auth_broken", setup_state=SetupState.BROKEN, requires_auth=True),
        make_server(organization, "pending", last_sync_status=SyncStatus.PENDING),
        make_server(
            organization,
            "stuck_needs_auth",
            last_sync_status=SyncStatus.PENDING,
            requires_auth=True,
            updated_at=stuck_since,
        ),
        make_server(organization, "incomplete", setup_state=SetupState.INCOMPLETE, last_sync_status=SyncStatus.FAILED),
    }
    before = {s.pk: McpServer.objects.get(pk=s.pk).updated_at for s in skipped}

    claimed = periodic.resync_all(now=now)

    assert set(claimed) == {s.pk for s in due}
    assert sorted(queued_syncs) == sorted(str(s.pk) for s in due)
    assert set(McpServer.objects.filter(pk__in=claimed).values_list("last_sync_status", flat=True)) == {"PENDING"}
    assert {s.pk: McpServer.objects.get(pk=s.pk).updated_at for s in skipped} == before  # untouched
    # Oldest attempt first: never attempted ones lead.
    assert set(claimed[:2]) == {s.pk for s in due if s.last_sync_attempt_at is None}

    # Idempotent: the claimed servers are PENDING now, so a second run (or a second beat) queues nothing.
    assert periodic.resync_all(now=now) == []
    assert tasks.resync_all.apply().get() == 0
    assert len(queued_syncs) == len(due)


def test_a_cycle_is_spread_over_half_the_interval_and_repeats_after_it(
    organization: Organization, queued_syncs: list[str], settings: Any
) -> None:
    settings.MCP_RESYNC_INTERVAL_SECONDS = 3600
    population = 90
    start = timezone.now()
    McpServer.objects.bulk_create(
        McpServer(
            organization=organization,
            display_name=f"s{i}",
            server_url="https://mcp.example.com/mcp",
            server_label=f"s{i}",
            setup_state=SetupState.CONNECTED if i % 3 else SetupState.BROKEN,
            last_sync_status=SyncStatus.SUCCESS if i % 3 else SyncStatus.FAILED,
            last_sync_attempt_at=start - 2 * HOUR,
        )
        for i in range(population)
    )
    batch = periodic.resync_batch_size(population, interval_seconds=3600)
    spread_ticks = 3600 * periodic.RESYNC_SPREAD_FRACTION / django_settings.MCP_PERIODIC_TICK_SECONDS
    assert batch == math.ceil(population / spread_ticks) == 3

    def tick(now: datetime) -> list[uuid.UUID]:
        claimed = periodic.resync_all(now=now)
        # The syncs run before the next tick.
        McpServer.objects.filter(pk__in=claimed).update(last_sync_status=SyncStatus.SUCCESS, last_sync_attempt_at=now)
        return claimed

    ticks = [tick(start + timedelta(seconds=60 * i)) for i in range(int(spread_ticks) + 5)]
    assert max(len(t) for t in ticks) == batch  # never more than a tick's share at once
    served = [pk for t in ticks for pk in t]
    assert len(served) == len(set(served)) == population  # each once, all within half the interval
    assert all(not t for t in ticks[int(spread_ticks) :])

    # The next cycle: each server comes due one interval after its sync, in the same order.
    assert tick(start + timedelta(seconds=3600 - 1)) == []
    assert tick(start + timedelta(seconds=3600 + 1)) == ticks[0]
    assert tick(start + timedelta(seconds=3600 + 61)) == ticks[1]


def test_a_tick_syncs_connected_servers_and_a_broken_one_recovers(
    admin: Caller, mcp_server_factory: Any, settings: Any
) -> None:
    settings.MCP_RESYNC_INTERVAL_SECONDS = 120
    remote = mcp_server_factory(tools=3)
    created = admin.client.post(admin.create_url(), {"displayName": "Fine", "serverUrl": remote.url}, format="json")
    server_id = created.json()["data"]["id"]
    assert created.json()["data"]["setupState"] == "CONNECTED"
    broken = McpServer.objects.create(
        organization=admin.organization,
        display_name="Was down",
        server_url=remote.url,
        server_label="was_down",
        setup_state=SetupState.BROKEN,
        last_sync_status=SyncStatus.FAILED,
        sync_error_message="Could not connect.",
    )
    McpServer.objects.update(last_sync_attempt_at=timezone.now() - 2 * HOUR)
    remote.control({"drop": ["tool_2"]})

    assert tasks.resync_all.apply().get() == 2  # eagerly: the syncs run after the claim commits

    fine = McpServer.objects.get(pk=server_id)
    assert (fine.setup_state, fine.last_sync_status) == ("CONNECTED", "SUCCESS")
    assert set(McpTool.objects.filter(server=fine, found_in_server=True).values_list("name", flat=True)) == {
        "tool_0",
        "tool_1",
    }
    broken.refresh_from_db()
    assert (broken.setup_state, broken.last_sync_status, broken.sync_error_message) == ("CONNECTED", "SUCCESS", None)
    assert McpTool.objects.filter(server=broken).count() == 2


def test_the_beat_schedule_names_registered_tasks() -> None:
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {
        "mcp_servers.resync_all",
        "mcp_servers.refresh_expiring_tokens",
        "mcp_servers.tool_call_upkeep",
        "mcp_servers.mcp_session_purge",
    }
    for entry in schedule.values():
        assert entry["task"] in celery_app.tasks
        assert entry["options"]["expires"] < entry["schedule"]
    assert schedule["mcp-resync-all"]["schedule"] == django_settings.MCP_PERIODIC_TICK_SECONDS
    assert schedule["mcp-refresh-expiring-tokens"]["schedule"] == django_settings.MCP_PERIODIC_TICK_SECONDS
    assert schedule["mcp-tool-call-upkeep"]["schedule"] == django_settings.MCP_PERIODIC_TICK_SECONDS
    assert schedule["mcp-session-purge"]["schedule"] == django_settings.MCP_PERIODIC_TICK_SECONDS
    assert "mcp_servers.refresh_token" in celery_app.tasks


# --- Token refresh ----------------------------------------------------------------------------------------------


@pytest.fixture
def connect(admin: Caller) -> Any:
    """``connect(remote) -> server id``: create, authorize headlessly, and end CONNECTED with tokens."""

    def run(remote: Any) -> uuid.UUID:
        created = create(admin, remote.url)
        assert callback(approve(created["authUrl"])).status_code == 200
        server = McpServer.objects.get(pk=created["id"])
        assert server.setup_state == SetupState.CONNECTED
        return server.pk

    return run


def test_refresh_selection_ahead_of_expiry(
    oauth_mcp_server_factory: Any, connect: Any, queued_refreshes: list[tuple[str, float]], settings: Any
) -> None:
    settings.MCP_TOKEN_REFRESH_AHEAD_SECONDS = 300
    ten_minutes = connect(oauth_mcp_server_factory(access_token_ttl=600))
    hourly = connect(oauth_mcp_server_factory())  # 3600 s
    two_minutes = connect(oauth_mcp_server_factory(access_token_ttl=120))
    no_refresh_token = connect(oauth_mcp_server_factory(access_token_ttl=600))
    McpServerOAuth.objects.filter(server_id=no_refresh_token).update(refresh_token=None)
    no_expiry = connect(oauth_mcp_server_factory(access_token_ttl=600))
    McpServerOAuth.objects.filter(server_id=no_expiry).update(access_token_expires_at=None)
    now = timezone.now()

    def selected(after: float) -> set[uuid.UUID]:
        return set(periodic.tokens_to_refresh(now=now + timedelta(seconds=after)))

    # (The tokens were issued a few seconds before `now`: the instants below leave room for that.)
    assert selected(0) == set()
    # A two-minute token is refreshed at half its life, not all of it (300 s ahead would mean every tick).
    assert selected(40) == set()
    assert selected(65) == {two_minutes}
    # Ten minutes and an hour: within 300 s of expiry.
    assert selected(250) == {two_minutes}
    assert selected(350) == {two_minutes, ten_minutes}
    assert selected(3200) == {two_minutes, ten_minutes}
    assert selected(3350) == {two_minutes, ten_minutes, hourly}

    # Queued with a small random countdown: never over REFRESH_JITTER_SECONDS nor half the remaining life.
    at = now + timedelta(seconds=350)
    for _ in range(20):
        periodic.refresh_expiring_tokens(now=at)
    assert {server_id for server_id, _ in queued_refreshes} == {str(two_minutes), str(ten_minutes)}
    expiries = dict(McpServerOAuth.objects.values_list("server_id", "access_token_expires_at"))
    for server_id, countdown in queued_refreshes:
        remaining = (expiries[uuid.UUID(server_id)] - at).total_seconds()
        assert 0 <= countdown <= min(periodic.REFRESH_JITTER_SECONDS, max(0.0, remaining / 2))
    countdowns = [c for s, c in queued_refreshes if s == str(ten_minutes)]
    assert len(set(countdowns)) > 1  # random
    assert max(countdowns) <= periodic.REFRESH_JITTER_SECONDS


def test_a_short_lived_token_is_refreshed_once_before_it_expires(
    oauth_mcp_server_factory: Any, connect: Any, settings: Any
) -> None:
    settings.MCP_TOKEN_REFRESH_AHEAD_SECONDS = 300
    settings.MCP_OAUTH_REFRESH_SKEW_SECONDS = 1  # a sync alone would refresh only at the last second
    remote = oauth_mcp_server_factory(access_token_ttl=6)
    server_id = connect(remote)
    old = McpServerOAuth.objects.get(server_id=server_id)
    assert periodic.refresh_token(server_id=server_id) is RefreshOutcome.NOT_NEEDED  # over 3 s left of 6
    assert tasks.refresh_expiring_tokens.apply().get() == 0

    deadline = time.monotonic() + 5
    while not periodic.tokens_to_refresh() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert periodic.tokens_to_refresh() == [server_id]  # half its life is gone
    assert tasks.refresh_expiring_tokens.apply().get() == 1  # eager: the refresh runs at once

    fresh = McpServerOAuth.objects.get(server_id=server_id)
    assert remote.stats()["token_requests"]["refresh_token"] == 1
    assert fresh.access_token != old.access_token
    assert fresh.access_token_expires_at is not None
    assert old.access_token_expires_at is not None
    assert fresh.access_token_expires_at > old.access_token_expires_at
    # A duplicate refresh (a second tick, a redelivered message) finds the token fresh and does nothing.
    assert tasks.refresh_token.apply(args=[str(server_id)]).get() == "NOT_NEEDED"
    assert remote.stats()["token_requests"]["refresh_token"] == 1


def test_a_token_another_worker_replaced_meanwhile_is_not_refreshed_again(
    oauth_mcp_server_factory: Any, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = oauth_mcp_server_factory(access_token_ttl=600)
    server_id = connect(remote)
    later = timezone.now() + timedelta(seconds=400)  # the token is due then: 200 s left
    real = oauth_tokens.oauth_access_token

    def another_worker_first(**kwargs: Any) -> str | None:
        # Between our read of the token and our turn at the row lock, a sync refreshed it.
        current = McpServerOAuth.objects.get(server_id=server_id).access_token
        real(server_id=server_id, limits=kwargs["limits"], refused_token=current)
        return real(**kwargs)

    monkeypatch.setattr(periodic, "oauth_access_token", another_worker_first)
    assert periodic.refresh_token(server_id=server_id, now=later) is RefreshOutcome.REFRESHED
    assert remote.stats()["token_requests"]["refresh_token"] == 1  # the other worker's, not a second one


def test_a_rejected_refresh_queues_a_sync_that_asks_for_authorization(
    oauth_mcp_server_factory: Any, connect: Any
) -> None:
    remote = oauth_mcp_server_factory(access_token_ttl=600)
    server_id = connect(remote)
    remote.control({"revoke": True})
    later = timezone.now() + timedelta(seconds=400)

    assert periodic.refresh_token(server_id=server_id, now=later) is RefreshOutcome.REJECTED

    row = McpServerOAuth.objects.get(server_id=server_id)
    assert (row.access_token, row.refresh_token) == (None, None)
    server = McpServer.objects.get(pk=server_id)  # the queued sync ran eagerly after commit
    assert server.requires_auth is True
    assert server.auth_url
    assert (server.setup_state, server.last_sync_status) == (SetupState.INCOMPLETE, SyncStatus.FAILED)
    assert periodic.tokens_to_refresh(now=later) == []  # nothing left to refresh
    assert periodic.refresh_token(server_id=server_id, now=later) is RefreshOutcome.NOT_NEEDED


def test_refresh_of_a_server_without_oauth_or_gone_is_not_needed(organization: Organization) -> None:
    server = make_server(organization, "plain")
    assert periodic.refresh_token(server_id=server.pk) is RefreshOutcome.NOT_NEEDED
    assert periodic.refresh_token(server_id=uuid.uuid4()) is RefreshOutcome.NOT_NEEDED
