"""Pytest fixtures that run ``tests.servers.mcp_server`` in subprocesses on 127.0.0.1.

Use it as a plugin (``pytest_plugins = ["tests.servers.fixtures"]``)::

    def test_something(mcp_server_factory):
        server = mcp_server_factory(transport="sse", tools=25, page_size=10)
        ...  # server.url, server.control({...}), server.requests(), server.stop()

Options map onto the server's command line: ``transport``, ``port``, ``tools``, ``page_size``,
``require_header`` (``"NAME=VALUE"`` or a ``(name, value)`` pair), ``oauth_challenge``, ``list_delay``, ``status``,
``redirect_to``, ``redirect_status``, ``endless_body``, ``endless_sse_event``, ``trickle``, ``description_size``,
and the OAuth metadata ones: ``resource_metadata``, ``authorization_server``, ``as_endpoint_base``, ``issuer``,
``no_prm``, ``scope_count``, ``metadata_format`` (``"json"``, ``"html"`` or ``"array"``). Switches take a bool.
Every process a test starts is stopped when the test ends, whatever the outcome.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 5.0
CONTROL_TIMEOUT_SECONDS = 5.0

_FLAGS = {
    "transport": "--transport",
    "port": "--port",
    "tools": "--tools",
    "page_size": "--page-size",
    "require_header": "--require-header",
    "list_delay": "--list-delay",
    "status": "--status",
    "redirect_to": "--redirect-to",
    "redirect_status": "--redirect-status",
    "description_size": "--description-size",
    "resource_metadata": "--resource-metadata",
    "authorization_server": "--authorization-server",
    "as_endpoint_base": "--as-endpoint-base",
    "issuer": "--issuer",
    "scope_count": "--scope-count",
    "metadata_format": "--metadata-format",
    "retry_ms": "--retry-ms",
}
# Options without a value: passed when true.
_SWITCHES = {
    "call_tools": "--call-tools",
    "oauth_challenge": "--oauth-challenge",
    "endless_body": "--endless-body",
    "endless_sse_event": "--endless-sse-event",
    "trickle": "--trickle",
    "no_prm": "--no-prm",
    "no_as_metadata": "--no-as-metadata",
    "legacy_only": "--legacy-only",
    "no_tools_capability": "--no-tools-capability",
    "elicit_tool": "--elicit-tool",
}


@dataclass
class RunningMcpServer:
    url: str
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    stderr_log: IO[bytes] = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, payload: dict[str, Any]) -> None:
        """POST a command to the server's control API (drop / restore / describe tools)."""
        request = urllib.request.Request(
            f"{self.base_url}/_control",
            data=json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_SECONDS) as response:
            response.read()

    def requests(self) -> dict[str, Any]:
        """What the server saw: ``{"count": int, "headers": [lowercased names], "rejected": int, "wellKnown": int}``.

        ``count`` and ``headers`` cover the MCP paths, ``rejected`` counts requests refused for lacking the
        ``require_header`` header and ``wellKnown`` counts requests to ``/.well-known/`` paths.
        """
        with urllib.request.urlopen(f"{self.base_url}/_control/requests", timeout=CONTROL_TIMEOUT_SECONDS) as resp:
            result: dict[str, Any] = json.loads(resp.read())
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
    args = [sys.executable, "-m", "tests.servers.mcp_server", "--exit-with-parent"]
    options = {"port": 0, **options}
    for name, value in options.items():
        if name in _SWITCHES:
            if value:
                args.append(_SWITCHES[name])
            continue
        if name not in _FLAGS:
            raise TypeError(f"unknown MCP test server option {name!r}")
        if value is None:
            continue
        if name == "require_header" and not isinstance(value, str):
            value = "=".join(value)
        args += [_FLAGS[name], str(value)]
    return args


def _wait_for_listening_line(process: subprocess.Popen[bytes], timeout: float) -> str | None:
    assert process.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    stdout = process.stdout
    # readline() cannot time out; a daemon thread keeps the wait bounded.
    reader = threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.05).decode().strip()
        except queue.Empty:
            if process.poll() is not None:
                return None
            continue
        return line if line.startswith("LISTENING ") else None
    return None


def _stderr_tail(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-4000:].decode(errors="replace")


@pytest.fixture
def mcp_server_factory() -> Iterator[Callable[..., RunningMcpServer]]:
    """``start(**options) -> RunningMcpServer``; all servers started are stopped at teardown."""
    started: list[RunningMcpServer] = []

    def start(**options: Any) -> RunningMcpServer:
        stderr_log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by RunningMcpServer.stop()
        process = subprocess.Popen(
            _command(options), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr_log, stdin=subprocess.DEVNULL
        )
        server = RunningMcpServer(url="", port=0, process=process, stderr_log=stderr_log)
        started.append(server)
        line = _wait_for_listening_line(process, START_TIMEOUT_SECONDS)
        if line is None:
            try:
                # No LISTENING line usually means the process is on its way out; give it a moment to say why.
                exit_code: int | None = process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                exit_code = None
            server._halt()
            tail = _stderr_tail(stderr_log)
            server.stop()
            why = f"exited with code {exit_code}" if exit_code is not None else f"not up in {START_TIMEOUT_SECONDS:g}s"
            pytest.fail(f"MCP test server {why}; options {options!r}\n{tail}")
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


@pytest.fixture
def mcp_server(mcp_server_factory: Callable[..., RunningMcpServer]) -> RunningMcpServer:
    """A default Streamable HTTP server with three tools."""
    return mcp_server_factory()
