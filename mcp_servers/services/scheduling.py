"""Periodic work, sent by Celery beat (`celery -A config beat`) every MCP_PERIODIC_TICK_SECONDS.

Two jobs:

* Re-sync. Every server in rotation (CONNECTED, or BROKEN so that it recovers; never one that waits for a
  person to authorize it) is synced again about once per MCP_RESYNC_INTERVAL_SECONDS. Beat runs
  `resync_all` every tick; each run claims the servers that are due, oldest attempt first, at
  most a tick's share of the rotation, so one cycle is spread over RESYNC_SPREAD_FRACTION of the interval
  instead of every server syncing at once. A claimed server is marked PENDING and its sync is queued at
  once: a server already PENDING is skipped (a sync is on its way), so claiming twice queues nothing twice.
  A server PENDING for longer than STUCK_PENDING_SECONDS lost its message (a broker that lost data, a crash
  between commit and publish) and is claimed again.

  The spread is not a countdown on the messages. With Redis as the broker, a worker fetches a delayed
  message at once and holds it unacknowledged until it has run; once the visibility timeout passes, the
  broker hands it to another worker as well. A countdown plus the sync itself must stay under the
  visibility timeout (50 s), which leaves no room for a spread over minutes, and delayed messages are not
  held back by the prefetch limit, so one worker would hoard a whole batch. Plain messages wait in Redis.

* Token refresh. Beat runs `refresh_expiring_tokens` every tick; it queues a refresh, with a small
  random countdown, for every OAuth access token that expires within MCP_TOKEN_REFRESH_AHEAD_SECONDS (or
  within half its lifetime, when that is shorter: a token that lives 5 minutes is not refreshed every
  minute). `refresh_token` refreshes under the credential row's lock unless another worker replaced the
  token meanwhile, so it is idempotent; a rejected grant queues a sync, which asks for authorization again.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from core import logging as log_context
from integrations import oauth
from integrations.outbound import DestinationRefused
from mcp_servers import dispatch
from mcp_servers.limits import sync_limits
from mcp_servers.models import McpServer, McpServerOAuth, SetupState, SyncStatus
from mcp_servers.services.oauth_tokens import oauth_access_token
from mcp_servers.services.retry import Retryable
from mcp_servers.services.sync import sync_request_on_commit

logger = logging.getLogger(__name__)

# One cycle of re-syncs is spread over this fraction of MCP_RESYNC_INTERVAL_SECONDS.
RESYNC_SPREAD_FRACTION = 0.5
# Longer than any sync legitimately stays PENDING (retries with backoff, waits for a dead worker's lease).
STUCK_PENDING_SECONDS = 15 * 60
# The largest countdown on a refresh: short, because the countdown and the run must stay well under the
# broker's visibility timeout (see above).
REFRESH_JITTER_SECONDS = 5.0

_IN_ROTATION = (SetupState.CONNECTED, SetupState.BROKEN)


# --- Re-sync -------------------------------------------------------------------------------------------------


def _rotation() -> QuerySet[McpServer]:
    """The servers that are re-synced periodically."""
    return McpServer.objects.filter(requires_auth=False, setup_state__in=_IN_ROTATION)


def resync_batch_size(population: int, *, interval_seconds: float) -> int:
    """How many servers one tick may claim: the rotation's share of a tick, over the spread."""
    if population <= 0:
        return 0
    tick = settings.MCP_PERIODIC_TICK_SECONDS
    spread = max(float(tick), interval_seconds * RESYNC_SPREAD_FRACTION)
    return max(1, math.ceil(population * tick / spread))


def resync_due(*, now: datetime) -> QuerySet[McpServer]:
    """The servers a re-sync is due for, the longest waiting first.

    Due: in rotation, not PENDING, and not attempted within the interval. Also due: a server (in any setup
    state) that has been PENDING for longer than STUCK_PENDING_SECONDS. Never one that requires auth.
    """
    interval = timedelta(seconds=settings.MCP_RESYNC_INTERVAL_SECONDS)
    stale = Q(last_sync_attempt_at__isnull=True) | Q(last_sync_attempt_at__lt=now - interval)
    cycle = Q(setup_state__in=_IN_ROTATION) & ~Q(last_sync_status=SyncStatus.PENDING) & stale
    stuck = Q(last_sync_status=SyncStatus.PENDING, updated_at__lt=now - timedelta(seconds=STUCK_PENDING_SECONDS))
    return McpServer.objects.filter(cycle | stuck, requires_auth=False).order_by(
        F("last_sync_attempt_at").asc(nulls_first=True), "pk"
    )


def resync_all(*, now: datetime | None = None) -> list[uuid.UUID]:
    """Claim this tick's due servers (marked PENDING) and queue one sync per server after commit.

    Returns the ids queued. Concurrent runs claim disjoint servers (locked rows are skipped, claimed rows
    are PENDING), so running it twice queues nothing twice.
    """
    now = now or timezone.now()
    # At least one: a stuck server outside the rotation is recovered even when the rotation is empty.
    batch = max(1, resync_batch_size(_rotation().count(), interval_seconds=settings.MCP_RESYNC_INTERVAL_SECONDS))
    with transaction.atomic():
        claimed = list(resync_due(now=now).select_for_update(skip_locked=True).values_list("pk", flat=True)[:batch])
        if not claimed:
            return []
        sync_request_on_commit(claimed)
    logger.info("mcp periodic re-sync: %d syncs queued (at most %d per tick)", len(claimed), batch)
    return claimed


