"""Tool calls as production runs them: several gunicorn processes on PostgreSQL, a real Celery worker for the syncs,
calls in each web process's background loop. Concurrent calls all complete, an approval given to another process
runs the call, and a token that expires under many concurrent calls is refreshed once, whatever the process."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mcp_servers.models import ToolCall
from tests.conftest import Caller
from tests.mcp_servers.test_oauth_flow import approve

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Api:
    def __init__(self, base: str, caller: Caller) -> None:
        self.base = f"{base}/api/public/organizations/{caller.organization.pk}"
        self.headers = {"Authorization": f"Bearer {caller.key}"}

    def post(self, path: str, body: Any = None) -> httpx2.Response:
        return httpx2.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=60)

    def get(self, path: str) -> httpx2.Response:
        return httpx2.get(f"{self.base}{path}", headers=self.headers, timeout=60)


@pytest.fixture
def web(gunicorn_factory: Callable[..., str], celery_worker: Path) -> str:
    return gunicorn_factory(MCP_SYNC_WAIT_SECONDS="20", MCP_CALL_WAIT_SECONDS="20")


def test_concurrent_calls_across_processes_all_complete(admin: Caller, web: str, mcp_server_factory: Any) -> None:
    remote = mcp_server_factory(tools=4)
    api = Api(web, admin)
    created = api.post("/mcp-servers", {"displayName": "Busy", "serverUrl": remote.url})
    assert created.status_code == 201
    assert created.json()["data"]["setupState"] == "CONNECTED", created.json()["data"]["syncErrorMessage"]

    def one(index: int) -> httpx2.Response:
        return api.post("/tool-calls", {"tool": "busy__tool_2", "arguments": {"text": str(index)}})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(one, range(48)))
    assert [response.status_code for response in responses] == [200] * 48
    texts = sorted(response.json()["data"]["result"]["content"][0]["text"] for response in responses)
    assert texts == sorted(f"tool_2: {index}" for index in range(48))
    assert ToolCall.objects.filter(status="COMPLETED").count() == 48


def test_an_approval_runs_the_call_whichever_process_gets_it(
    admin: Caller, member: Caller, web: str, mcp_server_factory: Any
) -> None:
    remote = mcp_server_factory(tools=2)
    assert Api(web, admin).post("/mcp-servers", {"displayName": "Gated", "serverUrl": remote.url}).status_code == 201
    requested = Api(web, member).post("/tool-calls", {"tool": "gated__tool_1", "arguments": {"text": "ok"}})
    assert requested.status_code == 202
    call_id = requested.json()["data"]["id"]
    approved = Api(web, admin).post(f"/tool-calls/{call_id}/approve")
    assert approved.status_code == 200, approved.json()
    assert approved.json()["data"]["result"]["content"][0]["text"] == "tool_1: ok"
    assert Api(web, member).get(f"/tool-calls/{call_id}").json()["data"]["status"] == "COMPLETED"


def test_an_expired_token_is_refreshed_once_under_concurrent_calls(
    admin: Caller, web: str, oauth_mcp_server_factory: Any
) -> None:
    remote = oauth_mcp_server_factory(tools=1)
    api = Api(web, admin)
    created = api.post("/mcp-servers", {"displayName": "Protected", "serverUrl": remote.url}).json()["data"]
    query = approve(created["authUrl"])
    page = httpx2.get(f"{web}/oauth/callback", params=query, timeout=60)
    assert page.status_code == 200, page.text
    assert api.get(f"/mcp-servers/{created['id']}").json()["data"]["setupState"] == "CONNECTED"
    # Warm every process's session, then make the token we hold worthless.
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(
            pool.map(
                lambda i: api.post("/tool-calls", {"tool": "protected__tool_0", "arguments": {"text": "w"}}), range(6)
            )
        )
    remote.control({"expire": True})

    def one(index: int) -> httpx2.Response:
        return api.post("/tool-calls", {"tool": "protected__tool_0", "arguments": {"text": str(index)}})

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(one, range(24)))
    assert [response.status_code for response in responses] == [200] * 24, [r.json() for r in responses]
    assert remote.stats()["token_requests"]["refresh_token"] == 1
