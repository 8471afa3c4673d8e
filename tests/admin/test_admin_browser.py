"""The admin in a real headless Chromium (Debian's, driven by Playwright), served as `make run` serves it.

The service runs exactly as a newcomer starts it (`make run`, in a subprocess, on a database of the test's own): no
test server serves static files or creates users for it. The demo admin logs in with the login `make run` printed,
with the admin's stylesheets and scripts loaded; adds a server pointing at an SDK-built MCP server that requires a
secret header, sees its tools, changes a tool's access mode, syncs again, pages and searches through a server with
many tools; another organization's admin, let in with `manage.py create_admin_login`, cannot see any of it; the
secret never appears in any page. The run saves screenshots of the add form, the change page and the list to
docs/screenshots/.

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

from tests.admin.conftest import SECRET
from tests.served import ServedService, make_run

pytestmark = [pytest.mark.browser]

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
    with sync_playwright() as playwright:
        netlog = tmp_path_factory.mktemp("chromium") / "netlog.json"
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--log-net-log={netlog}"], timeout=30_000
        )
        try:
            yield Chromium(browser=browser, netlog=netlog)
        finally:
            browser.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedService]:
    """`make run`, on a SQLite file of its own; the tests' MCP servers (random ports on 127.0.0.1) are allowlisted."""
    database = tmp_path_factory.mktemp("make-run") / "db.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{database}", "MCP_OUTBOUND_ALLOWLIST": "127.0.0.1", "REDIS_URL": ""}
    with make_run("run", env=env) as service:
        yield service


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


class StaticFiles:
    """Every static file a page asked for, with its status: the admin must look as Django styles it."""

    def __init__(self) -> None:
        self.responses: dict[str, int] = {}

    def watch(self, page: Any) -> None:
        page.on("response", lambda response: self._seen(response.url, response.status))

    def _seen(self, url: str, status: int) -> None:
        if "/static/" in url:
            self.responses[url] = status

    def assert_all_served(self) -> None:
        assert self.responses, "no page asked for a static file"
        failed = {url: status for url, status in self.responses.items() if status != 200}
        assert not failed, f"static files not served: {failed}"
        # Fingerprinted names (base.<hash>.css): collected by `make run`, cached for good by browsers.
        assert any("/static/admin/css/base." in url and url.count(".") >= 3 for url in self.responses), self.responses


def log_in(browser: Any, base: str, username: str, password: str, visits: Visits, static: StaticFiles) -> Any:
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light", locale="en-US", timezone_id="UTC")
    context.set_default_timeout(30_000)
    page = context.new_page()
    static.watch(page)
    page.goto(f"{base}/admin/login/?next=/admin/")
    visits.record(page)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("input[type=submit]")
    visits.record(page)
    assert page.url == f"{base}/admin/", page.url
    return page


def styled(page: Any) -> bool:
    """Whether Django's admin stylesheet applies: the header has the admin's background, not the browser's none."""
    color: str = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
    return color not in ("", "rgba(0, 0, 0, 0)", "transparent")


def tool_row(page: Any, name: str) -> Any:
    return page.locator("#tools-group tbody tr.form-row").filter(has_text=name)


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True, animations="disabled", caret="hide")


def server_named(served: ServedService, name: str) -> dict[str, Any]:
    """The server as the API shows it (the demo key is an admin's)."""
    status, body = served.api("GET", "/mcp-servers?limit=100")
    assert status == 200, body
    return next(server for server in body["data"] if server["displayName"] == name)


