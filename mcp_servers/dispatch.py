"""Background work: the one module that hands tasks to Celery, by name (the tasks themselves are in
`mcp_servers.tasks`, which nothing imports; Celery finds them). Only ids cross the broker, never secrets.

Work a write asks for is queued after its transaction commits (`transaction.on_commit`), so a task never sees a
row that was rolled back or not yet committed. Without a broker (REDIS_URL unset) tasks run in process, eagerly:
after commit all the same.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from celery import current_app
from django.db import transaction

SYNC_SERVER_TOOLS = "mcp_servers.sync_server_tools"
COMPLETE_AUTHORIZATION = "mcp_servers.oauth_complete_authorization"
REAUTHORIZE = "mcp_servers.oauth_reauthorize"
REVOKE_TOKEN = "mcp_servers.oauth_revoke"  # noqa: S105 - a task name
REFRESH_TOKEN = "mcp_servers.refresh_token"  # noqa: S105 - a task name
# Sent by Celery beat (CELERY_BEAT_SCHEDULE in config/settings.py names them too).
RESYNC_ALL = "mcp_servers.resync_all"
REFRESH_EXPIRING_TOKENS = "mcp_servers.refresh_expiring_tokens"
TOOL_CALL_UPKEEP = "mcp_servers.tool_call_upkeep"
MCP_SESSION_PURGE = "mcp_servers.mcp_session_purge"


@functools.cache
def _tasks_loaded() -> None:
    """Celery's own autodiscovery (`app.autodiscover_tasks()`), run in this process too: a worker runs it at start,
    and a web process needs the tasks registered to send them (or, without a broker, to run them)."""
    current_app.loader.import_default_modules()


def _send(name: str, *args: Any, countdown: float | None = None, **kwargs: Any) -> None:
    _tasks_loaded()
    current_app.tasks[name].apply_async(args=args, kwargs=kwargs or None, countdown=countdown)


def _after_commit(name: str, *args: Any) -> None:
    transaction.on_commit(lambda: _send(name, *args))


def sync_server(server_id: uuid.UUID | str, *, request_seq: int) -> None:
    """Sync a server's tools, for request number `request_seq` (a duplicate delivery of it does nothing)."""
    _after_commit(SYNC_SERVER_TOOLS, str(server_id), request_seq)


def sync_server_again(server_id: uuid.UUID | str, *, request_seq: int | None, busy_retries: int, after: float) -> None:
    """A sync that found another one holding the server's lease comes back once the lease expires (not on commit:
    it is a task re-queuing itself)."""
    _send(SYNC_SERVER_TOOLS, str(server_id), countdown=after, request_seq=request_seq, busy_retries=busy_retries)


def complete_authorization(request_id: uuid.UUID) -> None:
    """Exchange an accepted authorization's code (it waits encrypted in the database) for tokens, then sync."""
    _after_commit(COMPLETE_AUTHORIZATION, str(request_id))


def reauthorize(server_id: uuid.UUID) -> None:
    """Hand out a fresh authorization URL for a server."""
    _after_commit(REAUTHORIZE, str(server_id))


def revoke_token(revocation_id: int) -> None:
    """Revoke a token of a deleted or re-pointed server at its authorization server."""
    _after_commit(REVOKE_TOKEN, str(revocation_id))


def refresh_token(server_id: uuid.UUID, *, after: float) -> None:
    """Refresh a server's access token ahead of its expiry, `after` seconds from now (spread, not on commit)."""
    _send(REFRESH_TOKEN, str(server_id), countdown=after)
