"""The conformance adapter's relay (`manage.py mcp_conformance_client`): a server's elicitation during a tool call
reaches the caller through the service, and the adapter, as the person at that client, accepts the form with its
defaults (SEP-1034). Against an SDK-built server whose tool elicits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from integrations.loop import background_loop
from mcp_servers.management.commands.mcp_conformance_client import PersonAtTheClient
from mcp_servers.models import McpTool, ToolCall, ToolCallStatus
from mcp_servers.services import mcp_server_create
from mcp_servers.services.tool_calls import Caller as ToolCaller
from mcp_servers.services.tool_calls import tool_call_decide, tool_call_execute, tool_call_request
from tests.conftest import Caller

pytestmark = pytest.mark.django_db(transaction=True)


def run(admin: Caller, url: str, relay: Any) -> ToolCall:
    server = mcp_server_create(organization=admin.organization, created_by=None, display_name="Forms", server_url=url)
    tool = McpTool.objects.select_related("server").get(server=server, name="fill_in_form")
    caller = ToolCaller(organization=admin.organization, user=admin.user, api_key=None, is_admin=True)
    call = tool_call_request(caller=caller, tool=tool, arguments={})
    if call.status == ToolCallStatus.AWAITING_APPROVAL:
        call = tool_call_decide(call=call, user=admin.user, is_admin=True, approve=True)
    running = background_loop.submit(tool_call_execute(call=call, relay=relay))
    return running.result(settings.MCP_CALL_TIMEOUT_SECONDS)


def test_an_elicitation_is_relayed_and_accepted_with_the_forms_defaults(admin: Caller, mcp_server_factory: Any) -> None:
    remote = mcp_server_factory(legacy_only=True, elicit_tool=True)

    call = run(admin, remote.url, PersonAtTheClient())

    assert call.status == ToolCallStatus.COMPLETED, call.error_message
    assert call.result is not None
    text = json.loads(call.result)["content"][0]["text"]
    assert text.startswith("accepted ")
    assert json.loads(text.removeprefix("accepted ")) == {"name": "John Doe", "age": 30, "verified": True}


def test_without_a_relay_the_elicitation_is_refused(admin: Caller, mcp_server_factory: Any) -> None:
    remote = mcp_server_factory(legacy_only=True, elicit_tool=True)

    call = run(admin, remote.url, None)

    # Nobody to ask: the service refuses the server's elicitation, and the server's tool fails with it.
    assert call.status == ToolCallStatus.FAILED
    assert call.result is None


@pytest.mark.anyio
async def test_the_person_answers_nothing_but_elicitations() -> None:
    from integrations.mcp import RelayRefused

    with pytest.raises(RelayRefused):
        await PersonAtTheClient().request("sampling/createMessage", {})
