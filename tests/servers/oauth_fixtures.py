"""Pytest fixture that runs ``tests.servers.oauth_mcp_server`` (OAuth AS + protected MCP server) in subprocesses.

Use it as a plugin (``pytest_plugins = ["tests.servers.oauth_fixtures"]`` or ``-p tests.servers.oauth_fixtures``)::

    def test_something(oauth_mcp_server_factory):
        server = oauth_mcp_server_factory(scopes="tools:read tools:write", access_token_ttl=2)
        ...  # server.url, server.base_url, server.control({"expire": True}), server.stats(), server.stop()

Options map onto the server's command line: ``port``, ``tools``, ``scopes`` (a string or a list), ``client_id``,
``client_secret``, ``client_redirect_uri`` (a string or a list), ``cimd_prefix``, ``access_token_ttl``,
``refresh_delay``, and the switches ``no_registration``, ``cimd``, ``no_rotate``, ``no_iss`` (bools). Every process a
test starts is stopped when the test ends, whatever the outcome. The process helpers are those of
``tests.servers.fixtures``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

import pytest

# Imported (not only registered as a plugin by the conftest) before pytest could rewrite its asserts otherwise.
pytest.register_assert_rewrite("tests.servers.fixtures")

from tests.servers.fixtures import (  # noqa: E402
    CONTROL_TIMEOUT_SECONDS,
    REPO_ROOT,
    START_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    _stderr_tail,
    _wait_for_listening_line,
)

_FLAGS = {
    "port": "--port",
    "tools": "--tools",
    "scopes": "--scopes",
    "call_scopes": "--call-scopes",
    "client_id": "--client-id",
    "client_secret": "--client-secret",
    "cimd_prefix": "--cimd-prefix",
    "access_token_ttl": "--access-token-ttl",
    "refresh_delay": "--refresh-delay",
    "client_public_key": "--client-public-key",
}
# Options without a value: passed when true.
_SWITCHES = {
    "no_registration": "--no-registration",
    "cimd": "--cimd",
    "no_rotate": "--no-rotate",
    "no_iss": "--no-iss",
    "no_prm": "--no-prm",
    "no_as_metadata": "--no-as-metadata",
    "client_credentials": "--client-credentials",
}


@dataclass
class RunningOAuthMcpServer:
    url: str  # the MCP endpoint, http://127.0.0.1:<port>/mcp (also the OAuth resource)
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    stderr_log: IO[bytes] = field(repr=False)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the issuer, and the base of every OAuth endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def control(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``{"revoke": true}`` (revoke every token) and/or ``{"expire": true}`` (expire every access token).

        Returns ``{"ok": true, "revoked": <tokens dropped>, "expired": <access tokens expired>}`` (keys as asked).
        """
        request = urllib.request.Request(
            f"{self.base_url}/_control",
            data=json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_SECONDS) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def stats(self) -> dict[str, Any]:
        """The server's counters; see ``Stats`` in ``tests.servers.oauth_mcp_server``."""
        with urllib.request.urlopen(f"{self.base_url}/_control/stats", timeout=CONTROL_TIMEOUT_SECONDS) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def stop(self) -> None:
        """Stop the server (idempotent); its port is closed once this returns."""
        self._halt()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr_log.close()

    def _halt(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _command(options: dict[str, Any]) -> list[str]:
    args = [sys.executable, "-m", "tests.servers.oauth_mcp_server", "--exit-with-parent"]
    options = {"port": 0, **options}
    for name, value in options.items():
        if name in _SWITCHES:
            if value:
                args.append(_SWITCHES[name])
            continue
        if name == "client_redirect_uri":
            for uri in [value] if isinstance(value, str) else list(value or []):
                args += ["--client-redirect-uri", str(uri)]
            continue
        if name not in _FLAGS:
            raise TypeError(f"unknown OAuth MCP test server option {name!r}")
        if value is None:
            continue
        if name == "scopes" and not isinstance(value, str):
            value = " ".join(value)
        args += [_FLAGS[name], str(value)]
    return args


@pytest.fixture
def oauth_mcp_server_factory() -> Iterator[Callable[..., RunningOAuthMcpServer]]:
    """``start(**options) -> RunningOAuthMcpServer``; all servers started are stopped at teardown."""
    started: list[RunningOAuthMcpServer] = []

    def start(**options: Any) -> RunningOAuthMcpServer:
        command = _command(options)
        stderr_log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by RunningOAuthMcpServer.stop()
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr_log, stdin=subprocess.DEVNULL
        )
        server = RunningOAuthMcpServer(url="", port=0, process=process, stderr_log=stderr_log)
        started.append(server)
        line = _wait_for_listening_line(process, START_TIMEOUT_SECONDS)
        if line is None:
            try:
                exit_code: int | None = process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                exit_code = None
            server._halt()
            tail = _stderr_tail(stderr_log)
            server.stop()
            why = f"exited with code {exit_code}" if exit_code is not None else f"not up in {START_TIMEOUT_SECONDS:g}s"
            # The secret is on the command line, so the options are reported without it.
            shown = {k: ("***" if k == "client_secret" else v) for k, v in options.items()}
            pytest.fail(f"OAuth MCP test server {why}; options {shown!r}\n{tail}")
        server.url = line.split(" ", 1)[1]
        url = urlsplit(server.url)
        assert url.hostname == "127.0.0.1"
        assert url.port is not None
        server.port = url.port
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
