"""The admin of groups (organization admins, their own organizations' only) and, on a server's page, the groups
granted it and who may use it and why. Every save goes through the services the API uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from mcp_servers.models import McpServer, McpServerGroupAccess
from mcp_servers.services import mcp_server_access_grant, mcp_server_update
from organizations.models import Group, GroupMembership, Membership, Organization
from organizations.services import group_create, group_member_add
from tests.admin.conftest import make_staff
from tests.admin.helpers import change_url, form_data

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_sync_wait(settings: Any) -> None:
    settings.MCP_SYNC_WAIT_SECONDS = 0


def groups_url() -> str:
    return reverse("admin:organizations_group_changelist")


def group_add_url() -> str:
    return reverse("admin:organizations_group_add")


def group_url(group: Group) -> str:
    return reverse("admin:organizations_group_change", args=[group.pk])


def member_of(organization: Organization, email: str) -> Membership:
    user = make_staff(email, organization=organization, role=Membership.Role.MEMBER)
    return Membership.objects.get(user=user, organization=organization)


def test_an_org_admin_adds_a_group_and_sees_only_their_organizations_groups(
    acme: Organization, globex: Organization, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    theirs = group_create(organization=globex, name="Globex people")
    client = as_user(acme_admin)
    page = client.get(group_add_url())
    assert page.status_code == 200
    assert list(page.context["adminform"].form.fields["organization"].queryset) == [acme]
    response = client.post(group_add_url(), {"organization": str(acme.pk), "name": " Support ", "description": "d"})
    assert response.status_code == 302
    group = Group.objects.get(organization=acme)
    assert (group.name, group.description) == ("Support", "d")
    listed = client.get(groups_url())
    assert [g.name for g in listed.context["cl"].result_list] == ["Support"]
    assert client.get(group_url(theirs)).status_code == 404
    assert (
        client.post(reverse("admin:organizations_group_delete", args=[theirs.pk]), {"post": "yes"}).status_code == 404
    )
    assert Group.objects.filter(pk=theirs.pk).exists()
    # Another organization's id in the add form is not a choice.
    refused = client.post(group_add_url(), {"organization": str(globex.pk), "name": "Sneaky"})
    assert refused.status_code == 200
    assert "organization" in refused.context["adminform"].form.errors
    assert not Group.objects.filter(name="Sneaky").exists()


def test_a_taken_name_is_shown_on_the_field(
    acme: Organization, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    group_create(organization=acme, name="Support")
    other = group_create(organization=acme, name="Ops")
    client = as_user(acme_admin)
    response = client.post(group_add_url(), {"organization": str(acme.pk), "name": "SUPPORT"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == [
        "is already the name of another group in this organization."
    ]
    data = form_data(client.get(group_url(other)))
    data["name"] = "support"
    renamed = client.post(group_url(other), data)
    assert renamed.status_code == 200
    assert "name" in renamed.context["adminform"].form.errors
    data["name"] = "Operations"
    assert client.post(group_url(other), data).status_code == 302
    other.refresh_from_db()
    assert other.name == "Operations"


def test_members_are_added_and_removed_through_the_inline(
    acme: Organization, globex: Organization, acme_admin: Any, as_user: Callable[[Any], Client]
) -> None:
    group = group_create(organization=acme, name="Support")
    alice = member_of(acme, "alice@acme.test")
    bob = member_of(acme, "bob@acme.test")
    outsider = member_of(globex, "eve@globex.test")
    client = as_user(acme_admin)
    page = client.get(group_url(group))
    inline = page.context["inline_admin_formsets"][0]
    choices = inline.formset.empty_form.fields["membership"].queryset
    assert {m.user.email for m in choices} == {"admin@acme.test", "alice@acme.test", "bob@acme.test"}

    data = form_data(page)
    prefix = inline.formset.prefix
    data[f"{prefix}-TOTAL_FORMS"] = "2"
    data[f"{prefix}-0-membership"] = str(alice.pk)
    data[f"{prefix}-1-membership"] = str(bob.pk)
    assert client.post(group_url(group), data).status_code == 302
    assert set(GroupMembership.objects.filter(group=group).values_list("membership_id", flat=True)) == {
        alice.pk,
        bob.pk,
    }

    # Someone of another organization is not a choice.
    page = client.get(group_url(group))
    data = form_data(page)
    data[f"{prefix}-TOTAL_FORMS"] = str(int(data[f"{prefix}-TOTAL_FORMS"]) + 1)
    data[f"{prefix}-2-membership"] = str(outsider.pk)
    refused = client.post(group_url(group), data)
    assert refused.status_code == 200
    assert GroupMembership.objects.filter(group=group).count() == 2

    # Removing a row removes the member from the group (not from the organization).
    page = client.get(group_url(group))
    data = form_data(page)
    row = next(r for r in page.context["inline_admin_formsets"][0].formset.forms if r.instance.membership_id == bob.pk)
    data[f"{row.prefix}-DELETE"] = "on"
    assert client.post(group_url(group), data).status_code == 302
    assert list(GroupMembership.objects.filter(group=group).values_list("membership_id", flat=True)) == [alice.pk]
    assert Membership.objects.filter(pk=bob.pk).exists()


def test_deleting_a_group_in_the_admin(acme: Organization, acme_admin: Any, as_user: Callable[[Any], Client]) -> None:
    group = group_create(organization=acme, name="Support")
    group_member_add(group=group, user_id=acme_admin.pk)
    client = as_user(acme_admin)
    delete_url = reverse("admin:organizations_group_delete", args=[group.pk])
    assert client.get(delete_url).status_code == 200
    assert client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not Group.objects.exists()
    assert not GroupMembership.objects.exists()


def test_members_and_staff_without_membership_see_no_groups(
    acme: Organization, acme_member: Any, staff_without_membership: Any, as_user: Callable[[Any], Client]
) -> None:
    group = group_create(organization=acme, name="Support")
    for user in (acme_member, staff_without_membership):
        client = as_user(user)
        assert client.get(groups_url()).status_code == 403
        assert client.get(group_url(group)).status_code in (403, 404)


def test_a_servers_page_shows_who_may_use_it_and_why_and_grants_groups(
    acme: Organization,
    acme_admin: Any,
    server_factory: Callable[..., McpServer],
    as_user: Callable[[Any], Client],
) -> None:
    server = server_factory(acme, "Acme weather", tools=["get_weather"])
    support = group_create(organization=acme, name="Support")
    ops = group_create(organization=acme, name="Ops")
    alice = member_of(acme, "alice@acme.test")
    member_of(acme, "bob@acme.test")  # no grant: not listed
    group_member_add(group=support, user_id=alice.user_id)
    group_member_add(group=ops, user_id=alice.user_id)
    client = as_user(acme_admin)

    page = client.get(change_url(server))
    assert "Everyone in the organization (3 members)." in page.content.decode()

    mcp_server_update(server=server, everyone_in_organization_can_access=False)
    mcp_server_access_grant(server=server, group_ids=[str(support.pk)])
    page = client.get(change_url(server))
    html = page.content.decode()
    assert "alice@acme.test</td><td>through group “Support”" in html
    assert "admin@acme.test</td><td>an organization admin" in html
    assert "bob@acme.test" not in html

    # Grant Ops on the page too: alice is then there through both groups.
    inline = next(i for i in page.context["inline_admin_formsets"] if i.formset.model is McpServerGroupAccess)
    assert {g.name for g in inline.formset.empty_form.fields["group"].queryset} == {"Support", "Ops"}
    data = form_data(page)
    prefix = inline.formset.prefix
    total = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = str(total + 1)
    data[f"{prefix}-{total}-group"] = str(ops.pk)
    assert client.post(change_url(server), data).status_code == 302
    assert set(McpServerGroupAccess.objects.filter(server=server).values_list("group__name", flat=True)) == {
        "Support",
        "Ops",
    }
    html = client.get(change_url(server)).content.decode()
    assert "alice@acme.test</td><td>through groups “Ops”, “Support”" in html

    # And revoke Support there.
    page = client.get(change_url(server))
    data = form_data(page)
    inline = next(i for i in page.context["inline_admin_formsets"] if i.formset.model is McpServerGroupAccess)
    row = next(r for r in inline.formset.forms if r.instance.group_id == support.pk)
    data[f"{row.prefix}-DELETE"] = "on"
    assert client.post(change_url(server), data).status_code == 302
    assert list(McpServerGroupAccess.objects.filter(server=server).values_list("group__name", flat=True)) == ["Ops"]
