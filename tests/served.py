"""The service as a newcomer runs it: `make run` (or `make run-services`) in a subprocess, exactly as the README says,
on ports and a database of the test's own. What it prints (the demo organization, API key and admin login) is
parsed from its output, and every check goes through HTTP, as a user's would.

The process group is stopped when the test ends: `make`, bin/serve, the web server (runserver, or honcho with
gunicorn, a Celery worker and beat) and the demo MCP server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 240.0  # a first start collects the static files (several seconds on a slow machine)
STOP_TIMEOUT_SECONDS = 20.0
_ADMIN_LINE = re.compile(r"^Admin: (?P<url>\S+)\s+username: (?P<username>\S+)\s+password: (?P<password>\S+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServedService:
    """A running `make run`: its base URL, what it printed, and the environment its commands run with."""

    base: str
    demo_mcp_url: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    organization_id: str = ""
    api_key: str = ""
    admin_username: str = ""
    admin_password: str = ""

    def log(self) -> str:
        return "".join(self.output)

    def manage(self, *args: str) -> str:
        """A `manage.py` command against the same database, as an operator would run it beside the service."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def api(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> tuple[int, Any]:
        """One API call with the demo key (or `key`); returns the status and the decoded JSON body."""
        request = urllib.request.Request(
            f"{self.base}/api/public/organizations/{self.organization_id}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key or self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"{self.base}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _read_output(service: ServedService) -> None:
    assert service.process.stdout is not None
    for line in service.process.stdout:
        service.output.append(line)


@contextlib.contextmanager
def make_run(target: str, *, env: dict[str, str]) -> Iterator[ServedService]:
    """`make <target>` (run or run-services) with this interpreter's virtualenv; yields once it answers."""
    port, demo_port = free_port(), free_port()
    # A sub-make must not inherit the outer `make test`'s flags, and the service gets only what a shell would give
    # it plus `env`: no pytest or test-settings leftovers.
    base_env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    base_env.pop("DJANGO_SETTINGS_MODULE", None)
    full_env = {**base_env, "PYTHONUNBUFFERED": "1", **env}
    command = ["make", "--no-print-directory", target, f"VENV={sys.prefix}", f"PYTHON={sys.executable}",
               f"PORT={port}", f"DEMO_MCP_PORT={demo_port}"]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, stopped as a whole
    )
    base = f"http://127.0.0.1:{port}"
    service = ServedService(
        base=base,
        demo_mcp_url=f"http://127.0.0.1:{demo_port}/mcp",
        env={**full_env, "PUBLIC_BASE_URL": base},
        process=process,
    )
    threading.Thread(target=_read_output, args=(service,), daemon=True).start()
    try:
        _wait_until_ready(service)
        yield service
    finally:
        service.stop()


def _wait_until_ready(service: ServedService) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise AssertionError(f"make exited with {service.process.returncode}:\n{service.log()[-6000:]}")
        _parse(service)
        if service.admin_password:
            with contextlib.suppress(OSError):
                status, _, _ = service.get("/readyz")
                if status == 200:
                    return
        time.sleep(0.25)
    raise AssertionError(f"the service did not answer within {START_TIMEOUT_SECONDS:g} s:\n{service.log()[-6000:]}")


def _parse(service: ServedService) -> None:
    for line in list(service.output):
        if line.startswith("Demo organization: "):
            service.organization_id = line.split(": ", 1)[1].strip()
        elif line.startswith("Demo API key (shown once): "):
            service.api_key = line.split(": ", 1)[1].strip()
        elif match := _ADMIN_LINE.match(line):
            service.admin_username = match["username"]
            service.admin_password = match["password"]
