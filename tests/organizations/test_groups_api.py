"""The groups API: groups of an organization and their members, admins only, in the API's conventions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from organizations.models import Group, GroupMembership, Membership, Organization
from organizations.services import group_create, group_member_add, membership_set
from tests.conftest import Caller

pytestmark = pytest.mark.django_db


def groups_url(caller: Caller, organization: Organization | None = None) -> str:
    return f"/api/public/organizations/{(organization or caller.organization).pk}/groups"


def error(response: Any, status: int, title: str = "ValidationError") -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["title"] == title
    detail: str = body["error"]["detail"]
    return detail


def make_members(organization: Organization, count: int, start: int = 0) -> list[Any]:
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"user{i}@acme.test", email=f"user{i}@acme.test") for i in range(start, start + count)
    )
    Membership.objects.bulk_create(Membership(user=user, organization=organization) for user in users)
    return users


# --- groups -----------------------------------------------------------------------------------------------------


def test_create_get_update_delete(admin: Caller) -> None:
    created = admin.client.post(
        groups_url(admin), {"name": "  Support ", "description": "The support team"}, format="json"
    )
    assert created.status_code == 201
    group = created.json()["data"]
    assert set(group) == {"id", "name", "description", "memberCount", "createdAt", "updatedAt"}
    assert (group["name"], group["description"], group["memberCount"]) == ("Support", "The support team", 0)
    assert group["createdAt"].endswith("Z")

    url = f"{groups_url(admin)}/{group['id']}"
    assert admin.client.get(url).json() == {"data": group}

    renamed = admin.client.patch(url, {"name": "Helpdesk"}, format="json")
    assert renamed.status_code == 200
    assert renamed.json()["data"]["name"] == "Helpdesk"
    assert renamed.json()["data"]["description"] == "The support team"
    described = admin.client.patch(url, {"description": ""}, format="json").json()["data"]
    assert (described["name"], described["description"]) == ("Helpdesk", "")
    assert admin.client.patch(url, {}, format="json").json()["data"]["name"] == "Helpdesk"

    assert admin.client.delete(url).status_code == 204
    assert not Group.objects.exists()
    error(admin.client.get(url), 404, "NotFound")
    error(admin.client.delete(url), 404, "NotFound")


def test_create_without_a_description(admin: Caller) -> None:
    created = admin.client.post(groups_url(admin), {"name": "Ops"}, format="json")
    assert created.status_code == 201
    assert created.json()["data"]["description"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 42}, "name"),
        ({"name": None}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "\ud800"}, "name"),
        ({"name": "Ops", "description": "a\x00b"}, "description"),
        ({"name": "Ops", "description": "\udfff"}, "description"),
        ({"name": "Ops", "description": "x" * 1001}, "description"),
        ({"name": "Ops", "description": 1}, "description"),
    ],
)
def test_create_rejects_bad_input_and_writes_nothing(admin: Caller, body: dict[str, Any], field: str) -> None:
    # As JSON on the wire, with its \u escapes (lone surrogates among them).
    detail = error(admin.client.post(groups_url(admin), json.dumps(body), content_type="application/json"), 400)
    assert detail.startswith(f"{field}:")
    assert not Group.objects.exists()


def test_bodies_that_are_not_objects(admin: Caller) -> None:
    for body in ("[]", '"Ops"', "not json"):
        response = admin.client.post(groups_url(admin), body, content_type="application/json")
        error(response, 400)
    group = group_create(organization=admin.organization, name="Ops")
    error(admin.client.patch(f"{groups_url(admin)}/{group.pk}", "[1]", content_type="application/json"), 400)


def test_names_are_unique_in_an_organization_case_insensitively(admin: Caller, other_admin: Caller) -> None:
    assert admin.client.post(groups_url(admin), {"name": "Support"}, format="json").status_code == 201
    detail = error(admin.client.post(groups_url(admin), {"name": "support "}, format="json"), 400)
    assert detail == "name: is already the name of another group in this organization."
    # Another organization's names are its own.
    assert other_admin.client.post(groups_url(other_admin), {"name": "Support"}, format="json").status_code == 201
    ops = admin.client.post(groups_url(admin), {"name": "Ops"}, format="json").json()["data"]
    error(admin.client.patch(f"{groups_url(admin)}/{ops['id']}", {"name": "SUPPORT"}, format="json"), 400)
    # Renaming a group to its own name in another case is fine.
    renamed = admin.client.patch(f"{groups_url(admin)}/{ops['id']}", {"name": "OPS"}, format="json")
    assert renamed.status_code == 200
    assert Group.objects.filter(organization=admin.organization).count() == 2


def test_update_rejects_bad_input(admin: Caller) -> None:
    group = group_create(organization=admin.organization, name="Ops", description="d")
    url = f"{groups_url(admin)}/{group.pk}"
    for body, field in [({"name": " "}, "name"), ({"name": 1}, "name"), ({"description": "x" * 1001}, "description")]:
        assert error(admin.client.patch(url, body, format="json"), 400).startswith(f"{field}:")
    group.refresh_from_db()
    assert (group.name, group.description) == ("Ops", "d")


def test_list_pages_newest_first_with_member_counts(admin: Caller, organization: Organization) -> None:
    groups = [group_create(organization=organization, name=f"Group {i}") for i in range(5)]
    users = make_members(organization, 3)
    for user in users:
        group_member_add(group=groups[0], user_id=user.pk)
    expected = [str(g.pk) for g in sorted(groups, key=lambda g: g.pk, reverse=True)]
    first = admin.client.get(f"{groups_url(admin)}?limit=2").json()
    assert [g["id"] for g in first["data"]] == expected[:2]
    assert first["pagination"] == {"nextCursor": expected[1], "hasMore": True}
    rest = admin.client.get(f"{groups_url(admin)}?limit=3&cursor={expected[1]}").json()
    assert [g["id"] for g in rest["data"]] == expected[2:]
    assert rest["pagination"] == {"nextCursor": None, "hasMore": False}
    counts = {g["id"]: g["memberCount"] for g in admin.client.get(groups_url(admin)).json()["data"]}
    assert counts[str(groups[0].pk)] == 3
    assert sum(counts.values()) == 3


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "cursor=nope"])
def test_list_rejects_bad_parameters(admin: Caller, query: str) -> None:
    assert error(admin.client.get(f"{groups_url(admin)}?{query}"), 400).split(":")[0] in ("limit", "cursor")


def test_members_and_other_organizations_get_404(admin: Caller, member: Caller, other_admin: Caller) -> None:
    group = group_create(organization=admin.organization, name="Ops")
    url = f"{groups_url(admin)}/{group.pk}"
    # A member who is not an admin may not read groups either: who is in which group is for admins.
    for caller in (member, other_admin):
        error(caller.client.get(groups_url(admin)), 404, "NotFound")
        error(caller.client.post(groups_url(admin), {"name": "Mine"}, format="json"), 404, "NotFound")
        error(caller.client.get(url), 404, "NotFound")
        error(caller.client.patch(url, {"name": "Theirs"}, format="json"), 404, "NotFound")
        error(caller.client.delete(url), 404, "NotFound")
        error(caller.client.get(f"{url}/members"), 404, "NotFound")
        error(caller.client.post(f"{url}/members", {"email": "member@acme.test"}, format="json"), 404, "NotFound")
        error(caller.client.delete(f"{url}/members/{member.user.pk}"), 404, "NotFound")
    # Another organization's group through one's own organization: 404 too, as is a malformed id.
    own = f"{groups_url(other_admin)}/{group.pk}"
    error(other_admin.client.get(own), 404, "NotFound")
    error(other_admin.client.get(f"{own}/members"), 404, "NotFound")
    error(admin.client.get(f"{groups_url(admin)}/not-a-uuid"), 404, "NotFound")
    assert Group.objects.get().name == "Ops"
    error(admin.client.put(url, {"name": "x"}, format="json"), 405, "MethodNotAllowed")


def test_unauthenticated(admin: Caller) -> None:
    admin.client.credentials()
    error(admin.client.get(groups_url(admin)), 401, "Unauthorized")


# --- members ----------------------------------------------------------------------------------------------------


def test_add_list_and_remove_members(admin: Caller, member: Caller) -> None:
    group = group_create(organization=admin.organization, name="Ops")
    url = f"{groups_url(admin)}/{group.pk}/members"
    by_email = admin.client.post(url, {"email": " MEMBER@acme.test"}, format="json")
    assert by_email.status_code == 201
    added = by_email.json()["data"]
    assert set(added) == {"userId", "email", "role", "addedAt"}
    assert (added["userId"], added["email"], added["role"]) == (str(member.user.pk), "member@acme.test", "MEMBER")
    # Idempotent, by either spelling of the id.
    assert admin.client.post(url, {"userId": str(member.user.pk)}, format="json").json()["data"] == added
    by_id = admin.client.post(url, {"userId": admin.user.pk}, format="json")
    assert by_id.status_code == 201
    assert by_id.json()["data"]["role"] == "ADMIN"

    listed = admin.client.get(url).json()
    assert [m["email"] for m in listed["data"]] == ["admin@acme.test", "member@acme.test"]
    assert listed["pagination"] == {"nextCursor": None, "hasMore": False}
    assert admin.client.get(f"{groups_url(admin)}/{group.pk}").json()["data"]["memberCount"] == 2

    assert admin.client.delete(f"{url}/{member.user.pk}").status_code == 204
    assert [m["email"] for m in admin.client.get(url).json()["data"]] == ["admin@acme.test"]
    error(admin.client.delete(f"{url}/{member.user.pk}"), 404, "NotFound")
    error(admin.client.delete(f"{url}/{2**63}"), 404, "NotFound")
    error(admin.client.delete(f"{url}/{'9' * 5000}"), 404, "NotFound")  # past Python's int() limit
    assert error(admin.client.delete(f"{url}/abc"), 400) == "userId: is not a valid user id."
    assert error(admin.client.delete(f"{url}/%C2%B2"), 400) == "userId: is not a valid user id."


def test_members_page_with_a_cursor(admin: Caller, organization: Organization) -> None:
    group = group_create(organization=organization, name="Many")
    for user in make_members(organization, 5):
        group_member_add(group=group, user_id=user.pk)
    url = f"{groups_url(admin)}/{group.pk}/members"
    first = admin.client.get(f"{url}?limit=2").json()
    assert [m["email"] for m in first["data"]] == ["user4@acme.test", "user3@acme.test"]
    assert first["pagination"]["hasMore"] is True
    rest = admin.client.get(f"{url}?cursor={first['pagination']['nextCursor']}").json()
    assert [m["email"] for m in rest["data"]] == ["user2@acme.test", "user1@acme.test", "user0@acme.test"]
    for query in ("cursor=abc", f"cursor={2**64}", "limit=0"):
        error(admin.client.get(f"{url}?{query}"), 400)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "userId: send either userId or email (of a member of this organization)."),
        (
            {"userId": "1", "email": "member@acme.test"},
            "userId: send either userId or email (of a member of this organization).",
        ),
        ({"userId": "abc"}, "userId: is not a valid user id."),
        ({"userId": "-1"}, "userId: is not a valid user id."),
        ({"userId": -1}, "userId: is not a valid user id."),
        ({"userId": True}, "userId: is not a valid user id."),
        ({"userId": 1.5}, "userId: is not a valid user id."),
        ({"userId": str(2**64)}, "userId: is not a member of this organization."),
        ({"userId": "9" * 5000}, "userId: is not a member of this organization."),
        ({"email": "nobody@acme.test"}, "email: is not a member of this organization."),
        ({"email": "admin@globex.test"}, "email: is not a member of this organization."),
        ({"email": 7}, "email: Not a valid string."),
        ({"email": "\ud800@acme.test"}, "email: Surrogate characters are not allowed: U+D800."),
    ],
)
def test_add_member_rejects_bad_input(
    admin: Caller, member: Caller, other_admin: Caller, body: Any, detail: str
) -> None:
    group = group_create(organization=admin.organization, name="Ops")
    url = f"{groups_url(admin)}/{group.pk}/members"
    response = admin.client.post(url, json.dumps(body), content_type="application/json")
    assert error(response, 400) == detail
    assert not GroupMembership.objects.exists()


def test_add_member_by_id_of_someone_in_another_organization(admin: Caller, other_admin: Caller) -> None:
    group = group_create(organization=admin.organization, name="Ops")
    response = admin.client.post(
        f"{groups_url(admin)}/{group.pk}/members", {"userId": other_admin.user.pk}, format="json"
    )
    assert error(response, 400) == "userId: is not a member of this organization."


def test_leaving_the_organization_leaves_its_groups(admin: Caller, member: Caller) -> None:
    group = group_create(organization=admin.organization, name="Ops")
    group_member_add(group=group, user_id=member.user.pk)
    Membership.objects.filter(user=member.user).delete()
    assert not GroupMembership.objects.exists()
    # Back in the organization, they are not back in the group.
    membership_set(user=member.user, organization=admin.organization, role=Membership.Role.MEMBER)
    assert admin.client.get(f"{groups_url(admin)}/{group.pk}/members").json()["data"] == []


def test_deleting_a_group_keeps_its_members(admin: Caller, member: Caller) -> None:
    group = group_create(organization=admin.organization, name="Ops")
    group_member_add(group=group, user_id=member.user.pk)
    assert admin.client.delete(f"{groups_url(admin)}/{group.pk}").status_code == 204
    assert not GroupMembership.objects.exists()
    assert Membership.objects.filter(user=member.user, organization=admin.organization).exists()


# --- query counts -----------------------------------------------------------------------------------------------


def _queries(caller: Caller, url: str) -> int:
    caller.client.get(url)  # warm: the key's last-used time is written at most once a minute
    with CaptureQueriesContext(connection) as captured:
        response = caller.client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_reads_cost_the_same_queries_whatever_the_number_of_groups_and_members(
    admin: Caller, organization: Organization
) -> None:
    first = group_create(organization=organization, name="First")
    group_member_add(group=first, user_id=admin.user.pk)
    members_url = f"{groups_url(admin)}/{first.pk}/members"
    small = (_queries(admin, groups_url(admin)), _queries(admin, f"{groups_url(admin)}/{first.pk}"))
    small_members = _queries(admin, members_url)

    users = make_members(organization, 40)
    groups = [group_create(organization=organization, name=f"Group {i}") for i in range(30)]
    GroupMembership.objects.bulk_create(
        GroupMembership(group=group, membership=membership)
        for group in [first, *groups]
        for membership in Membership.objects.filter(user__in=users)
    )
    large = (_queries(admin, groups_url(admin)), _queries(admin, f"{groups_url(admin)}/{first.pk}"))
    large_members = _queries(admin, members_url)
    # key, organization (admin check), groups with their counts / group, members with their users
    assert small == large == (3, 3)
    assert small_members == large_members == 4
    assert len(admin.client.get(members_url).json()["data"]) == 41
    assert {g["memberCount"] for g in admin.client.get(groups_url(admin)).json()["data"]} == {40, 41}
