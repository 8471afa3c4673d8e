"""A sync of a server's tools: connect, list, record the outcome on the server row. Also the other writes a sync's
state machine owns: a fresh authorization URL recorded under the same lease.

One sync per server at a time: a sync holds a lease (token + expiry) on its row and writes its result fenced by
the token, so two deliveries of one sync never both write, and a crashed worker's lease simply expires. Every
sync request takes the next number (`sync_requested_seq`), and a delivery whose number was already served does
nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core import logging as log_context
from integrations import oauth
from integrations.errors import IntegrationError
from integrations.mcp import AuthChallenge, McpAuthRequired, SyncLimits, ToolListing, list_remote_tools
from integrations.outbound import DestinationRefused, InvalidUrl, check_url
from mcp_servers import dispatch
from mcp_servers.limits import mcp_client_factory, outbound_policy, sync_limits
from mcp_servers.models import (
    McpServer,
    McpServerClientCredentials,
    McpServerHeader,
    OAuthAuthorizationRequest,
    SetupState,
    SyncStatus,
)
from mcp_servers.services.oauth_authorization import oauth_authorization_start, stored_challenge
from mcp_servers.services.oauth_tokens import oauth_access_token, oauth_client_credentials_grant
from mcp_servers.services.retry import Retryable
from mcp_servers.services.tool_upsert import tools_upsert

logger = logging.getLogger(__name__)

# A lease outlives the longest sync it covers, and stays well under the broker's visibility timeout
# so that a redelivered message (after a worker died holding the lease) finds it expired.
_LEASE_MARGIN = timedelta(seconds=15)
AUTH_REQUIRED_MESSAGE = "The server requires OAuth authorization: open the authorization URL to connect it."
AUTH_EXPIRED_MESSAGE = (
    "The OAuth authorization expired or was revoked, and refreshing it failed: open the new authorization URL."
)
REAUTHORIZE_MESSAGE = "Re-authorization requested: open the authorization URL."
INTERNAL_ERROR_MESSAGE = "The sync stopped on an internal error; it will be retried on the next sync."


def sync_request_on_commit(server_ids: list[uuid.UUID]) -> None:
    """Mark servers PENDING under a new request number each, and queue their syncs after commit.

    Call inside a transaction."""
    McpServer.objects.filter(pk__in=server_ids).update(
        sync_requested_seq=F("sync_requested_seq") + 1, last_sync_status=SyncStatus.PENDING, updated_at=timezone.now()
    )
    for server_id, seq in McpServer.objects.filter(pk__in=server_ids).values_list("pk", "sync_requested_seq"):
        dispatch.sync_server(server_id, request_seq=seq)


class SyncOutcome(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    AUTH_REQUIRED = "AUTH_REQUIRED"
    SKIPPED = "SKIPPED"  # the server is gone
    BUSY = "BUSY"  # another sync of it holds the lease (maybe a worker that died): see lease_wait_seconds


@dataclass(frozen=True)
class _Lease:
    server_id: uuid.UUID
    token: uuid.UUID


def _lease_acquire(server_id: uuid.UUID, limits: SyncLimits, now: datetime) -> _Lease | None:
    token = uuid.uuid4()
    acquired = McpServer.objects.filter(
        Q(sync_lease_expires_at__isnull=True) | Q(sync_lease_expires_at__lt=now), pk=server_id
    ).update(
        sync_lease_token=token,
        sync_lease_expires_at=now + timedelta(seconds=limits.total_seconds) + _LEASE_MARGIN,
        last_sync_attempt_at=now,
        updated_at=now,
        sync_running_seq=F("sync_requested_seq"),
    )
    return _Lease(server_id=server_id, token=token) if acquired else None


def lease_wait_seconds(*, server_id: uuid.UUID | str, request_seq: int | None) -> float | None:
    """Seconds until the server's sync lease expires, or None when the request was served meanwhile."""
    row = McpServer.objects.filter(pk=server_id).values_list("sync_served_seq", "sync_lease_expires_at").first()
    if row is None or (request_seq is not None and row[0] >= request_seq):
        return None
    expires = row[1]
    return max(0.0, (expires - timezone.now()).total_seconds()) if expires else 0.0


