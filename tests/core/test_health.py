from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


def test_healthz_answers_without_the_database() -> None:
    response = Client().get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_readyz_checks_the_database_and_the_broker(settings: Any) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "not configured"}

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    unready = Client().get("/readyz")
    assert unready.status_code == 503
    assert unready.json() == {"status": "unavailable", "checks": {"database": "ok", "broker": "unreachable"}}
