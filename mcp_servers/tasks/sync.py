from __future__ import annotations

from celery import shared_task
from django.conf import settings

from mcp_servers import dispatch
from mcp_servers.services import SyncOutcome, lease_wait_seconds, mcp_server_sync
from mcp_servers.tasks.base import ServiceTask

MAX_BUSY_RETRIES = 5


@shared_task(name=dispatch.SYNC_SERVER_TOOLS, base=ServiceTask, bind=True)
def sync_server_tools(self: ServiceTask, server_id: str, request_seq: int | None = None, busy_retries: int = 0) -> None:
    """Sync one server's tools. Receives the id only; quiet if the server is gone; retries transient errors.

    `request_seq` is the request's number (see McpServer.sync_requested_seq): a delivery of a request that a
    sync already served (a duplicate or a late redelivery) does nothing. When another sync holds the lease,
    this one comes back once the lease expires, unless that sync served this request meanwhile: the holder
    may be a worker that was killed (its message is redelivered at once, while its lease still stands).
    """
    outcome = mcp_server_sync(server_id=server_id, final_attempt=self.final_attempt, request_seq=request_seq)
    if outcome is SyncOutcome.BUSY and busy_retries < MAX_BUSY_RETRIES and not settings.CELERY_TASK_ALWAYS_EAGER:
        wait = lease_wait_seconds(server_id=server_id, request_seq=request_seq)
        if wait is not None:
            retries = busy_retries + 1
            dispatch.sync_server_again(server_id, request_seq=request_seq, busy_retries=retries, after=wait + 1)