def _lease_release(lease: _Lease) -> None:
    McpServer.objects.filter(pk=lease.server_id, sync_lease_token=lease.token).update(
        sync_lease_token=None, sync_lease_expires_at=None
    )


def _fenced_update(lease: _Lease, **fields: Any) -> bool:
    """Write the sync's outcome only while this sync still holds the lease, and release it."""
    return bool(
        McpServer.objects.filter(pk=lease.server_id, sync_lease_token=lease.token).update(
            sync_lease_token=None,
            sync_lease_expires_at=None,
            sync_served_seq=F("sync_running_seq"),
            updated_at=timezone.now(),
            **fields,
        )
    )


def mcp_server_sync(
    *, server_id: uuid.UUID | str, final_attempt: bool = True, request_seq: int | None = None
) -> SyncOutcome:
    """Connect to the server, list its tools and record the outcome on the row. Safe to run twice.

    A transient failure on an attempt that is not the last raises Retryable (the row stays PENDING);
    every other outcome is written to the row.
    """
    limits = sync_limits()
    server = McpServer.objects.select_related("oauth").filter(pk=server_id).first()
    if server is None:
        return SyncOutcome.SKIPPED
    log_context.bind(server_id=server.pk, organization_id=server.organization_id)
    if request_seq is not None and server.sync_served_seq >= request_seq:
        logger.info("mcp sync skipped: request %s was already served", request_seq)
        return SyncOutcome.SKIPPED
    lease = _lease_acquire(server.pk, limits, timezone.now())
    if lease is None:
        logger.info("mcp sync deferred: another sync holds the lease")
        return SyncOutcome.BUSY
    try:
        # The policy on the URL as written, with today's allowlist (the guarded client then checks every
        # address it connects to).
        check_url(server.server_url, rules=outbound_policy().rules)
    except (DestinationRefused, InvalidUrl) as exc:
        _record_failure(lease, f"The server URL was refused: {exc}.")
        return SyncOutcome.FAILED
    try:
        headers = dict(McpServerHeader.objects.filter(server_id=server.pk).values_list("key", "value"))
        listing = _list_tools_authorized(server, headers, limits)
    except McpAuthRequired as exc:
        return _record_auth_required(lease, server, exc.challenge, limits, final_attempt, AUTH_REQUIRED_MESSAGE)
    except DestinationRefused as exc:  # from the client-credentials grant's discovery
        _record_failure(lease, f"The server's OAuth metadata points to a destination that is not allowed: {exc}")
        return SyncOutcome.FAILED
    except oauth.OAuthGrantRejected as exc:
        if _has_client_credentials(server):
            _record_failure(lease, f"The configured OAuth client credentials were refused: {exc}")
            return SyncOutcome.FAILED
        challenge = stored_challenge(server.oauth)
        return _record_auth_required(lease, server, challenge, limits, final_attempt, AUTH_EXPIRED_MESSAGE)
    except IntegrationError as exc:
        if exc.transient and not final_attempt:
            _lease_release(lease)
            raise Retryable(str(exc)) from None
        prefix = ""
        if isinstance(exc, oauth.OAuthError):
            prefix = (
                "Getting an OAuth access token with the configured client credentials failed: "
                if _has_client_credentials(server)
                else "Refreshing the OAuth access token failed: "
            )
        _record_failure(lease, f"{prefix}{exc}")
        return SyncOutcome.FAILED
    except BaseException:
        # A bug or a time limit: record it plainly (the traceback goes to the log, not the row).
        logger.exception("mcp sync failed unexpectedly")
        _record_failure(lease, INTERNAL_ERROR_MESSAGE)
        raise
    try:
        _record_success(lease, listing)
    except Exception:
        logger.exception("mcp sync could not record its result")
        _record_failure(lease, INTERNAL_ERROR_MESSAGE)
        raise
    return SyncOutcome.SUCCESS


def _has_client_credentials(server: McpServer) -> bool:
    return McpServerClientCredentials.objects.filter(server_id=server.pk).exists()