# --- Token refresh -------------------------------------------------------------------------------------------


def _refresh_due(expires_at: datetime | None, issued_at: datetime, now: datetime) -> bool:
    """Within MCP_TOKEN_REFRESH_AHEAD_SECONDS of expiry, or within half the token's lifetime if that is shorter.

    `issued_at` is when the tokens were stored (the credential row's updated_at), so the lifetime is an
    estimate that can only err short, which refreshes later, never more often.
    """
    if expires_at is None:
        return False
    remaining = (expires_at - now).total_seconds()
    lifetime = (expires_at - issued_at).total_seconds()
    lead = min(float(settings.MCP_TOKEN_REFRESH_AHEAD_SECONDS), max(0.0, lifetime / 2))
    return remaining <= lead


def tokens_to_refresh(*, now: datetime | None = None) -> list[uuid.UUID]:
    """The servers whose access token should be refreshed now (it expires soon and a refresh token exists)."""
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.MCP_TOKEN_REFRESH_AHEAD_SECONDS)
    rows = (
        McpServerOAuth.objects.filter(
            access_token__isnull=False, refresh_token__isnull=False, access_token_expires_at__lte=horizon
        )
        .order_by("access_token_expires_at")
        .values_list("server_id", "access_token_expires_at", "updated_at")
    )
    return [server_id for server_id, expires_at, issued_at in rows if _refresh_due(expires_at, issued_at, now)]


def refresh_countdown(*, expires_at: datetime | None, now: datetime) -> float:
    """A random countdown up to REFRESH_JITTER_SECONDS, and never past half the token's remaining life."""
    remaining = (expires_at - now).total_seconds() if expires_at is not None else 0.0
    return random.uniform(0.0, max(0.0, min(REFRESH_JITTER_SECONDS, remaining / 2)))  # noqa: S311 - jitter


def refresh_expiring_tokens(*, now: datetime | None = None) -> list[uuid.UUID]:
    """Queue one `refresh_token` per server whose access token expires soon. Returns the server ids."""
    now = now or timezone.now()
    server_ids = tokens_to_refresh(now=now)
    expiries = dict(
        McpServerOAuth.objects.filter(server_id__in=server_ids).values_list("server_id", "access_token_expires_at")
    )
    for server_id in server_ids:
        countdown = refresh_countdown(expires_at=expiries.get(server_id), now=now)
        dispatch.refresh_token(server_id, after=countdown)
    if server_ids:
        logger.info("oauth refresh ahead of expiry: %d refreshes queued", len(server_ids))
    return server_ids


class RefreshOutcome(StrEnum):
    REFRESHED = "REFRESHED"  # by this call, or by another worker since the token was chosen
    NOT_NEEDED = "NOT_NEEDED"  # gone, no refresh token, or no longer expiring
    REJECTED = "REJECTED"  # the grant is gone: tokens cleared, a sync queued (it asks for authorization)
    REFUSED = "REFUSED"  # the token endpoint is not an allowed destination (the next sync reports it)
    FAILED = "FAILED"  # the authorization server failed; the next tick tries again while the token still expires


def refresh_token(*, server_id: uuid.UUID, now: datetime | None = None, final_attempt: bool = True) -> RefreshOutcome:
    """Refresh one server's access token if it is still expiring. Safe to run twice, and concurrently with syncs.

    The token seen here is handed to `oauth_access_token` as the one to replace: under the row lock, it
    refreshes only if that token is still the current one (otherwise another worker already did). When the
    authorization server cannot be reached, an attempt that is not the last raises Retryable.
    """
    now = now or timezone.now()
    row = McpServerOAuth.objects.filter(server_id=server_id).first()
    if row is None or not row.access_token or not row.refresh_token:
        return RefreshOutcome.NOT_NEEDED
    if not _refresh_due(row.access_token_expires_at, row.updated_at, now):
        return RefreshOutcome.NOT_NEEDED
    log_context.bind(server_id=row.server_id)
    try:
        token = oauth_access_token(server_id=row.server_id, limits=sync_limits(), refused_token=row.access_token)
    except oauth.OAuthGrantRejected:
        logger.info("oauth refresh rejected: the grant is gone; a sync will ask for authorization")
        with transaction.atomic():
            sync_request_on_commit([row.server_id])
        return RefreshOutcome.REJECTED
    except DestinationRefused:
        logger.warning("oauth refresh refused by the outbound policy")
        return RefreshOutcome.REFUSED
    except oauth.OAuthError as exc:
        if exc.transient and not final_attempt:
            raise Retryable(str(exc)) from None
        # The next tick tries again while the token is still expiring; a sync refreshes it when it must.
        logger.warning("oauth refresh ahead of expiry failed: %s", exc)
        return RefreshOutcome.FAILED
    return RefreshOutcome.REFRESHED if token else RefreshOutcome.NOT_NEEDED
