from __future__ import annotations

import random

from celery import Task, shared_task

from mcp_servers.services import SyncRetryable, mcp_server_sync

MAX_RETRIES = 3


def _backoff_seconds(retries: int) -> float:
    return float(2 ** (retries + 1)) + random.uniform(0, 1)  # noqa: S311 - jitter, not crypto


@shared_task(
    bind=True,
    name="mcp_servers.sync_server_tools",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    ignore_result=True,
)
def sync_server_tools(self: Task, server_id: str) -> None:
    """Sync one server's tools. Receives the id only; quiet if the server is gone; retries transient errors."""
    final_attempt = self.request.retries >= MAX_RETRIES
    try:
        mcp_server_sync(server_id=server_id, final_attempt=final_attempt)
    except SyncRetryable:
        raise self.retry(countdown=_backoff_seconds(self.request.retries)) from None
