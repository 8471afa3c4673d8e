"""`make run-services` as a newcomer runs it: gunicorn, a Celery worker and beat from the Procfile (by honcho), against
the local PostgreSQL and Redis, with the demo `make run` prints. The create below is synced by the real worker."""

from __future__ import annotations

import http.cookiejar
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.served import ServedService, make_run

DATABASE = f"mcp_run_services_{os.getpid()}"


@pytest.fixture(scope="module")
def served(services_available: None) -> Iterator[ServedService]:
    env = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",  # created by the command itself
        "REDIS_URL": "redis://127.0.0.1:6379/12",
        # Empty: bin/serve allowlists the demo MCP server only, as for a newcomer.
        "MCP_OUTBOUND_ALLOWLIST": "",
    }
    try:
        with make_run("run-services", env=env) as service:
            yield service
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as maintenance:
            maintenance.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def test_the_real_stack_serves_the_demo(served: ServedService) -> None:
    # Every process of the Procfile is up, under honcho.
    log = served.log()
    for process in ("web.1", "worker.1", "beat.1"):
        assert process in log, log[-4000:]
    status, _, body = served.get("/readyz")
    assert status == 200
    assert b'"broker": "ok"' in body

    # The README's curl, as printed: the worker syncs the demo server.
    status, created = served.api(
        "POST", "/mcp-servers", {"displayName": "Demo tools", "serverUrl": served.demo_mcp_url}
    )
    assert status == 201, created
    server = created["data"]
    assert (server["setupState"], server["lastSyncStatus"]) == ("CONNECTED", "SUCCESS"), server
    assert sorted(tool["name"] for tool in server["tools"]) == ["create_ticket", "get_weather", "search_docs"]
    assert "mcp_servers.sync_server_tools" in served.log()  # the worker ran it, not the web process


def test_the_printed_admin_login_works_and_the_admin_is_styled(served: ServedService) -> None:
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with browser.open(f"{served.base}/admin/login/?next=/admin/") as response:
        page = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    form = {
        "csrfmiddlewaretoken": token[1],
        "username": served.admin_username,
        "password": served.admin_password,
        "next": "/admin/",
    }
    request = urllib.request.Request(
        f"{served.base}/admin/login/?next=/admin/",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Referer": f"{served.base}/admin/login/"},
    )
    with browser.open(request) as response:
        assert response.url == f"{served.base}/admin/"
        index = response.read().decode()
    assert "MCP servers" in index

    # The stylesheet the page links is a fingerprinted copy that gunicorn serves, compressed, cached for good.
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', index)
    assert stylesheet is not None, index[:2000]
    status, headers, body = served.get(stylesheet[1], {"Accept-Encoding": "br"})
    assert status == 200
    assert headers.get("Content-Encoding") == "br"
    assert "immutable" in headers.get("Cache-Control", "")
    status, headers, body = served.get("/static/admin/css/base.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert b"#header" in body
