"""Tool calls in the admin: an organization admin approves or denies the calls awaiting approval (the call runs at
once, through the same service as the API) and reads the audit trail, per server too; nobody else sees them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from mcp_servers.models import ToolCall
from organizations.models import Membership
from tests.admin.helpers import change_url
from tests.conftest import make_caller

pytestmark = pytest.mark.django_db(transaction=True)


def changelist() -> str:
    return reverse("admin:mcp_servers_toolcall_changelist")


def page(call_id: str) -> str:
    return reverse("admin:mcp_servers_toolcall_change", args=[call_id])


@pytest.fixture
def requested(acme: Any, acme_admin: Any, mcp_server_factory: Any) -> dict[str, Any]:
    """A connected server, and one call of each kind a member asked for: awaiting approval (twice) and completed."""
    remote = mcp_server_factory(tools=2)
    member = make_caller(organization=acme, email="dev@acme.test", role=Membership.Role.MEMBER)
    admin_key = make_caller(organization=acme, email="ops@acme.test", role=Membership.Role.ADMIN)
    created = admin_key.client.post(
        admin_key.create_url(), {"displayName": "Tools", "serverUrl": remote.url}, format="json"
    )
    assert created.status_code == 201
    calls = f"/api/public/organizations/{acme.pk}/tool-calls"

    def ask(tool: str, text: str) -> str:
        response = member.client.post(calls, {"tool": tool, "arguments": {"text": text}}, format="json")
        assert response.status_code in (200, 202)
        return str(response.json()["data"]["id"])

    return {
        "server": created.json()["data"],
        "first": ask("tools__tool_1", "approve me"),
        "second": ask("tools__tool_1", "deny me"),
        "done": ask("tools__tool_0", "already ran"),
    }


def test_an_admin_approves_and_denies_from_the_list(
    requested: dict[str, Any], acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    listing = client.get(changelist(), {"status__exact": "AWAITING_APPROVAL"})
    assert listing.status_code == 200
    html = listing.content.decode()
    assert html.count(">Approve</button>") == 2
    assert 'id="mcp-decide"' in html

    approved = client.post(reverse("admin:mcp_servers_toolcall_approve", args=[requested["first"]]), follow=True)
    assert approved.status_code == 200
    assert "Approved the call of tools__tool_1: it completed." in approved.content.decode()
    first = ToolCall.objects.get(pk=requested["first"])
    assert first.status == "COMPLETED"
    assert "approve me" in (first.result or "")
    assert first.decided_by == acme_admin

    denied = client.post(reverse("admin:mcp_servers_toolcall_deny", args=[requested["second"]]), follow=True)
    assert "Denied the call of tools__tool_1." in denied.content.decode()
    assert ToolCall.objects.get(pk=requested["second"]).status == "DENIED"
    again = client.post(reverse("admin:mcp_servers_toolcall_approve", args=[requested["second"]]), follow=True)
    assert "can no longer be decided" in again.content.decode()
    assert client.get(reverse("admin:mcp_servers_toolcall_approve", args=[requested["first"]])).status_code == 405


def test_the_call_page_shows_what_is_approved_and_the_server_page_links_its_calls(
    requested: dict[str, Any], acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    shown = client.get(page(requested["first"])).content.decode()
    assert "approve me" in shown  # the arguments, for the approver
    assert ">Approve</button>" in shown
    completed = client.get(page(requested["done"])).content.decode()
    assert "already ran" in completed
    assert ">Approve</button>" not in completed
    server = ToolCall.objects.get(pk=requested["first"]).server
    assert server is not None
    panel = client.get(change_url(server)).content.decode()
    assert "2 awaiting approval" in panel
    assert "3 calls on record" in panel
    history = client.get(changelist(), {"server__id__exact": str(server.pk)})
    assert len(history.context["cl"].result_list) == 3


def test_the_bulk_action_approves_only_what_awaits(
    requested: dict[str, Any], acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    client = as_user(acme_admin)
    selected = [requested["first"], requested["second"], requested["done"]]
    response = client.post(changelist(), {"action": "approve_selected", "_selected_action": selected}, follow=True)
    assert response.status_code == 200
    statuses = dict(ToolCall.objects.values_list("pk", "status"))
    assert {str(k): v for k, v in statuses.items()} == {
        requested["first"]: "COMPLETED",
        requested["second"]: "COMPLETED",
        requested["done"]: "COMPLETED",
    }


def test_nobody_else_sees_or_decides_the_calls(
    requested: dict[str, Any], globex_admin: Any, acme_member: Any, as_user: Callable[[Any], Client]
) -> None:
    other = as_user(globex_admin)
    assert other.get(page(requested["first"])).status_code == 404
    assert other.post(reverse("admin:mcp_servers_toolcall_approve", args=[requested["first"]])).status_code == 404
    assert other.get(changelist()).context["cl"].result_count == 0
    assert as_user(acme_member).get(changelist()).status_code == 403  # a member without the admin role
    assert ToolCall.objects.get(pk=requested["first"]).status == "AWAITING_APPROVAL"
    # Records: nobody adds, edits or deletes one here.
    superuser_page = as_user(globex_admin).get(reverse("admin:mcp_servers_toolcall_add"))
    assert superuser_page.status_code == 403
