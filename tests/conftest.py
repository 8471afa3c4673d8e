from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from organizations.models import Membership, Organization
from organizations.services import api_key_create, membership_set, organization_create

pytest_plugins = ["tests.servers.fixtures", "tests.servers.oauth_fixtures"]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
# Every TCP connect attempt made in this process, refused or not: tests assert where connections went.
CONNECT_LOG: list[tuple[str, int]] = []


def _loopback_only(address: Any) -> None:
    if isinstance(address, tuple):
        host = address[0]
        CONNECT_LOG.append((str(host), int(address[1])))
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            raise ConnectionRefusedError(f"test guard: connect to unresolved host {host!r} refused") from None
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
            raise ConnectionRefusedError(f"test guard: connect to non-loopback {host} refused")


@pytest.fixture(autouse=True, scope="session")
def _refuse_non_loopback_connects() -> Iterator[None]:
    """No test may open a connection to a non-loopback address, even if the code under test fails."""

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _loopback_only(address)
        return _real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _loopback_only(address)
        return _real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # No DNS query leaves the machine: only IP literals and loopback names resolve.
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in _LOOPBACK_NAMES:
            try:
                ipaddress.ip_address(str(name).split("%")[0])
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, f"test guard: DNS lookup of {name!r} refused") from None
        return _real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(autouse=True)
def _test_settings(settings: Any) -> None:
    # Test MCP servers listen on 127.0.0.1 at random ports.
    settings.MCP_OUTBOUND_ALLOWLIST = "127.0.0.1"
    # Rate limits are tested on their own (tests/core/test_ratelimit.py); elsewhere they stay out of the way.
    settings.MCP_RATE_LIMIT = "100000/minute"
    settings.MCP_AUTH_FAILURE_RATE_LIMIT = "100000/minute"
    settings.MCP_SYNC_WAIT_SECONDS = 10.0
    settings.MCP_SYNC_TOTAL_SECONDS = 10.0
    # Pages render without `collectstatic` having run: plain static URLs instead of the manifest's fingerprinted
    # ones. The real storage is what the service runs with in the browser tests (tests/admin/test_admin_browser.py
    # starts `make run`) and in tests/integration/test_run_services.py (`make run-services`).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from core import ratelimit

    ratelimit.reset()


@dataclass
class Caller:
    """A user with an API key, and an API client that sends it."""

    organization: Organization
    user: Any
    key: str
    client: APIClient

    def create_url(self, organization: Organization | None = None) -> str:
        return f"/api/public/organizations/{(organization or self.organization).pk}/mcp-servers"


def make_caller(*, organization: Organization, email: str, role: str) -> Caller:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username=email, email=email)
    membership_set(user=user, organization=organization, role=role)
    key = api_key_create(user=user).plaintext
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return Caller(organization=organization, user=user, key=key, client=client)


@pytest.fixture
def organization(db: None) -> Organization:
    return organization_create(name="Acme")


@pytest.fixture
def admin(organization: Organization) -> Caller:
    return make_caller(organization=organization, email="admin@acme.test", role=Membership.Role.ADMIN)


@pytest.fixture
def member(organization: Organization) -> Caller:
    return make_caller(organization=organization, email="member@acme.test", role=Membership.Role.MEMBER)


@pytest.fixture
def other_admin(db: None) -> Caller:
    other = organization_create(name="Globex")
    return make_caller(organization=other, email="admin@globex.test", role=Membership.Role.ADMIN)
