from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import Client

from organizations.models import Membership, Organization

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict[str, str]:
    out = StringIO()
    call_command("create_admin_login", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_a_new_person_gets_an_admin_login_for_their_organization() -> None:
    login = run("--email", "alice@acme.test", "--organization", "Acme")
    assert set(login) == {"organizationId", "username", "password", "url"}
    assert login["username"] == "alice@acme.test"
    assert login["url"].endswith("/admin/")
    user = get_user_model().objects.get(username="alice@acme.test")
    assert user.is_staff
    assert user.is_active
    assert not user.is_superuser
    assert login["password"] not in user.password  # stored hashed
    membership = Membership.objects.get(user=user)
    assert membership.role == Membership.Role.ADMIN
    assert str(membership.organization_id) == login["organizationId"]
    assert Organization.objects.get(pk=login["organizationId"]).name == "Acme"

    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": login["username"], "password": login["password"]})
    assert response.status_code == 302
    assert response.url == "/admin/"
    assert "MCP servers" in client.get("/admin/").content.decode()


def test_running_it_again_issues_a_new_password_and_keeps_one_membership() -> None:
    first = run("--email", "alice@acme.test", "--organization", "Acme")
    second = run("--email", "alice@acme.test", "--organization", "Acme")
    assert first["password"] != second["password"]
    assert first["organizationId"] == second["organizationId"]
    assert authenticate(username="alice@acme.test", password=first["password"]) is None
    assert authenticate(username="alice@acme.test", password=second["password"]) is not None
    assert Membership.objects.count() == 1


def test_a_member_with_an_api_key_becomes_an_admin_of_the_same_organization() -> None:
    out = StringIO()
    call_command("create_api_key", "--email", "bob@acme.test", "--organization", "Acme", "--role", "member",
                 "--json", stdout=out)  # fmt: skip
    member = json.loads(out.getvalue())
    login = run("--email", "bob@acme.test", "--organization", "Acme")
    assert login["organizationId"] == member["organizationId"]
    assert Membership.objects.get(user__username="bob@acme.test").role == Membership.Role.ADMIN


def test_the_plain_output_names_the_login() -> None:
    out = StringIO()
    call_command("create_admin_login", "--email", "carol@acme.test", "--organization", "Acme", stdout=out)
    text = out.getvalue()
    assert "username: carol@acme.test" in text
    assert "password (shown once): " in text
