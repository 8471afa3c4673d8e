"""Health checks for load balancers and orchestrators: `/healthz` (the process answers) and `/readyz` (it can
reach its database and, when one is configured, its broker)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "broker": _broker()}
    ready = all(value in ("ok", "not configured") for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.warning("readiness: database unreachable", exc_info=True)
        return "unreachable"
    return "ok"


def _broker() -> str:
    if not settings.REDIS_URL:
        return "not configured"  # tasks run in process
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError:
        logger.warning("readiness: broker unreachable", exc_info=True)
        return "unreachable"
    return "ok"
