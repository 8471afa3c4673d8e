"""Malicious destinations, each through the real sync path, with a canary listening on 127.0.0.1.

The allowlist names exactly one port: the legitimate test server's. The canary's port is not allowed,
so nothing may reach it: 0 requests, 0 connections. Every TCP connect attempt this process makes is
recorded by the socket fixture in conftest, and after each sync the only destinations tried must be
allowed ones. Names are answered by a fake resolver (there is no DNS here); every other part is real.
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from integrations import outbound
from mcp_servers.models import McpServer, SetupState, SyncStatus
from mcp_servers.services import mcp_server_sync
from organizations.models import Organization
from tests.conftest import CONNECT_LOG

pytestmark = pytest.mark.django_db


@dataclass
class Canary:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


def _start_canary(host: str, port: int) -> tuple[Canary, socketserver.ThreadingTCPServer]:
    record = Canary(port=port)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            record.connections += 1
            self.request.settimeout(1)
            try:
                data = self.request.recv(65536)
            except OSError:
                data = b""
            record.requests.append(data)
            self.request.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")

    server = socketserver.ThreadingTCPServer((host, port), Handler)
    server.daemon_threads = True
    record.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return record, server


@pytest.fixture
def canary() -> Iterator[Canary]:
    """A TCP server on 127.0.0.1 that records every connection and whatever is sent to it."""
    record, server = _start_canary("127.0.0.1", 0)
    yield record
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """Names -> successive answers (the last answer repeats). Lookups of other names fail as in real life."""
    answers: dict[str, list[list[str]]] = {}
    calls: dict[str, int] = {}

    async def resolve(host: str, port: int) -> list[outbound.IPAddress]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        index = calls.get(host, 0)
        calls[host] = index + 1
        answer = answers[host][min(index, len(answers[host]) - 1)]
        return [ipaddress.ip_address(a) for a in answer]

    guard_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        # A second lookup by anything other than the guard (say, a connect by name) gets the next answer.
        host = host.decode("idna") if isinstance(host, bytes) else host
        if host in answers:
            index = calls.get(host, 0)
            calls[host] = index + 1
            answer = answers[host][min(index, len(answers[host]) - 1)]
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 0)))
                for a in answer
            ]
        return guard_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(outbound, "resolve_host", resolve)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    answers["__calls__"] = calls  # type: ignore[assignment]
    return answers


@dataclass
class Setup:
    legit_url: str
    legit_port: int
    canary: Canary
    dns: dict[str, list[list[str]]]
    sync: Callable[[str], McpServer]


@pytest.fixture
def setup(organization: Organization, mcp_server_factory: Any, canary: Canary, fake_dns: Any, settings: Any) -> Setup:
    legit = mcp_server_factory(tools=2)
    settings.MCP_OUTBOUND_ALLOWLIST = f"127.0.0.1:{legit.port},localhost:{legit.port}"
    settings.MCP_SYNC_TOTAL_SECONDS = 5

    def sync(url: str) -> McpServer:
        server = setup_row(url)
        start = len(CONNECT_LOG)
        mcp_server_sync(server_id=server.pk)
        tried = set(CONNECT_LOG[start:])
        allowed = {("127.0.0.1", legit.port)}
        assert tried <= allowed, f"connections attempted to {sorted(tried - allowed)}"
        assert canary.connections == 0
        assert canary.requests == []
        server.refresh_from_db()
        return server

    return Setup(legit_url=legit.url, legit_port=legit.port, canary=canary, dns=fake_dns, sync=sync)


def setup_row(url: str) -> McpServer:
    """The row is written directly: literal tricks never pass the create-time check, but the sync path
    must refuse them on its own too (an allowlist can change, a URL can be old)."""
    return McpServer.objects.create(
        organization=Organization.objects.get(),
        display_name=url[:120],
        server_url=url,
        server_label=f"row_{McpServer.objects.count()}",
        last_sync_status=SyncStatus.PENDING,
    )


def assert_refused(server: McpServer) -> None:
    assert (server.setup_state, server.last_sync_status) == (SetupState.BROKEN, SyncStatus.FAILED)
    assert server.sync_error_message
    assert "not allowed" in server.sync_error_message, server.sync_error_message
    assert server.sync_lease_token is None


# Literal destinations: {c} is the canary's port.
LITERALS = [
    "http://127.0.0.1:{c}/mcp",
    "http://127.1:{c}/mcp",
    "http://2130706433:{c}/mcp",
    "http://0x7f000001:{c}/mcp",
    "http://0177.0.0.1:{c}/mcp",
    "http://0x7f.1:{c}/mcp",
    "http://[::1]:{c}/mcp",
    "http://[::ffff:127.0.0.1]:{c}/mcp",
    "http://[::ffff:7f00:1]:{c}/mcp",
    "http://[64:ff9b::7f00:1]:{c}/mcp",
    "http://[2002:7f00:1::1]:{c}/mcp",
    "http://[::127.0.0.1]:{c}/mcp",
    "http://0.0.0.0:{c}/mcp",
    "http://[::]:{c}/mcp",
    "http://localhost:{c}/mcp",
    "http://LOCALHOST.:{c}/mcp",
    "http://mcp.localhost:{c}/mcp",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://10.0.0.1/mcp",
    "http://172.16.0.1/mcp",
    "http://192.168.1.1/mcp",
    "http://100.64.0.1/mcp",
    "http://224.0.0.1/mcp",
    "http://240.0.0.1/mcp",
    "http://[fe80::1]/mcp",
    "http://[fc00::1]/mcp",
    "http://metadata.google.internal/computeMetadata/v1/",
    "https://127.0.0.1:{c}/mcp",
]


@pytest.mark.parametrize("template", LITERALS)
def test_literal_destinations(setup: Setup, template: str) -> None:
    assert_refused(setup.sync(template.format(c=setup.canary.port)))


# Names and what the (fake) DNS answers for them.
NAMES = {
    "loopback.test": [["127.0.0.1"]],
    "private.test": [["10.0.0.5"]],
    "metadata.test": [["169.254.169.254"]],
    "cgnat.test": [["100.64.1.1"]],
    "mapped.test": [["::ffff:127.0.0.1"]],
    "nat64.test": [["64:ff9b::a9fe:a9fe"]],
    "v6loopback.test": [["::1"]],
    "mixed.test": [["93.184.216.34", "127.0.0.1"]],
    "mixed6.test": [["2606:2800:220:1::1", "::1"]],
    "private-first.test": [["10.0.0.1", "93.184.216.34"]],
}


@pytest.mark.parametrize("name", NAMES)
def test_names_resolving_to_internal_addresses(setup: Setup, name: str) -> None:
    setup.dns[name] = NAMES[name]
    assert_refused(setup.sync(f"http://{name}:{setup.canary.port}/mcp"))


def test_rebinding_cannot_switch_the_checked_address(setup: Setup) -> None:
    """The first answer is the allowed server, every later one a second canary at 127.0.0.2 on the same
    port. The guard connects to the address it checked, so a second lookup (by the guard or by anything
    connecting by name) never happens between check and connect, and the canary is never reached."""
    port = setup.legit_port
    rebound, server = _start_canary("127.0.0.2", port)
    try:
        setup.dns["rebind.test"] = [["127.0.0.1"], ["127.0.0.2"]]
        CONNECT_LOG.clear()
        setup.sync(f"http://rebind.test:{port}/mcp")
        assert rebound.connections == 0
        assert ("127.0.0.2", port) not in CONNECT_LOG
        assert ("127.0.0.1", port) in CONNECT_LOG
        # One lookup per connection the guard made, and nobody else looked the name up.
        assert setup.dns["__calls__"]["rebind.test"] == CONNECT_LOG.count(("127.0.0.1", port))  # type: ignore[index]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "target"),
    [
        (307, "http://127.0.0.1:{c}/mcp"),
        (302, "http://127.0.0.1:{c}/mcp"),
        (301, "http://127.0.0.1:{c}/mcp"),
        (308, "http://169.254.169.254/latest/meta-data/"),
        (307, "http://10.0.0.1/mcp"),
        (307, "http://localhost:{p}/mcp"),
        (307, "http://[::1]:{p}/mcp"),
        (303, "http://loopback.test:{c}/mcp"),
    ],
)
def test_redirects_from_an_allowed_server_to_internal_ones(
    setup: Setup, mcp_server_factory: Any, settings: Any, status: int, target: str
) -> None:
    setup.dns["loopback.test"] = [["127.0.0.1"]]
    location = target.format(c=setup.canary.port, p=setup.legit_port)
    redirector = mcp_server_factory(redirect_to=location, redirect_status=status)
    settings.MCP_OUTBOUND_ALLOWLIST = f"127.0.0.1:{setup.legit_port},127.0.0.1:{redirector.port}"
    CONNECT_LOG.clear()
    server = setup_row(redirector.url)
    mcp_server_sync(server_id=server.pk)
    server.refresh_from_db()
    assert {entry for entry in CONNECT_LOG} <= {("127.0.0.1", redirector.port)}
    assert setup.canary.connections == 0
    assert (server.setup_state, server.last_sync_status) == (SetupState.BROKEN, SyncStatus.FAILED)
    assert "redirect" in (server.sync_error_message or "").lower()


@pytest.mark.parametrize(
    "options",
    [
        {"resource_metadata": "http://127.0.0.1:{c}/.well-known/oauth-protected-resource"},
        {"resource_metadata": "http://[::ffff:127.0.0.1]:{c}/.well-known/oauth-protected-resource"},
        {"resource_metadata": "http://169.254.169.254/latest/meta-data/iam/"},
        {"resource_metadata": "http://loopback.test:{c}/.well-known/oauth-protected-resource"},
        {"resource_metadata": "http://2130706433:{c}/prm"},
        {"authorization_server": "http://127.0.0.1:{c}"},
        {"authorization_server": "http://10.0.0.7"},
        {"as_endpoint_base": "http://127.0.0.1:{c}"},
        {"as_endpoint_base": "http://10.1.2.3"},
        {"as_endpoint_base": "http://[fd00:ec2::254]"},
    ],
)
def test_oauth_metadata_pointing_inside(
    setup: Setup, mcp_server_factory: Any, settings: Any, options: dict[str, str]
) -> None:
    """A 401 whose resource_metadata, authorization server or endpoints point inside: refused, never fetched."""
    setup.dns["loopback.test"] = [["127.0.0.1"]]
    protected = mcp_server_factory(
        oauth_challenge=True, **{key: value.format(c=setup.canary.port) for key, value in options.items()}
    )
    settings.MCP_OUTBOUND_ALLOWLIST = f"127.0.0.1:{protected.port}"
    CONNECT_LOG.clear()
    server = setup_row(protected.url)
    mcp_server_sync(server_id=server.pk)
    server.refresh_from_db()
    assert set(CONNECT_LOG) <= {("127.0.0.1", protected.port)}
    assert setup.canary.connections == 0
    assert_refused(server)
    assert server.requires_auth is False


def test_oauth_metadata_control(setup: Setup, mcp_server_factory: Any, settings: Any) -> None:
    protected = mcp_server_factory(oauth_challenge=True)
    settings.MCP_OUTBOUND_ALLOWLIST = f"127.0.0.1:{protected.port}"
    settings.MCP_OAUTH_CLIENTS = {protected.base_url: {"client_id": "preregistered-client"}}
    server = setup_row(protected.url)
    mcp_server_sync(server_id=server.pk)
    server.refresh_from_db()
    assert (server.setup_state, server.requires_auth) == (SetupState.INCOMPLETE, True), server.sync_error_message
    assert protected.requests()["wellKnown"] >= 2  # protected-resource and authorization-server metadata


def test_allowed_controls_still_work(setup: Setup) -> None:
    direct = setup.sync(setup.legit_url)
    assert direct.setup_state == SetupState.CONNECTED
    # A name allowlisted for this one port (the SDK test server accepts only loopback Host headers).
    setup.dns["localhost"] = [["127.0.0.1"]]
    by_name = setup.sync(f"http://localhost:{setup.legit_port}/mcp")
    assert by_name.setup_state == SetupState.CONNECTED, by_name.sync_error_message