def _list_tools_authorized(server: McpServer, headers: dict[str, str], limits: SyncLimits) -> ToolListing:
    """List tools, sending the OAuth access token when the server has one (refreshed first if it is expiring).

    A token refused before its expiry (revoked, or rotated by another party) is refreshed once and retried. A server
    with configured client credentials that asks for authorization gets a token by the client_credentials grant.
    """
    has_oauth = hasattr(server, "oauth")
    token = oauth_access_token(server_id=server.pk, limits=limits) if has_oauth else None
    for attempt in range(2):
        request_headers = headers
        if token is not None:
            request_headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            request_headers["Authorization"] = f"Bearer {token}"
        try:
            return list_remote_tools(
                server.server_url,
                request_headers,
                preferred_transport=server.transport_type,  # type: ignore[arg-type]
                http_client_factory=mcp_client_factory(),
                limits=limits,
            )
        except McpAuthRequired as exc:
            if attempt == 1:
                raise
            if token is None:
                token = oauth_client_credentials_grant(server=server, challenge=exc.challenge, limits=limits)
            else:
                token = oauth_access_token(server_id=server.pk, limits=limits, refused_token=token)
            if token is None:
                raise
    raise AssertionError("unreachable")


def _record_auth_required(
    lease: _Lease,
    server: McpServer,
    challenge: AuthChallenge,
    limits: SyncLimits,
    final_attempt: bool,
    message: str,
    *,
    keep_state: bool = False,
) -> SyncOutcome:
    """Start an authorization (every URL the server hands out is untrusted) and record its URL on the row."""
    try:
        auth_url = oauth_authorization_start(server=server, challenge=challenge, limits=limits)
    except DestinationRefused as exc:
        _record_failure(lease, f"The server's OAuth metadata points to a destination that is not allowed: {exc}")
        return SyncOutcome.FAILED
    except oauth.OAuthError as exc:
        if exc.transient and not final_attempt:
            _lease_release(lease)
            raise Retryable(str(exc)) from None
        _record_failure(lease, f"The server requires OAuth authorization, but it cannot be started: {exc}")
        return SyncOutcome.FAILED
    fields: dict[str, Any] = {"requires_auth": True, "auth_url": auth_url, "sync_error_message": message}
    if not keep_state:
        fields.update(setup_state=SetupState.INCOMPLETE, last_sync_status=SyncStatus.FAILED)
    _fenced_update(lease, **fields)
    return SyncOutcome.AUTH_REQUIRED


def mcp_server_authorize_again(
    *,
    server_id: uuid.UUID | str,
    message: str,
    final_attempt: bool = True,
    keep_state: bool = False,
    challenge: AuthChallenge | None = None,
) -> SyncOutcome:
    """A fresh authorization URL for a server (a re-authorization, after a failed exchange, or when a tool call met
    a challenge), recorded on its row under the sync lease. Without `challenge`, the one the server last sent."""
    limits = sync_limits()
    server = McpServer.objects.select_related("oauth").filter(pk=server_id).first()
    if server is None or (challenge is None and not hasattr(server, "oauth")):
        return SyncOutcome.SKIPPED
    lease = _lease_acquire(server.pk, limits, timezone.now())
    if lease is None:
        return SyncOutcome.BUSY
    challenge = challenge or stored_challenge(server.oauth)
    return _record_auth_required(lease, server, challenge, limits, final_attempt, message, keep_state=keep_state)


def _record_failure(lease: _Lease, message: str) -> None:
    _fenced_update(lease, setup_state=SetupState.BROKEN, last_sync_status=SyncStatus.FAILED, sync_error_message=message)


def _record_success(lease: _Lease, listing: ToolListing) -> None:
    now = timezone.now()
    with transaction.atomic():
        written = _fenced_update(
            lease,
            transport_type=listing.transport,
            setup_state=SetupState.CONNECTED,
            last_sync_status=SyncStatus.SUCCESS,
            last_successful_sync_at=now,
            has_completed_first_sync=True,
            sync_error_message=None,
            requires_auth=False,
            auth_url=None,
        )
        if not written:
            logger.warning("mcp sync lost its lease; its result is dropped")
            return
        tools_upsert(lease.server_id, listing.tools, now)


def mcp_server_authorization_failed(*, request_id: uuid.UUID | str, message: str) -> None:
    """The code could not be exchanged: say so and hand out a new authorization URL (the old one is used up)."""
    server_id = OAuthAuthorizationRequest.objects.filter(pk=request_id).values_list("server_id", flat=True).first()
    if server_id is not None:
        mcp_server_authorize_again(server_id=server_id, message=message)
