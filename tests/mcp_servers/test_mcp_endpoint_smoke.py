from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import Caller
from tests.mcp_servers.test_tool_calls import connect

pytestmark = pytest.mark.django_db(transaction=True)


async def _session(url: str, key: str, mode: str, fn: Any) -> Any:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        return await fn(client)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_smoke(admin: Caller, mcp_server_factory: Any, live_server: Any, mode: str) -> None:
    remote = mcp_server_factory(tools=4, call_tools=True)
    server = connect(admin, remote.url)
    url = f"{live_server.url}/api/public/organizations/{admin.organization.pk}/mcp"

    async def go(client: Client) -> Any:
        tools = await client.list_tools()
        names = [t.name for t in tools.tools]
        result = await client.call_tool(next(n for n in names if n.endswith("tool_0")), {"text": "hi"})
        return names, result

    names, result = anyio.run(_session, url, admin.key, mode, go)
    print(mode, names, result)
    assert names
    surl = f"{live_server.url}/api/public/organizations/{admin.organization.pk}/mcp-servers/{server['id']}/mcp"
    names2, result2 = anyio.run(_session, surl, admin.key, mode, go)
    print(mode, names2, result2)
