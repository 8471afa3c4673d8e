"""Servers given to groups: the access endpoint grants and revokes groups, and the catalog, tool calls (with their
approvals) and the MCP endpoint follow one rule: everyone, or granted directly, or through any of one's groups."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mcp_servers.models import McpServer, McpServerAccess, McpServerGroupAccess, ToolCall
from mcp_servers.selectors import mcp_server_users, mcp_tool_catalog_page, servers_usable_by
from mcp_servers.services import mcp_server_access_grant
from organizations.models import Group, GroupMembership, Membership, Organization
from organizations.services import group_create, group_member_add, organization_create
from tests.conftest import Caller
from tests.mcp_servers.test_api_manage import make_servers
from tests.organizations.test_groups_api import make_members

pytestmark = pytest.mark.django_db


def private_servers(organization: Organization, count: int, start: int = 0) -> list[McpServer]:
    """Connected servers that not everyone may use, each with tool_0 (ALWAYS_ALLOW) and tool_1 (NEEDS_APPROVAL)."""
    servers = make_servers(organization, count, 2, start=start)
    McpServer.objects.filter(pk__in=[s.pk for s in servers]).update(everyone_in_organization_can_access=False)
    for server in servers:
        server.everyone_in_organization_can_access = False
    return servers


def catalog(caller: Caller) -> list[str]:
    response = caller.client.get(f"/api/public/organizations/{caller.organization.pk}/mcp-tools")
    assert response.status_code == 200
    return sorted(tool["name"] for tool in response.json()["data"])


def access_url(caller: Caller, server: McpServer) -> str:
    return f"{caller.create_url()}/{server.pk}/access"


def request_call(caller: Caller, tool: str) -> Any:
    url = f"/api/public/organizations/{caller.organization.pk}/tool-calls"
    return caller.client.post(url, {"tool": tool, "arguments": {}}, format="json")


def endpoint_status(caller: Caller, server: McpServer) -> int:
    """The per-server MCP endpoint's answer to a body that is not JSON: 400 once the caller may use the server,
    404 before (the server is looked up by the usable-servers rule before anything is read)."""
    url = f"/api/public/organizations/{caller.organization.pk}/mcp-servers/{server.pk}/mcp"
    response = caller.client.post(url, "not json", content_type="application/json", HTTP_ACCEPT="application/json")
    return int(response.status_code)


# --- the access endpoint --------------------------------------------------------------------------------------------


def test_grant_list_and_revoke_groups(admin: Caller, member: Caller, organization: Organization) -> None:
    (server,) = private_servers(organization, 1)
    support = group_create(organization=organization, name="Support")
    ops = group_create(organization=organization, name="Ops")
    group_member_add(group=support, user_id=member.user.pk)

    granted = admin.client.post(
        access_url(admin, server), {"groupIds": [str(support.pk), str(ops.pk), str(support.pk)]}, format="json"
    )
    assert granted.status_code == 201
    body = granted.json()["data"]
    assert body["everyoneInOrganizationCanAccess"] is False
    assert body["members"] == []
    assert [(g["groupId"], g["name"], g["memberCount"]) for g in body["groups"]] == [
        (str(support.pk), "Support", 1),
        (str(ops.pk), "Ops", 0),
    ]
    assert all(g["grantedAt"].endswith("Z") for g in body["groups"])
    assert admin.client.get(access_url(admin, server)).json()["data"] == body
    # Idempotent; a member and groups in one request.
    again = admin.client.post(
        access_url(admin, server), {"email": "member@acme.test", "groupIds": [str(ops.pk)]}, format="json"
    )
    assert again.status_code == 201
    assert [m["email"] for m in again.json()["data"]["members"]] == ["member@acme.test"]
    assert McpServerGroupAccess.objects.count() == 2

    assert admin.client.delete(f"{access_url(admin, server)}/groups/{ops.pk}").status_code == 204
    assert [g["name"] for g in admin.client.get(access_url(admin, server)).json()["data"]["groups"]] == ["Support"]
    for missing in (ops.pk, "not-a-uuid"):
        response = admin.client.delete(f"{access_url(admin, server)}/groups/{missing}")
        assert response.status_code == 404
        assert response.json()["error"]["title"] == "NotFound"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "email: send a member's email, or groupIds (a list of group ids), or both."),
        ({"groupIds": []}, "email: send a member's email, or groupIds (a list of group ids), or both."),
        ({"groupIds": "abc"}, 'groupIds: Expected a list of items but got type "str".'),
        ({"groupIds": [1]}, "groupIds[0]: Not a valid string."),
        ({"groupIds": ["nope"]}, "groupIds[0]: is not a valid group id."),
        ({"groupIds": ["0193a3b0-0000-7000-8000-000000000000"]}, "groupIds[0]: is not a group of this organization."),
        ({"email": "nobody@acme.test"}, "email: is not a member of this organization."),
    ],
)
def test_grant_rejects_bad_input_and_writes_nothing(
    admin: Caller, organization: Organization, body: dict[str, Any], detail: str
) -> None:
    (server,) = private_servers(organization, 1)
    response = admin.client.post(access_url(admin, server), body, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": {"title": "ValidationError", "detail": detail}}
    assert not McpServerGroupAccess.objects.exists()


def test_a_grant_is_all_or_nothing(
    admin: Caller, member: Caller, other_admin: Caller, organization: Organization
) -> None:
    (server,) = private_servers(organization, 1)
    ours = group_create(organization=organization, name="Ours")
    theirs = group_create(organization=other_admin.organization, name="Theirs")
    response = admin.client.post(
        access_url(admin, server),
        {"email": "member@acme.test", "groupIds": [str(ours.pk), str(theirs.pk)]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["detail"] == "groupIds[1]: is not a group of this organization."
    assert not McpServerAccess.objects.exists()
    assert not McpServerGroupAccess.objects.exists()


def test_at_most_100_groups_per_grant(admin: Caller, organization: Organization) -> None:
    (server,) = private_servers(organization, 1)
    response = admin.client.post(access_url(admin, server), {"groupIds": [str(organization.pk)] * 101}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["detail"] == "groupIds: must list at most 100 groups."


def test_access_is_admins_only_and_per_organization(
    admin: Caller, member: Caller, other_admin: Caller, organization: Organization
) -> None:
    (server,) = private_servers(organization, 1)
    group = group_create(organization=organization, name="Ops")
    mcp_server_access_grant(server=server, group_ids=[str(group.pk)])
    for caller in (member, other_admin):
        assert caller.client.get(access_url(admin, server)).status_code == 404
        assert (
            caller.client.post(access_url(admin, server), {"groupIds": [str(group.pk)]}, format="json").status_code
            == 404
        )
        assert caller.client.delete(f"{access_url(admin, server)}/groups/{group.pk}").status_code == 404
    other_url = f"/api/public/organizations/{other_admin.organization.pk}/mcp-servers/{server.pk}/access"
    assert other_admin.client.delete(f"{other_url}/groups/{group.pk}").status_code == 404
    assert McpServerGroupAccess.objects.count() == 1


# --- one rule for the catalog, tool calls and the MCP endpoint ------------------------------------------------------


def test_a_member_may_use_a_server_through_a_group(admin: Caller, member: Caller, organization: Organization) -> None:
    (server,) = private_servers(organization, 1)
    group = group_create(organization=organization, name="Support")
    assert catalog(member) == []
    assert request_call(member, "server_0__tool_1").status_code == 404
    assert endpoint_status(member, server) == 404

    mcp_server_access_grant(server=server, group_ids=[str(group.pk)])
    assert catalog(member) == []  # granted to a group the member is not in
    group_member_add(group=group, user_id=member.user.pk)
    assert catalog(member) == ["server_0__tool_0", "server_0__tool_1"]
    called = request_call(member, "server_0__tool_1")  # NEEDS_APPROVAL: recorded, nothing sent
    assert called.status_code == 202
    assert called.json()["data"]["status"] == "AWAITING_APPROVAL"
    by_id = member.client.post(
        f"/api/public/organizations/{organization.pk}/tool-calls",
        {"serverId": str(server.pk), "toolName": "tool_1", "arguments": {}},
        format="json",
    )
    assert by_id.status_code == 202
    assert endpoint_status(member, server) == 400
    tools, _ = mcp_tool_catalog_page(
        organization=organization, user_id=member.user.pk, is_admin=False, after=None, limit=10
    )
    assert [t.model_name for t in tools] == ["server_0__tool_0", "server_0__tool_1"]


@pytest.mark.parametrize("how", ["delete the group", "remove the member", "revoke the group's grant", "leave the org"])
def test_losing_the_group_takes_effect_on_the_next_read_or_call(
    admin: Caller, member: Caller, organization: Organization, how: str
) -> None:
    (server,) = private_servers(organization, 1)
    group = group_create(organization=organization, name="Support")
    group_member_add(group=group, user_id=member.user.pk)
    mcp_server_access_grant(server=server, group_ids=[str(group.pk)])
    assert catalog(member) == ["server_0__tool_0", "server_0__tool_1"]
    pending = request_call(member, "server_0__tool_1").json()["data"]
    assert endpoint_status(member, server) == 400

    base = f"/api/public/organizations/{organization.pk}"
    if how == "delete the group":
        assert admin.client.delete(f"{base}/groups/{group.pk}").status_code == 204
    elif how == "remove the member":
        assert admin.client.delete(f"{base}/groups/{group.pk}/members/{member.user.pk}").status_code == 204
    elif how == "revoke the group's grant":
        assert admin.client.delete(f"{access_url(admin, server)}/groups/{group.pk}").status_code == 204
    else:
        Membership.objects.filter(user=member.user).delete()
        assert member.client.get(f"{base}/mcp-tools").status_code == 404
        assert not servers_usable_by(organization=organization, user_id=member.user.pk, is_admin=False).exists()
        return

    assert catalog(member) == []
    assert request_call(member, "server_0__tool_1").status_code == 404
    assert endpoint_status(member, server) == 404
    # The call requested while the member could use the server may not run now: an approval is refused.
    approved = admin.client.post(f"{base}/tool-calls/{pending['id']}/approve")
    assert approved.status_code == 409
    assert approved.json()["error"]["code"] == "ACCESS_REVOKED"
    assert ToolCall.objects.get(pk=pending["id"]).status == "REFUSED"


def test_a_direct_grant_and_a_group_grant_each_suffice(
    admin: Caller, member: Caller, organization: Organization
) -> None:
    (server,) = private_servers(organization, 1)
    group = group_create(organization=organization, name="Support")
    group_member_add(group=group, user_id=member.user.pk)
    mcp_server_access_grant(server=server, user_id=member.user.pk, group_ids=[str(group.pk)])
    assert catalog(member) == ["server_0__tool_0", "server_0__tool_1"]  # once, though granted twice
    assert admin.client.delete(f"{access_url(admin, server)}/{member.user.pk}").status_code == 204
    assert catalog(member) == ["server_0__tool_0", "server_0__tool_1"]  # still through the group
    mcp_server_access_grant(server=server, user_id=member.user.pk)
    assert admin.client.delete(f"{access_url(admin, server)}/groups/{group.pk}").status_code == 204
    assert catalog(member) == ["server_0__tool_0", "server_0__tool_1"]  # still directly
    assert admin.client.delete(f"{access_url(admin, server)}/{member.user.pk}").status_code == 204
    assert catalog(member) == []
    assert admin.client.delete(f"{access_url(admin, server)}/{'9' * 5000}").status_code == 404


def test_another_organizations_group_gives_nothing(member: Caller, organization: Organization) -> None:
    """Rows written around the services (which refuse them): a group of another organization granted a server,
    with the member in it through their membership there, still gives nothing here."""
    (server,) = private_servers(organization, 1)
    other = organization_create(name="Globex")
    foreign = Group.objects.create(organization=other, name="Foreign")
    elsewhere = Membership.objects.create(user=member.user, organization=other)
    GroupMembership.objects.create(group=foreign, membership=elsewhere)
    McpServerGroupAccess.objects.create(server=server, group=foreign)
    assert catalog(member) == []


def test_a_member_in_many_groups_and_a_group_granted_many_servers(
    admin: Caller, member: Caller, organization: Organization
) -> None:
    servers = private_servers(organization, 20)
    everyone = make_servers(organization, 1, 2, start=20)  # open to everyone
    groups = [group_create(organization=organization, name=f"Group {i}") for i in range(25)]
    for group in groups:
        group_member_add(group=group, user_id=member.user.pk)
    # Every group is granted the first server; the last group is granted every server.
    for group in groups:
        mcp_server_access_grant(server=servers[0], group_ids=[str(group.pk)])
    for server in servers:
        mcp_server_access_grant(server=server, group_ids=[str(groups[-1].pk)])
    names = catalog(member)
    assert len(names) == len(set(names)) == 2 * 21
    assert {name.split("__")[0] for name in names} == {f"server_{i}" for i in range(21)}
    usable = servers_usable_by(organization=organization, user_id=member.user.pk, is_admin=False)
    assert usable.count() == 21
    assert {s.pk for s in usable} == {s.pk for s in [*servers, *everyone]}
    # Without the last group, only the first server (through every other group) and the open one remain.
    assert admin.client.delete(f"/api/public/organizations/{organization.pk}/groups/{groups[-1].pk}").status_code == 204
    assert {name.split("__")[0] for name in catalog(member)} == {"server_0", "server_20"}


@pytest.mark.django_db(transaction=True)  # the create's sync runs after commit
def test_an_always_allowed_call_through_a_group_runs(
    admin: Caller, member: Caller, organization: Organization, mcp_server_factory: Any
) -> None:
    from tests.mcp_servers.test_tool_calls import connect

    remote = mcp_server_factory(tools=2, call_tools=True)
    server = connect(admin, remote.url, everyoneInOrganizationCanAccess=False)
    group = group_create(organization=organization, name="Callers")
    group_member_add(group=group, user_id=member.user.pk)
    assert request_call(member, "call_tools__tool_0").status_code == 404
    assert (
        admin.client.post(
            f"{admin.create_url()}/{server['id']}/access", {"groupIds": [str(group.pk)]}, format="json"
        ).status_code
        == 201
    )
    response = member.client.post(
        f"/api/public/organizations/{organization.pk}/tool-calls",
        {"tool": "call_tools__tool_0", "arguments": {"text": "hi"}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["status"] == "COMPLETED"


# --- who may use a server, and why ----------------------------------------------------------------------------------


def test_who_may_use_a_server_and_why(admin: Caller, member: Caller, organization: Organization) -> None:
    (server,) = private_servers(organization, 1)
    outsider, in_both = make_members(organization, 2)
    support = group_create(organization=organization, name="Support")
    ops = group_create(organization=organization, name="Ops")
    for group in (support, ops):
        group_member_add(group=group, user_id=in_both.pk)
    group_member_add(group=support, user_id=member.user.pk)
    mcp_server_access_grant(server=server, user_id=member.user.pk, group_ids=[str(support.pk), str(ops.pk)])
    users = {user.email: user for user in mcp_server_users(server=server)}
    assert set(users) == {"admin@acme.test", "member@acme.test", in_both.email}  # not the outsider
    assert (users["admin@acme.test"].admin, users["admin@acme.test"].groups) == (True, ())
    assert (users["member@acme.test"].direct, users["member@acme.test"].groups) == (True, ("Support",))
    assert (users[in_both.email].direct, users[in_both.email].groups) == (False, ("Ops", "Support"))
    assert outsider.email not in users
    McpServer.objects.filter(pk=server.pk).update(everyone_in_organization_can_access=True)
    server.refresh_from_db()
    assert len(mcp_server_users(server=server)) == 4


# --- query counts ---------------------------------------------------------------------------------------------------


def _queries(caller: Caller, method: str, url: str, body: Any = None, status: int = 200) -> int:
    send = getattr(caller.client, method)
    send(url, body, format="json")  # warm: the key's last-used time is written at most once a minute
    with CaptureQueriesContext(connection) as captured:
        response = send(url, body, format="json")
    assert response.status_code == status, response.content
    return len(captured.captured_queries)


def test_reads_and_calls_cost_the_same_queries_whatever_the_groups_and_members(
    admin: Caller, member: Caller, organization: Organization
) -> None:
    base = f"/api/public/organizations/{organization.pk}"
    servers = private_servers(organization, 1)
    first = group_create(organization=organization, name="First")
    group_member_add(group=first, user_id=member.user.pk)
    mcp_server_access_grant(server=servers[0], group_ids=[str(first.pk)])
    call = {"tool": "server_0__tool_1", "arguments": {}}

    def measure() -> tuple[int, ...]:
        return (
            _queries(member, "get", f"{base}/mcp-tools"),
            _queries(member, "post", f"{base}/tool-calls", call, status=202),
            _queries(admin, "get", access_url(admin, servers[0])),
            _queries(admin, "post", access_url(admin, servers[0]), {"groupIds": group_ids}, status=201),
        )

    group_ids = [str(first.pk)]
    small = measure()
    mcp_server_users(server=servers[0])
    with CaptureQueriesContext(connection) as small_users:
        mcp_server_users(server=servers[0])

    servers += private_servers(organization, 30, start=1)
    users = make_members(organization, 50)
    groups = [group_create(organization=organization, name=f"Group {i}") for i in range(40)]
    GroupMembership.objects.bulk_create(
        GroupMembership(group=group, membership=membership)
        for group in groups
        for membership in Membership.objects.filter(user__in=[*users, member.user])
    )
    McpServerGroupAccess.objects.bulk_create(
        McpServerGroupAccess(server=server, group=group) for server in servers for group in groups
    )
    group_ids = [str(group.pk) for group in groups]
    large = measure()
    with CaptureQueriesContext(connection) as large_users:
        mcp_server_users(server=servers[0])

    # catalog: key, membership, tools (the usable servers a subquery); a call awaiting approval: 6 (the usable server
    # is one query); the access list: key, organization, server, direct grants, group grants with their member
    # counts; a grant: the groups named are one query and their grants one insert, whatever their number.
    assert small == large == (3, 6, 5, 9), (small, large)
    assert len(small_users.captured_queries) == len(large_users.captured_queries) == 3
    assert len(catalog(member)) == 2 * 31
    assert len(admin.client.get(access_url(admin, servers[0])).json()["data"]["groups"]) == 41


def test_the_rule_is_one_query_for_a_member_in_many_groups(
    member: Caller, organization: Organization, django_assert_num_queries: Any
) -> None:
    servers = private_servers(organization, 10)
    groups = [group_create(organization=organization, name=f"Group {i}") for i in range(50)]
    membership = Membership.objects.get(user=member.user, organization=organization)
    GroupMembership.objects.bulk_create(GroupMembership(group=group, membership=membership) for group in groups)
    McpServerGroupAccess.objects.bulk_create(
        McpServerGroupAccess(server=server, group=group) for server in servers for group in groups
    )
    with django_assert_num_queries(1):
        usable = list(servers_usable_by(organization=organization, user_id=member.user.pk, is_admin=False))
    assert sorted(s.pk for s in usable) == sorted(s.pk for s in servers)  # each once, though granted 50 times
    with django_assert_num_queries(3):
        users = mcp_server_users(server=servers[0])
    assert [(u.email, len(u.groups)) for u in users] == [("member@acme.test", 50)]
