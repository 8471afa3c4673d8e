from __future__ import annotations

from celery import shared_task

from mcp_servers import dispatch
from mcp_servers.limits import sync_limits
from mcp_servers.services import (
    REAUTHORIZE_MESSAGE,
    AuthorizationNotCompleted,
    mcp_server_authorization_failed,
    mcp_server_authorize_again,
    mcp_server_sync,
    oauth_authorization_complete,
    oauth_revoke,
)
from mcp_servers.tasks.base import ServiceTask


@shared_task(name=dispatch.COMPLETE_AUTHORIZATION, base=ServiceTask, bind=True)
def oauth_complete_authorization(self: ServiceTask, request_id: str) -> None:
    """Exchange an accepted authorization's code for tokens, then sync. The code waits encrypted in the database."""
    try:
        server_id = oauth_authorization_complete(
            request_id=request_id, limits=sync_limits(), final_attempt=self.final_attempt
        )
    except AuthorizationNotCompleted as exc:
        mcp_server_authorization_failed(request_id=request_id, message=str(exc))
        return
    if server_id is not None:
        mcp_server_sync(server_id=server_id)


@shared_task(name=dispatch.REAUTHORIZE, base=ServiceTask, bind=True)
def oauth_reauthorize(self: ServiceTask, server_id: str) -> None:
    """A fresh authorization URL for a server, on request (its current tokens stay until new ones arrive)."""
    mcp_server_authorize_again(
        server_id=server_id, message=REAUTHORIZE_MESSAGE, final_attempt=self.final_attempt, keep_state=True
    )


@shared_task(name=dispatch.REVOKE_TOKEN, base=ServiceTask, bind=True)
def oauth_revoke_token(self: ServiceTask, revocation_id: str) -> None:
    """Revoke one token of a deleted or re-pointed server at its authorization server."""
    oauth_revoke(revocation_id=revocation_id, limits=sync_limits(), final_attempt=self.final_attempt)
