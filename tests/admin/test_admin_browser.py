"""The admin in a real headless Chromium (Debian's, driven by Playwright) against a live server and a real MCP server.

An organization admin adds a server pointing at an SDK-built MCP server that requires a secret header, sees its
tools, changes a tool's access mode, syncs again; another organization's admin cannot see it; the secret never
appears in any page. The run saves screenshots of the add form, the change page and the list to docs/screenshots/.

Chromium only ever talks to 127.0.0.1: background networking is off and every host name resolves to nothing.
Install the browser with `.ci/browsers`. Without it (or without Playwright) these tests skip, except in CI.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_servers.models import AccessMode, McpServer, SetupState, SyncStatus
from organizations.models import Membership, Organization
from organizations.services import organization_create
from tests.admin.conftest import PASSWORD, SECRET, make_staff

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--no-pings",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,NetworkTimeServiceQuerying",
    # No proxy from the environment, and no host name resolves: nothing but 127.0.0.1 can be reached, even by
    # the few requests Chromium makes on its own (sign-in and update checks, which then fail to resolve).
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: failing instead of skipping)")
    pytest.skip(why)


@dataclass
class Chromium:
    browser: Any
    netlog: Path

    def tcp_destinations(self) -> set[str]:
        """Every address Chromium opened (or tried to open) a TCP connection to, from its network log."""
        self.browser.close()  # the log is complete once the browser has exited
        lines = self.netlog.read_text().splitlines()
        constants = json.loads(lines[0].rstrip().rstrip(",") + "}")  # the first line is `{"constants": {...},`
        kinds = {value: name for name, value in constants["constants"]["logEventTypes"].items()}
        connects = {kind for kind, name in kinds.items() if name in {"TCP_CONNECT", "TCP_CONNECT_ATTEMPT"}}
        decoder = json.JSONDecoder()
        destinations = set()
        for line in lines[1:]:  # one event per line
            if line.startswith('{"params"') or line.startswith('{"phase"'):
                event, _ = decoder.raw_decode(line)
                if event.get("type") in connects and "address" in event.get("params", {}):
                    destinations.add(event["params"]["address"])
        return destinations


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install playwright; never `playwright install`)")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM}: run .ci/browsers")
    # Playwright's sync API keeps an event loop marked as running in this thread, and Django then refuses ORM
    # calls from it (this test's own queries; the live server answers from its own thread). Nothing here is
    # async code, so the check is lifted for this module only, as Playwright's documentation advises for Django.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            netlog = tmp_path_factory.mktemp("chromium") / "netlog.json"
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--log-net-log={netlog}"], timeout=30_000
            )
            try:
                yield Chromium(browser=browser, netlog=netlog)
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def admin_live_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[Any]:
    """pytest-django's live server, bound to 127.0.0.1 (its default is `localhost`)."""
    from pytest_django.live_server_helper import LiveServer

    with django_db_blocker.unblock():
        server = LiveServer("127.0.0.1:0")
    yield server
    server.stop()


class Visits:
    """Every page a browser showed, as HTML, to check that no secret ever reached one."""

    def __init__(self) -> None:
        self.pages: list[tuple[str, str]] = []

    def record(self, page: Any) -> str:
        page.wait_for_load_state("load")
        html: str = page.content()
        self.pages.append((page.url, html))
        return html

    def assert_never_contains(self, secret: str) -> None:
        assert self.pages
        leaked = [url for url, html in self.pages if secret in html]
        assert not leaked, f"the secret appears in {leaked}"


def log_in(browser: Any, base: str, username: str, visits: Visits) -> Any:
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light", locale="en-US", timezone_id="UTC")
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{base}/admin/login/?next=/admin/")
    visits.record(page)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    visits.record(page)
    assert page.url == f"{base}/admin/", page.url
    return page


def tool_row(page: Any, name: str) -> Any:
    return page.locator("#tools-group tbody tr.form-row").filter(has_text=name)


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True, animations="disabled", caret="hide")


