from __future__ import annotations

import random

from celery import Task, shared_task
from django.conf import settings

from mcp_servers import services
from mcp_servers.oauth_services import AuthorizationNotCompleted, oauth_authorization_complete
from mcp_servers.services import (
    SyncOutcome,
    SyncRetryable,
    lease_wait_seconds,
    mcp_server_authorize_again,
    mcp_server_sync,
    sync_limits,
)

MAX_RETRIES = 3
MAX_BUSY_RETRIES = 5
_TASK_OPTIONS = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "max_retries": MAX_RETRIES}


def _backoff_seconds(retries: int) -> float:
    return float(2 ** (retries + 1)) + random.uniform(0, 1)  # noqa: S311 - jitter, not crypto


@shared_task(name="mcp_servers.sync_server_tools", ignore_result=True, **_TASK_OPTIONS)
def sync_server_tools(self: Task, server_id: str, request_seq: int | None = None, busy_retries: int = 0) -> None:
    """Sync one server's tools. Receives the id only; quiet if the server is gone; retries transient errors.

    `request_seq` is the request's number (see McpServer.sync_requested_seq): a delivery of a request that a
    sync already served (a duplicate or a late redelivery) does nothing. When another sync holds the lease,
    this one comes back once the lease expires, unless that sync served this request meanwhile: the holder
    may be a worker that was killed (its message is redelivered at once, while its lease still stands).
    """
    try:
        final_attempt = self.request.retries >= MAX_RETRIES
        outcome = mcp_server_sync(server_id=server_id, final_attempt=final_attempt, request_seq=request_seq)
    except SyncRetryable:
        raise self.retry(countdown=_backoff_seconds(self.request.retries)) from None
    if outcome is SyncOutcome.BUSY and busy_retries < MAX_BUSY_RETRIES and not settings.CELERY_TASK_ALWAYS_EAGER:
        wait = lease_wait_seconds(server_id=server_id, request_seq=request_seq)
        if wait is not None:
            retry = {"request_seq": request_seq, "busy_retries": busy_retries + 1}
            sync_server_tools.apply_async(args=[server_id], kwargs=retry, countdown=wait + 1)


@shared_task(name="mcp_servers.oauth_complete_authorization", ignore_result=True, **_TASK_OPTIONS)
def oauth_complete_authorization(self: Task, request_id: str) -> None:
    """Exchange an accepted authorization's code for tokens, then sync. The code waits encrypted in the database."""
    try:
        server_id = oauth_authorization_complete(request_id=request_id, limits=sync_limits())
    except AuthorizationNotCompleted as exc:
        if exc.transient and self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=_backoff_seconds(self.request.retries)) from None
        services.mcp_server_authorization_failed(request_id=request_id, message=str(exc))
        return
    if server_id is not None:
        mcp_server_sync(server_id=server_id)


@shared_task(name="mcp_servers.oauth_reauthorize", ignore_result=True, **_TASK_OPTIONS)
def oauth_reauthorize(self: Task, server_id: str) -> None:
    """A fresh authorization URL for a server, on request (its current tokens stay until new ones arrive)."""
    try:
        mcp_server_authorize_again(
            server_id=server_id,
            message=services.REAUTHORIZE_MESSAGE,
            final_attempt=self.request.retries >= MAX_RETRIES,
            keep_state=True,
        )
    except SyncRetryable:
        raise self.retry(countdown=_backoff_seconds(self.request.retries)) from None


@shared_task(name="mcp_servers.oauth_revoke", ignore_result=True, **_TASK_OPTIONS)
def oauth_revoke(self: Task, revocation_id: str) -> None:
    """Revoke one token of a deleted or re-pointed server at its authorization server; retries transient errors."""
    from mcp_servers import oauth
    from mcp_servers.oauth_services import oauth_revoke as revoke

    try:
        revoke(revocation_id=revocation_id, limits=sync_limits(), final_attempt=self.request.retries >= MAX_RETRIES)
    except oauth.OAuthError:
        raise self.retry(countdown=_backoff_seconds(self.request.retries)) from None


# --- Periodic work (Celery beat: CELERY_BEAT_SCHEDULE in config/settings.py) ---------------------------------


@shared_task(name="mcp_servers.resync_all", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def resync_all() -> int:
    """Queue a sync for this tick's share of the servers due for a periodic re-sync (see mcp_servers.periodic)."""
    from mcp_servers import periodic

    return len(periodic.resync_all())


@shared_task(name="mcp_servers.refresh_expiring_tokens", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def refresh_expiring_tokens() -> int:
    """Queue a refresh, with jitter, for every OAuth access token that expires soon."""
    from mcp_servers import periodic

    return len(periodic.refresh_expiring_tokens())


@shared_task(name="mcp_servers.refresh_token", ignore_result=True, **_TASK_OPTIONS)
def refresh_token(self: Task, server_id: str) -> str:
    """Refresh one server's access token if it still expires soon; a rejected grant queues a sync."""
    import uuid

    from mcp_servers import oauth, periodic

    try:
        return periodic.refresh_token(server_id=uuid.UUID(server_id)).value
    except oauth.OAuthError as exc:
        if exc.transient and self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=_backoff_seconds(self.request.retries)) from None
        # The next tick tries again while the token is still expiring; a sync refreshes it when it must.
        periodic.logger.warning("oauth refresh ahead of expiry failed: %s", exc)
        return "FAILED"
