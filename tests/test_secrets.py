"""A secret header value never appears in a response, a log line, an error message or the database in clear."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from django.db import connection

from mcp_servers.models import McpServer, McpServerHeader
from tests.conftest import Caller


def database_dump() -> str:
    """Every row of every table, as text (bytes decoded leniently), to search for a plaintext secret."""
    chunks: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - introspected names
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value).decode("latin-1"))
                    else:
                        chunks.append(str(value))
    return "\n".join(chunks)


@pytest.mark.django_db(transaction=True)
def test_a_secret_header_value_stays_secret_across_sinks(
    admin: Caller,
    mcp_server_factory: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    settings: Any,
) -> None:
    settings.MCP_SYNC_TOTAL_SECONDS = 2.0  # the slow server is cut off mid-request
    canary = f"canary-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)  # every logger, at its most talkative
    accepting = mcp_server_factory(require_header=f"Authorization=Bearer {canary}", tools=2)
    refusing = mcp_server_factory(require_header="Authorization=Bearer something-else")
    slow = mcp_server_factory(list_delay=8)
    gone = mcp_server_factory()
    gone.stop()

    bodies = []
    for name, remote in [("ok", accepting), ("refused", refusing), ("slow", slow), ("gone", gone)]:
        response = admin.client.post(
            admin.create_url(),
            {
                "displayName": name,
                "serverUrl": remote.url,
                "headers": [{"key": "Authorization", "value": f"Bearer {canary}"}, {"key": "X-Other", "value": canary}],
            },
            format="json",
        )
        assert response.status_code == 201
        bodies.append(response.content.decode())
        detail = admin.client.get(f"{admin.create_url()}/{response.json()['data']['id']}")
        bodies.append(detail.content.decode())

    states = dict(McpServer.objects.values_list("display_name", "setup_state"))
    assert states == {"ok": "CONNECTED", "refused": "BROKEN", "slow": "BROKEN", "gone": "BROKEN"}
    assert McpServerHeader.objects.count() == 8
    # The header rows still decrypt to the secret: it was stored, only never in clear.
    assert set(McpServerHeader.objects.values_list("value", flat=True)) == {f"Bearer {canary}", canary}

    captured = capfd.readouterr()
    sinks = {
        "responses": "\n".join(bodies),
        "log records": "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records),
        "log text": caplog.text,
        "stdout/stderr": captured.out + captured.err,
        "error messages": "\n".join(str(m) for m in McpServer.objects.values_list("sync_error_message", flat=True)),
        "database": database_dump(),
    }
    assert len(caplog.records) > 10  # the logs were really captured
    for sink, text in sinks.items():
        assert canary not in text, f"the secret leaked into {sink}"