def tools_by_name(server: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {tool["name"]: tool for tool in server["tools"]}


def test_org_admin_connects_a_server_and_governs_its_tools(
    chromium: Chromium, served: ServedService, mcp_server_factory: Any
) -> None:
    base = served.base
    remote = mcp_server_factory(tools=3, require_header=("X-Api-Key", SECRET))
    visits = Visits()
    static = StaticFiles()

    # The login `make run` printed lets the demo organization's admin in, and the admin is styled.
    page = log_in(chromium.browser, base, served.admin_username, served.admin_password, visits, static)
    assert styled(page)
    assert "MCP" in page.locator("#content-main").inner_text()  # the module is there for an org admin

    # Add: the organization is preselected (the only one this user administers); one secret header.
    page.goto(f"{base}/admin/mcp_servers/mcpserver/add/")
    visits.record(page)
    assert page.locator("#id_organization option:checked").inner_text() == "Demo organization"
    assert page.locator("#id_organization option").all_inner_texts() == ["---------", "Demo organization"]
    page.fill("#id_display_name", "Weather tools")
    page.fill("#id_server_url", remote.url)
    page.fill("input[name=headers-0-key]", "X-Api-Key")
    page.fill("input[name=headers-0-new_value]", SECRET)
    screenshot(page, "admin-add-server.png")
    with page.expect_navigation():
        page.click("input[name=_save]")
    visits.record(page)

    # The change page: connected, with the tools the server lists (it refuses requests without the header).
    server = server_named(served, "Weather tools")
    assert page.url.endswith(f"/admin/mcp_servers/mcpserver/{server['id']}/change/"), page.url
    assert server["setupState"] == "CONNECTED", server["syncErrorMessage"]
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
    tool_row(page, "tool_1").locator("select").select_option("BLOCKED")
    with page.expect_navigation():
        page.click("input[name=_continue]")
    visits.record(page)
    assert tools_by_name(server_named(served, "Weather tools"))["tool_1"]["accessMode"] == "BLOCKED"
    assert tool_row(page, "tool_1").locator("select").input_value() == "BLOCKED"

    # The server drops a tool; sync again: it is kept as gone, and the block stays.
    remote.control({"drop": ["tool_2"]})
    with page.expect_navigation():
        page.click("button:has-text('Sync tools now')")
    visits.record(page)
    server = server_named(served, "Weather tools")
    assert server["lastSyncStatus"] == "SUCCESS"
    assert "is connected: 2 tool(s) found" in page.locator(".messagelist").inner_text()
    assert "Gone" in tool_row(page, "tool_2").inner_text()
    assert tools_by_name(server)["tool_2"]["foundInServer"] is False
    assert tools_by_name(server)["tool_1"]["accessMode"] == "BLOCKED"
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

    # A server with many tools, added through the API as the README's curl does: its page shows them 50 at a time.
    many = mcp_server_factory(tools=120)
    status, created = served.api("POST", "/mcp-servers", {"displayName": "Everything", "serverUrl": many.url})
    assert status == 201, created
    assert created["data"]["setupState"] == "CONNECTED"
    page.goto(f"{base}/admin/mcp_servers/mcpserver/{created['data']['id']}/change/")
    visits.record(page)
    assert page.locator("[data-mcp=tools-count]").inner_text() == "1–50 of 120 tools"
    assert page.locator("#tools-group tbody tr.form-row").count() == 50
    with page.expect_navigation():
        page.locator("[data-mcp=tools-pager] a[rel=next]").click()
    visits.record(page)
    assert page.locator("[data-mcp=tools-count]").inner_text() == "51–100 of 120 tools"
    page.fill("input[name=tools_q]", "tool_11")  # tool_11 and tool_110 ... tool_119
    with page.expect_navigation():
        page.press("input[name=tools_q]", "Enter")  # submits the search, not the change form
    visits.record(page)
    assert page.locator("[data-mcp=tools-count]").inner_text() == "1–11 of 11 tools matching"
    assert page.locator("[data-mcp=tools-pager]").count() == 0
    tool_row(page, "tool_115").locator("select").select_option("BLOCKED")
    with page.expect_navigation():
        page.click("input[name=_continue]")
    visits.record(page)
    assert page.locator("[data-mcp=tools-count]").inner_text() == "1–11 of 11 tools matching"  # the same search
    assert tools_by_name(server_named(served, "Everything"))["tool_115"]["accessMode"] == "BLOCKED"
    page.locator("select[name=tools_mode]").select_option("BLOCKED")
    with page.expect_navigation():
        page.click("[data-mcp=tools-bar] button")
    visits.record(page)
    assert page.locator("[data-mcp=tools-count]").inner_text() == "1–1 of 1 tool matching"

    # The list: name, label, organization, setup, tool count, last sync.
    page.goto(f"{base}/admin/mcp_servers/mcpserver/")
    visits.record(page)
    row = page.locator("#result_list tbody tr").filter(has_text="Weather tools")
    assert row.count() == 1
    cells = row.inner_text()
    for text in ("weather_tools", "Demo organization", "Connected", "Synced"):
        assert text in cells
    assert row.locator("td.field-tools").inner_text() == "2 +1 gone"
    screenshot(page, "admin-server-list.png")
    page.context.close()

    # Another organization's admin, let in as the README says for production, sees neither the server nor its page.
    other_login = json.loads(served.manage("create_admin_login", "--email", "admin@globex.test",
                                           "--organization", "Globex", "--json"))  # fmt: skip
    other = log_in(chromium.browser, base, other_login["username"], other_login["password"], visits, static)
    assert styled(other)
    other.goto(f"{base}/admin/mcp_servers/mcpserver/")
    visits.record(other)
    assert "Weather tools" not in other.locator("#content-main").inner_text()
    assert other.locator("#result_list").count() == 0  # an empty list has no table
    assert "0 mcp servers" in other.locator("#changelist-form").inner_text().lower()
    response = other.goto(f"{base}/admin/mcp_servers/mcpserver/{server['id']}/change/")
    visits.record(other)
    assert response is not None
    assert response.status == 404
    response = other.goto(f"{base}/admin/mcp_servers/mcptool/{tools_by_name(server)['tool_0']['id']}/change/")
    visits.record(other)
    assert response is not None
    assert response.status == 404
    other.context.close()

    visits.assert_never_contains(SECRET)
    assert len(visits.pages) >= 10
    static.assert_all_served()
    assert SECRET not in served.log()
    status, listing = served.api("GET", "/mcp-servers")
    assert status == 200
    assert len(listing["data"]) == 3

    # Chromium connected to the service and nowhere else.
    destinations = chromium.tcp_destinations()
    assert destinations
    assert {address.rsplit(":", 1)[0] for address in destinations} == {"127.0.0.1"}, destinations
