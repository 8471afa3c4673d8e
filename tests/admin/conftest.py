"""Fixtures for the admin's tests: staff users of each kind, servers and tools, and a logged-in test client."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mcp_servers.models import AccessMode, McpServer, McpTool
from mcp_servers.services import mcp_server_create
from mcp_servers.validation import HeaderInput
from organizations.models import Membership, Organization
from organizations.services import membership_set, organization_create

PASSWORD = "correct horse battery staple 42"
SECRET = "sk-live-7f3a9c1e-never-shown"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real headless Chromium against the live admin")


def make_staff(
    username: str,
    *,
    organization: Organization | None = None,
    role: str | None = None,
    superuser: bool = False,
    password: str | None = None,
) -> Any:
    user_model = get_user_model()
    user = user_model(username=username, email=username, is_staff=True, is_superuser=superuser)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save()
    if organization is not None and role is not None:
        membership_set(user=user, organization=organization, role=role)
    return user


@pytest.fixture
def acme(db: None) -> Organization:
    return organization_create(name="Acme")


@pytest.fixture
def globex(db: None) -> Organization:
    return organization_create(name="Globex")


@pytest.fixture
def acme_admin(acme: Organization) -> Any:
    return make_staff("admin@acme.test", organization=acme, role=Membership.Role.ADMIN)


@pytest.fixture
def globex_admin(globex: Organization) -> Any:
    return make_staff("admin@globex.test", organization=globex, role=Membership.Role.ADMIN)


@pytest.fixture
def acme_member(acme: Organization) -> Any:
    return make_staff("member@acme.test", organization=acme, role=Membership.Role.MEMBER)


@pytest.fixture
def staff_without_membership(db: None) -> Any:
    return make_staff("staff@nowhere.test")


@pytest.fixture
def superuser(db: None) -> Any:
    return make_staff("root@example.test", superuser=True)


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_user() -> Callable[[Any], Client]:
    return login


@pytest.fixture
def server_factory(db: None) -> Callable[..., McpServer]:
    """A server made by the service (inside the test's transaction, so its sync never runs), with tools."""

    def make(
        organization: Organization,
        name: str = "Weather tools",
        *,
        headers: list[tuple[str, str]] | None = None,
        tools: list[str] | None = None,
    ) -> McpServer:
        server = mcp_server_create(
            organization=organization,
            created_by=None,
            display_name=name,
            server_url="https://mcp.example.com/mcp",
            headers=[HeaderInput(key=k, value=v) for k, v in (headers or [])],
        )
        for index, tool_name in enumerate(tools or []):
            digest = definition_hash_for(tool_name)
            McpTool.objects.create(
                server=server,
                name=tool_name,
                description=f"Does {tool_name}.",
                read_only_hint=index % 2 == 0,
                access_mode=AccessMode.ALWAYS_ALLOW if index % 2 == 0 else AccessMode.NEEDS_APPROVAL,
                definition_hash=digest,
                reviewed_definition_hash=digest,
            )
        return server

    return make


def definition_hash_for(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()
