"""gunicorn settings: `gunicorn -c config/gunicorn.py config.wsgi`. Every value can be overridden from the environment.

Threads, not just processes: a create waits up to MCP_SYNC_WAIT_SECONDS for the worker, and a waiting
request should not hold a whole process.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Longer than the longest request: a create's wait (MCP_SYNC_WAIT_SECONDS, 10 s by default) plus headroom.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow forever (jittered, so they do not restart together).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker: object) -> None:
    """Load every view now, then tune the garbage collector for what is loaded (core/runtime.py)."""
    from django.urls import get_resolver

    from core.runtime import tune_garbage_collector

    get_resolver().url_patterns  # noqa: B018 - imports the URLconf and every view module it names
    tune_garbage_collector()
