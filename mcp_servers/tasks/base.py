"""The one retry policy of the project's tasks."""

from __future__ import annotations

from celery import Task

from mcp_servers.services import Retryable


class ServiceTask(Task):
    """A task that calls a service which raises `Retryable` for a transient failure on an attempt that is not the
    last (`final_attempt`): Celery retries it with exponential backoff (2, 4, 8 s, each drawn at random up to
    that: full jitter, so that servers failing together do not retry together). On the last attempt the service
    records the failure itself.

    Acknowledged after it ran, and redelivered when the worker dies mid-task (`CELERY_TASK_ACKS_LATE` and the
    visibility timeout in settings): every task is safe to run twice.
    """

    autoretry_for = (Retryable,)
    max_retries = 3
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    @property
    def final_attempt(self) -> bool:
        return bool(self.request.retries >= (self.max_retries or 0))
