"""The Celery app. Workers start with `celery -A config worker`."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_process_init.connect  # each prefork child, after the fork
@signals.worker_ready.connect  # the main process (it runs the tasks itself with --pool=solo or threads)
def _tune_garbage_collector(**_: object) -> None:
    from core.runtime import tune_garbage_collector

    tune_garbage_collector()


@signals.task_prerun.connect
def _bind_task_log_context(task_id: str | None = None, **_: object) -> None:
    """A task's log lines carry its id (the services add the server and organization they work on)."""
    from core import logging as log_context

    log_context.clear()
    log_context.bind(task_id=task_id)


@signals.task_postrun.connect
def _clear_task_log_context(**_: object) -> None:
    from core import logging as log_context

    log_context.clear()
