from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from core.logging import ContextFilter, JsonFormatter, scope
from tests.conftest import Caller


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.addFilter(ContextFilter())
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def collected() -> Any:
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(previous)


def test_one_json_object_per_line_with_the_context_ids(collected: list[str]) -> None:
    with scope(request_id="req-1", organization_id="org-1", server_id="srv-1"):
        logging.getLogger("example").warning("something about %s", "a server")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("example").exception("failed")
    first, second = (json.loads(line) for line in collected[-2:])
    assert first["message"] == "something about a server"
    assert (first["request_id"], first["organization_id"], first["server_id"]) == ("req-1", "org-1", "srv-1")
    assert first["level"] == "WARNING"
    assert first["time"].endswith("Z")
    assert "request_id" not in second
    assert "ValueError: boom" in second["exception"]


@pytest.mark.django_db
def test_requests_carry_a_request_id_into_their_logs(admin: Caller, collected: list[str], settings: Any) -> None:
    settings.MCP_SYNC_WAIT_SECONDS = 0
    response = admin.client.post(
        admin.create_url(),
        {"displayName": "Logged", "serverUrl": "https://mcp.example.com/mcp"},
        format="json",
        HTTP_X_REQUEST_ID="abc-123",
    )
    assert response["X-Request-ID"] == "abc-123"
    created = [json.loads(line) for line in collected if "mcp server created" in line]
    assert created
    assert created[0]["request_id"] == "abc-123"
    assert created[0]["organization_id"] == str(admin.organization.pk)
    generated = admin.client.get(admin.create_url(), HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert generated != "bad id with spaces"
    assert len(generated) == 32
