"""Sent by Celery beat every MCP_PERIODIC_TICK_SECONDS (CELERY_BEAT_SCHEDULE in config/settings.py)."""

from __future__ import annotations

import uuid

from celery import shared_task

from mcp_servers import dispatch
from mcp_servers.services import mcp_sessions, scheduling, tool_calls
from mcp_servers.tasks.base import ServiceTask


@shared_task(name=dispatch.RESYNC_ALL, base=ServiceTask)
def resync_all() -> int:
    """Queue a sync for this tick's share of the servers due for a periodic re-sync."""
    return len(scheduling.resync_all())


@shared_task(name=dispatch.REFRESH_EXPIRING_TOKENS, base=ServiceTask)
def refresh_expiring_tokens() -> int:
    """Queue a refresh, with jitter, for every OAuth access token that expires soon."""
    return len(scheduling.refresh_expiring_tokens())


@shared_task(name=dispatch.REFRESH_TOKEN, base=ServiceTask, bind=True)
def refresh_token(self: ServiceTask, server_id: str) -> str:
    """Refresh one server's access token if it still expires soon; a rejected grant queues a sync."""
    return scheduling.refresh_token(server_id=uuid.UUID(server_id), final_attempt=self.final_attempt).value


@shared_task(name=dispatch.TOOL_CALL_UPKEEP, base=ServiceTask)
def tool_call_upkeep() -> int:
    """Expire unapproved calls, fail interrupted ones, purge records past their retention."""
    counts = tool_calls.tool_calls_upkeep()
    return counts.expired + counts.interrupted + counts.purged


@shared_task(name=dispatch.MCP_SESSION_PURGE, base=ServiceTask)
def mcp_session_purge() -> int:
    """Delete the MCP endpoint's sessions idle past MCP_ENDPOINT_SESSION_IDLE_SECONDS."""
    return mcp_sessions.mcp_sessions_purge_idle()
