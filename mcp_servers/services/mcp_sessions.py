"""Sessions of MCP clients with the organization's MCP endpoint (the handshake era's `Mcp-Session-Id`).

A session is a row, so that any web process serves any of its requests: it is opened by a successful
`initialize`, read on every later request (only with the API key that opened it, at the endpoint that opened it),
and ends on DELETE or after MCP_ENDPOINT_SESSION_IDLE_SECONDS without a request.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from mcp_servers.models import McpSession
from organizations.models import ApiKey, Organization

logger = logging.getLogger(__name__)

# A session's last use is written at most this often: a write on every request would cost more than it tells.
_TOUCH_EVERY = timedelta(minutes=1)


def mcp_session_open(
    *,
    organization: Organization,
    api_key: ApiKey,
    server_id: uuid.UUID | None,
    protocol_version: str,
    client_params: dict[str, Any],
) -> McpSession:
    session = McpSession.objects.create(
        id=secrets.token_urlsafe(32),
        organization=organization,
        api_key=api_key,
        server_id=server_id,
        protocol_version=protocol_version,
        client_params=client_params,
        last_seen_at=timezone.now(),
    )
    logger.info("mcp session opened", extra={"mcp_session": session.id[:8]})
    return session


def mcp_session_find(*, session_id: str, api_key: ApiKey, server_id: uuid.UUID | None) -> McpSession | None:
    """The live session of that id opened with this key at this endpoint, touched; None otherwise (a 404 to the
    client, which then starts a new one)."""
    idle_since = timezone.now() - timedelta(seconds=settings.MCP_ENDPOINT_SESSION_IDLE_SECONDS)
    session = McpSession.objects.filter(
        id=session_id[:64], api_key=api_key, server_id=server_id, last_seen_at__gt=idle_since
    ).first()
    if session is not None and timezone.now() - session.last_seen_at >= _TOUCH_EVERY:
        session.last_seen_at = timezone.now()
        McpSession.objects.filter(pk=session.pk).update(last_seen_at=session.last_seen_at)
    return session


def mcp_session_set_log_level(*, session: McpSession, level: str) -> None:
    McpSession.objects.filter(pk=session.pk).update(log_level=level)
    session.log_level = level


def mcp_session_close(*, session: McpSession) -> None:
    McpSession.objects.filter(pk=session.pk).delete()
    logger.info("mcp session closed", extra={"mcp_session": session.id[:8]})


def mcp_sessions_purge_idle() -> int:
    """Delete the sessions idle past MCP_ENDPOINT_SESSION_IDLE_SECONDS (a beat tick). Safe to run twice."""
    idle_since = timezone.now() - timedelta(seconds=settings.MCP_ENDPOINT_SESSION_IDLE_SECONDS)
    purged, _ = McpSession.objects.filter(last_seen_at__lte=idle_since).delete()
    if purged:
        logger.info("mcp sessions purged: %d idle", purged)
    return purged
