"""Every write to MCP servers, their tools and their OAuth state. The API, the admin, commands and tasks all come
through here; nothing else saves these models. One module per sub-domain, re-exported here so callers stay simple:

- ``servers``: create, update, delete, ask for a sync, who may use a server (members and groups);
- ``sync``: a sync of a server's tools and its outcome on the row (one at a time per server, leased and fenced);
- ``tool_upsert``: a sync's one-statement write of the listed tools; ``tool_modes``: access modes and decisions;
- ``oauth_authorization``: start an authorization, accept its callback, exchange its code;
- ``oauth_tokens``: stored credentials and tokens, refreshed one at a time per server, revoked when discarded;
- ``scheduling``: what Celery beat's periodic ticks claim (re-syncs, token refreshes ahead of expiry);
- ``retry``: how a service asks its task to try again later.
"""

from mcp_servers.services.oauth_authorization import (
    AuthorizationNotCompleted,
    CallbackResult,
    callback_url,
    client_metadata_document,
    mcp_server_reauthorize_request,
    oauth_authorization_complete,
    oauth_callback_accept,
)
from mcp_servers.services.oauth_tokens import oauth_access_token, oauth_revoke
from mcp_servers.services.retry import Retryable
from mcp_servers.services.servers import (
    UpdateResult,
    mcp_server_access_grant,
    mcp_server_access_revoke,
    mcp_server_create,
    mcp_server_delete,
    mcp_server_group_access_revoke,
    mcp_server_sync_request,
    mcp_server_update,
)
from mcp_servers.services.sync import (
    AUTH_EXPIRED_MESSAGE,
    AUTH_REQUIRED_MESSAGE,
    REAUTHORIZE_MESSAGE,
    SyncOutcome,
    lease_wait_seconds,
    mcp_server_authorization_failed,
    mcp_server_authorize_again,
    mcp_server_sync,
)
from mcp_servers.services.tool_modes import mcp_tool_set_access_mode

__all__ = [
    "AUTH_EXPIRED_MESSAGE",
    "AUTH_REQUIRED_MESSAGE",
    "REAUTHORIZE_MESSAGE",
    "AuthorizationNotCompleted",
    "CallbackResult",
    "Retryable",
    "SyncOutcome",
    "UpdateResult",
    "callback_url",
    "client_metadata_document",
    "lease_wait_seconds",
    "mcp_server_access_grant",
    "mcp_server_access_revoke",
    "mcp_server_authorization_failed",
    "mcp_server_authorize_again",
    "mcp_server_create",
    "mcp_server_delete",
    "mcp_server_group_access_revoke",
    "mcp_server_reauthorize_request",
    "mcp_server_sync",
    "mcp_server_sync_request",
    "mcp_server_update",
    "mcp_tool_set_access_mode",
    "oauth_access_token",
    "oauth_authorization_complete",
    "oauth_callback_accept",
    "oauth_revoke",
]