def test_org_admin_connects_a_server_and_governs_its_tools(
    chromium: Chromium, admin_live_server: Any, mcp_server_factory: Any
) -> None:
    base = admin_live_server.url
    remote = mcp_server_factory(tools=3, require_header=("X-Api-Key", SECRET))
    acme = organization_create(name="Acme")
    globex = organization_create(name="Globex")
    make_staff("admin@acme.test", organization=acme, role=Membership.Role.ADMIN, password=PASSWORD)
    make_staff("admin@globex.test", organization=globex, role=Membership.Role.ADMIN, password=PASSWORD)
    visits = Visits()

    page = log_in(chromium.browser, base, "admin@acme.test", visits)
    assert "MCP" in page.locator("#content-main").inner_text()  # the module is there for an org admin

    # Add: the organization is preselected (the only one this user administers); one secret header.
    page.goto(f"{base}/admin/mcp_servers/mcpserver/add/")
    visits.record(page)
    assert page.locator("#id_organization option:checked").inner_text() == "Acme"
    assert page.locator("#id_organization option").all_inner_texts() == ["---------", "Acme"]
    page.fill("#id_display_name", "Weather tools")
    page.fill("#id_server_url", remote.url)
    page.fill("input[name=headers-0-key]", "X-Api-Key")
    page.fill("input[name=headers-0-new_value]", SECRET)
    screenshot(page, "admin-add-server.png")
    with page.expect_navigation():
        page.click("input[name=_save]")
    visits.record(page)

    # The change page: connected, with the tools the server lists (it refuses requests without the header).
    server = McpServer.objects.get(display_name="Weather tools")
    assert page.url.endswith(f"/admin/mcp_servers/mcpserver/{server.pk}/change/"), page.url
    assert server.setup_state == SetupState.CONNECTED, server.sync_error_message
    assert remote.requests()["rejected"] == 0
    assert "is connected: 3 tool(s) found" in page.locator(".messagelist").inner_text()
    assert page.locator("[data-mcp=setup]").inner_text() == "Connected"
    for name in ("tool_0", "tool_1", "tool_2"):
        assert tool_row(page, name).count() == 1
    stored = page.locator("#headers-group tbody tr.has_original")
    assert stored.count() == 1
    assert stored.locator("input[name$='-key']").input_value() == "X-Api-Key"
    assert stored.locator("input[type=password]").input_value() == ""  # masked, and empty

    # Block a tool.
    tool_row(page, "tool_1").locator("select").select_option(AccessMode.BLOCKED)
    with page.expect_navigation():
        page.click("input[name=_continue]")
    visits.record(page)
    assert server.tools.get(name="tool_1").access_mode == AccessMode.BLOCKED
    assert tool_row(page, "tool_1").locator("select").input_value() == AccessMode.BLOCKED

    # The server drops a tool; sync again: it is kept as gone, and the block stays.
    remote.control({"drop": ["tool_2"]})
    with page.expect_navigation():
        page.click("button:has-text('Sync tools now')")
    visits.record(page)
    server.refresh_from_db()
    assert server.last_sync_status == SyncStatus.SUCCESS
    assert "is connected: 2 tool(s) found" in page.locator(".messagelist").inner_text()
    assert "Gone" in tool_row(page, "tool_2").inner_text()
    assert server.tools.get(name="tool_2").found_in_server is False
    assert server.tools.get(name="tool_1").access_mode == AccessMode.BLOCKED
    screenshot(page, "admin-change-server.png")

    # A server that refuses the static headers: broken, and the page says why.
    refusing = mcp_server_factory(tools=1, status=401)
    page.goto(f"{base}/admin/mcp_servers/mcpserver/add/")
    visits.record(page)
    page.fill("#id_display_name", "Billing (staging)")
    page.fill("#id_server_url", refusing.url)
    page.fill("input[name=headers-0-key]", "Authorization")
    page.fill("input[name=headers-0-new_value]", f"Bearer {SECRET}")
    with page.expect_navigation():
        page.click("input[name=_save]")
    visits.record(page)
    assert page.locator("[data-mcp=setup]").inner_text() == "Broken"
    assert "Last sync error" in page.locator(".mcp-alert--bad").inner_text()
    assert "failed" in page.locator(".messagelist .error").inner_text()
    screenshot(page, "admin-change-server-broken.png")

    # The list: name, label, organization, setup, tool count, last sync.
    page.goto(f"{base}/admin/mcp_servers/mcpserver/")
    visits.record(page)
    row = page.locator("#result_list tbody tr").filter(has_text="Weather tools")
    assert row.count() == 1
    cells = row.inner_text()
    for text in ("weather_tools", "Acme", "Connected", "Synced"):
        assert text in cells
    assert row.locator("td.field-tools").inner_text() == "2 +1 gone"
    screenshot(page, "admin-server-list.png")
    page.context.close()

    # Another organization's admin sees neither the server nor its page.
    other = log_in(chromium.browser, base, "admin@globex.test", visits)
    other.goto(f"{base}/admin/mcp_servers/mcpserver/")
    visits.record(other)
    assert "Weather tools" not in other.locator("#content-main").inner_text()
    assert other.locator("#result_list").count() == 0  # an empty list has no table
    assert "0 mcp servers" in other.locator("#changelist-form").inner_text().lower()
    response = other.goto(f"{base}/admin/mcp_servers/mcpserver/{server.pk}/change/")
    visits.record(other)
    assert response is not None
    assert response.status == 404
    response = other.goto(f"{base}/admin/mcp_servers/mcptool/{server.tools.get(name='tool_0').pk}/change/")
    visits.record(other)
    assert response is not None
    assert response.status == 404
    other.context.close()

    visits.assert_never_contains(SECRET)
    assert len(visits.pages) >= 10
    assert Organization.objects.get(pk=acme.pk).trial_started_at is not None
    assert McpServer.objects.filter(organization=acme).count() == 2

    # Chromium connected to the live server and nowhere else.
    destinations = chromium.tcp_destinations()
    assert destinations
    assert {address.rsplit(":", 1)[0] for address in destinations} == {"127.0.0.1"}, destinations
