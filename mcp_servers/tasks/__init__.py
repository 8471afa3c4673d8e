"""Celery tasks, one module per concern. Thin: load by id, call one service, let `ServiceTask` retry what is
transient. Nothing in the project imports them: `mcp_servers.dispatch` queues them by name, and Celery finds them
here (`app.autodiscover_tasks()` imports this package)."""

from mcp_servers.tasks.oauth import oauth_complete_authorization, oauth_reauthorize, oauth_revoke_token
from mcp_servers.tasks.periodic import (
    mcp_session_purge,
    refresh_expiring_tokens,
    refresh_token,
    resync_all,
    tool_call_upkeep,
)
from mcp_servers.tasks.sync import sync_server_tools

__all__ = [
    "mcp_session_purge",
    "oauth_complete_authorization",
    "oauth_reauthorize",
    "oauth_revoke_token",
    "refresh_expiring_tokens",
    "refresh_token",
    "resync_all",
    "sync_server_tools",
    "tool_call_upkeep",
]
