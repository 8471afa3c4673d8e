from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from organizations.models import ApiKey, Membership, Organization

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict[str, str]:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out)
    return json.loads(out.getvalue())


def test_creates_user_org_membership_and_a_working_key() -> None:
    created = run("--email", "ops@acme.test", "--organization", "Acme", "--json")
    assert set(created) == {"organizationId", "apiKey"}
    organization = Organization.objects.get(pk=created["organizationId"])
    assert organization.name == "Acme"
    membership = Membership.objects.get(organization=organization, user__email="ops@acme.test")
    assert membership.role == Membership.Role.ADMIN
    stored = ApiKey.objects.get(user=membership.user)
    assert created["apiKey"] not in (stored.hashed_key, stored.prefix)  # only the hash is kept
    assert created["apiKey"].startswith(f"mcpk_{stored.prefix}_")

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['apiKey']}")
    response = client.get(f"/api/public/organizations/{organization.pk}/mcp-servers/{organization.pk}")
    assert response.status_code == 404  # authenticated and an admin; that server id just does not exist


def test_running_again_reuses_the_org_and_issues_a_new_key() -> None:
    first = run("--email", "ops@acme.test", "--organization", "Acme", "--json")
    second = run("--email", "ops@acme.test", "--organization", "Acme", "--role", "member", "--json")
    assert first["organizationId"] == second["organizationId"]
    assert first["apiKey"] != second["apiKey"]
    assert Membership.objects.get().role == Membership.Role.MEMBER
    assert ApiKey.objects.count() == 2
