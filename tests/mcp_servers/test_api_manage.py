"""List, get, update, delete, re-sync, tool access modes and access grants, in the create contract's conventions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mcp_servers.models import (
    AccessMode,
    McpServer,
    McpServerAccess,
    McpServerHeader,
    McpTool,
    SetupState,
    SyncStatus,
)
from mcp_servers.services.tool_upsert import definition_hash
from organizations.models import Organization
from tests.conftest import Caller
from tests.contract import assert_matches_contract


def make_servers(organization: Organization, count: int, tools: int, start: int = 0) -> list[McpServer]:
    """Rows as a sync leaves them, written in bulk (this is about reads, not syncs)."""
    servers = McpServer.objects.bulk_create(
        McpServer(
            organization=organization,
            display_name=f"Server {i}",
            server_url=f"https://mcp{i}.example.com/mcp",
            server_label=f"server_{i}",
            setup_state=SetupState.CONNECTED,
            last_sync_status=SyncStatus.SUCCESS,
            has_completed_first_sync=True,
        )
        for i in range(start, start + count)
    )
    McpTool.objects.bulk_create(
        McpTool(
            server=server,
            name=f"tool_{j}",
            description=f"Tool {j}",
            input_schema={"type": "object"},
            read_only_hint=j % 2 == 0,
            access_mode=AccessMode.ALWAYS_ALLOW if j % 2 == 0 else AccessMode.NEEDS_APPROVAL,
            definition_hash="h",
            reviewed_definition_hash="h",
        )
        for server in servers
        for j in range(tools)
    )
    return servers


def assert_server_body(body: dict[str, Any]) -> None:
    assert_matches_contract(201, {"data": body})


# --- list ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_pages_newest_first_with_a_cursor(admin: Caller, organization: Organization) -> None:
    servers = make_servers(organization, 5, 2)
    expected = [str(s.pk) for s in sorted(servers, key=lambda s: s.pk, reverse=True)]
    first = admin.client.get(f"{admin.create_url()}?limit=2").json()
    assert [s["id"] for s in first["data"]] == expected[:2]
    assert first["pagination"] == {"nextCursor": expected[1], "hasMore": True}
    for server in first["data"]:
        assert_server_body(server)
        assert len(server["tools"]) == 2
    second = admin.client.get(f"{admin.create_url()}?limit=2&cursor={expected[1]}").json()
    assert [s["id"] for s in second["data"]] == expected[2:4]
    last = admin.client.get(f"{admin.create_url()}?limit=2&cursor={expected[3]}").json()
    assert [s["id"] for s in last["data"]] == expected[4:]
    assert last["pagination"] == {"nextCursor": None, "hasMore": False}
    assert len(admin.client.get(admin.create_url()).json()["data"]) == 5  # default limit 50


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "limit=-1", "cursor=not-a-cursor"])
def test_list_rejects_bad_parameters(admin: Caller, query: str) -> None:
    response = admin.client.get(f"{admin.create_url()}?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["title"] == "ValidationError"


def _queries(caller: Caller, url: str) -> int:
    caller.client.get(url)  # warm: the key's last-used time is written at most once a minute
    with CaptureQueriesContext(connection) as captured:
        response = caller.client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.mark.django_db
def test_list_and_get_queries_do_not_grow_with_servers_or_tools(admin: Caller, organization: Organization) -> None:
    one = make_servers(organization, 1, 100)
    small_list, small_get = _queries(admin, admin.create_url()), _queries(admin, f"{admin.create_url()}/{one[0].pk}")
    make_servers(organization, 49, 100, start=1)
    large_list, large_get = _queries(admin, admin.create_url()), _queries(admin, f"{admin.create_url()}/{one[0].pk}")
    # key, organization, servers, tools (prefetched for all servers at once)
    assert (small_list, large_list) == (4, 4)
    assert (small_get, large_get) == (4, 4)
    assert len(admin.client.get(admin.create_url()).json()["data"]) == 50


# --- org isolation --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_another_organizations_key_never_sees_or_changes_anything(
    admin: Caller, other_admin: Caller, organization: Organization
) -> None:
    server = make_servers(organization, 1, 1)[0]
    tool = McpTool.objects.get(server=server)
    base = f"/api/public/organizations/{organization.pk}/mcp-servers"
    attempts = [
        ("get", base, None),
        ("get", f"{base}/{server.pk}", None),
        ("patch", f"{base}/{server.pk}", {"displayName": "Mine now"}),
        ("delete", f"{base}/{server.pk}", None),
        ("post", f"{base}/{server.pk}/sync", None),
        ("get", f"{base}/{server.pk}/tools", None),
        ("patch", f"{base}/{server.pk}/tools/{tool.pk}", {"accessMode": "BLOCKED"}),
        ("get", f"{base}/{server.pk}/access", None),
        ("post", f"{base}/{server.pk}/access", {"email": "admin@globex.test"}),
        ("get", f"/api/public/organizations/{organization.pk}/mcp-tools", None),
        # Their own org in the path, our ids in the rest.
        ("get", f"{other_admin.create_url()}/{server.pk}", None),
        ("patch", f"{other_admin.create_url()}/{server.pk}/tools/{tool.pk}", {"accessMode": "BLOCKED"}),
    ]
    for method, url, body in attempts:
        response = getattr(other_admin.client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.content)
        assert response.json()["error"]["title"] == "NotFound"
    server.refresh_from_db()
    tool.refresh_from_db()
    assert server.display_name == "Server 0"
    assert tool.access_mode == AccessMode.ALWAYS_ALLOW


@pytest.mark.django_db
def test_members_cannot_manage_servers(member: Caller, organization: Organization) -> None:
    server = make_servers(organization, 1, 1)[0]
    for method, url in [("get", member.create_url()), ("delete", f"{member.create_url()}/{server.pk}")]:
        assert getattr(member.client, method)(url).status_code == 404
    assert McpServer.objects.filter(pk=server.pk).exists()


@pytest.mark.django_db
def test_unknown_routes_methods_and_ids_answer_in_the_envelope(admin: Caller, organization: Organization) -> None:
    server = make_servers(organization, 1, 1)[0]
    cases = [
        ("get", "/api/nothing-here", 404),
        ("get", f"{admin.create_url()}/{uuid.uuid4()}", 404),
        ("patch", f"{admin.create_url()}/{server.pk}/tools/{uuid.uuid4()}", 404),
        ("get", f"{admin.create_url()}/{server.pk}/tools/{uuid.uuid4()}", 405),
        ("put", f"{admin.create_url()}/{server.pk}", 405),
        ("delete", admin.create_url(), 405),
        ("get", f"{admin.create_url()}/{server.pk}/sync", 405),
    ]
    for method, url, status in cases:
        response = getattr(admin.client, method)(url)
        assert response.status_code == status, (method, url)
        assert response["Content-Type"].startswith("application/json")
        assert set(response.json()["error"]) >= {"title", "detail"}


# --- update ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_patch_changes_fields_and_resyncs_on_a_new_url(admin: Caller, mcp_server_factory: Any) -> None:
    first = mcp_server_factory(tools=2)
    second = mcp_server_factory(tools=4)
    created = admin.client.post(
        admin.create_url(), {"displayName": "Before", "serverUrl": first.url}, format="json"
    ).json()["data"]
    url = f"{admin.create_url()}/{created['id']}"

    renamed = admin.client.patch(url, {"displayName": "After", "everyoneInOrganizationCanAccess": False}, format="json")
    assert renamed.status_code == 200
    body = renamed.json()["data"]
    assert_server_body(body)
    assert (body["displayName"], body["serverLabel"]) == ("After", created["serverLabel"])
    assert McpServer.objects.get().everyone_in_organization_can_access is False
    assert first.requests()["count"] > 0
    calls_before = second.requests()["count"]

    moved = admin.client.patch(url, {"serverUrl": second.url}, format="json").json()["data"]
    assert moved["serverUrl"] == second.url
    assert moved["setupState"] == "CONNECTED"
    assert second.requests()["count"] > calls_before
    found = {tool["name"]: tool["foundInServer"] for tool in moved["tools"]}
    assert found == {"tool_0": True, "tool_1": True, "tool_2": True, "tool_3": True}


@pytest.mark.django_db(transaction=True)
def test_header_values_are_write_only_and_can_be_changed_one_by_one(admin: Caller, mcp_server_factory: Any) -> None:
    remote = mcp_server_factory(require_header="X-Api-Key=second")
    created = admin.client.post(
        admin.create_url(),
        {
            "displayName": "Headers",
            "serverUrl": remote.url,
            "headers": [{"key": "X-Api-Key", "value": "first"}, {"key": "X-Tenant", "value": "acme"}],
        },
        format="json",
    ).json()["data"]
    assert created["setupState"] == "BROKEN"
    url = f"{admin.create_url()}/{created['id']}"

    fixed = admin.client.patch(url, {"setHeaders": [{"key": "x-api-key", "value": "second"}]}, format="json")
    assert fixed.json()["data"]["setupState"] == "CONNECTED"
    assert "second" not in fixed.content.decode()
    assert dict(McpServerHeader.objects.values_list("key", "value")) == {"x-api-key": "second", "X-Tenant": "acme"}

    admin.client.patch(url, {"removeHeaders": ["X-TENANT"]}, format="json")
    assert list(McpServerHeader.objects.values_list("key", flat=True)) == ["x-api-key"]

    admin.client.patch(url, {"headers": []}, format="json")
    assert McpServerHeader.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"serverLabel": "new_label"}, "serverLabel"),
        ({"displayName": ""}, "displayName"),
        ({"serverUrl": "http://10.0.0.1/mcp"}, "serverUrl"),
        ({"everyoneInOrganizationCanAccess": "no"}, "everyoneInOrganizationCanAccess"),
        ({"headers": [], "setHeaders": [{"key": "A", "value": "1"}]}, "headers"),
        ({"setHeaders": [{"key": "Host", "value": "x"}]}, "setHeaders[0].key"),
        ({"removeHeaders": ["X-Nope"]}, "removeHeaders[0]"),
        ({"removeHeaders": [1]}, "removeHeaders[0]"),
    ],
)
def test_patch_validation_names_the_field_and_changes_nothing(
    admin: Caller, organization: Organization, payload: dict[str, Any], field: str
) -> None:
    server = make_servers(organization, 1, 1)[0]
    response = admin.client.patch(f"{admin.create_url()}/{server.pk}", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["detail"].startswith(f"{field}"), response.json()
    server.refresh_from_db()
    assert (server.display_name, server.server_label, server.last_sync_status) == ("Server 0", "server_0", "SUCCESS")


# --- delete ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_delete_removes_everything_and_revokes_oauth_tokens(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    from tests.mcp_servers.test_oauth_flow import approve, callback

    remote = oauth_mcp_server_factory()
    created = admin.client.post(
        admin.create_url(), {"displayName": "OAuth", "serverUrl": remote.url}, format="json"
    ).json()["data"]
    callback(approve(created["authUrl"]))
    url = f"{admin.create_url()}/{created['id']}"
    assert admin.client.get(url).json()["data"]["setupState"] == "CONNECTED"

    response = admin.client.delete(url)
    assert response.status_code == 204
    assert admin.client.get(url).status_code == 404
    assert admin.client.delete(url).status_code == 404
    assert McpServer.objects.count() == McpTool.objects.count() == McpServerHeader.objects.count() == 0
    from mcp_servers.models import McpServerOAuth, OAuthAuthorizationRequest, OAuthRevocation

    assert McpServerOAuth.objects.count() == OAuthAuthorizationRequest.objects.count() == 0
    assert OAuthRevocation.objects.count() == 0  # revoked by the (in-process) worker, then forgotten
    assert remote.stats()["revocations"] == 2  # the refresh token and the access token


# --- re-sync and tools ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_resync_and_tool_review(admin: Caller, mcp_server_factory: Any) -> None:
    remote = mcp_server_factory(tools=2)
    created = admin.client.post(
        admin.create_url(), {"displayName": "Tools", "serverUrl": remote.url}, format="json"
    ).json()["data"]
    base = f"{admin.create_url()}/{created['id']}"
    tools = {tool["name"]: tool for tool in admin.client.get(f"{base}/tools").json()["data"]}
    assert tools["tool_0"]["definitionChangedSinceReview"] is False

    remote.control({"describe": {"tool_0": "Now it deletes things"}})
    synced = admin.client.post(f"{base}/sync")
    assert synced.status_code == 200
    assert_server_body(synced.json()["data"])
    changed = {tool["name"]: tool for tool in admin.client.get(f"{base}/tools").json()["data"]}
    assert changed["tool_0"]["accessMode"] == "NEEDS_APPROVAL"
    assert changed["tool_0"]["definitionChangedSinceReview"] is True

    reviewed = admin.client.patch(
        f"{base}/tools/{tools['tool_0']['id']}", {"accessMode": "ALWAYS_ALLOW"}, format="json"
    )
    assert reviewed.status_code == 200
    assert reviewed.json()["data"]["accessMode"] == "ALWAYS_ALLOW"
    assert reviewed.json()["data"]["definitionChangedSinceReview"] is False

    for bad in [{"accessMode": "SOMETIMES"}, {"accessMode": 1}, {}]:
        response = admin.client.patch(f"{base}/tools/{tools['tool_0']['id']}", bad, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["detail"].startswith("accessMode")


# --- access and the model-facing catalog ----------------------------------------------------------------------


@pytest.mark.django_db
def test_access_grants_and_the_tool_catalog(admin: Caller, member: Caller, organization: Organization) -> None:
    open_server, private_server = make_servers(organization, 2, 3)
    McpServer.objects.filter(pk=private_server.pk).update(everyone_in_organization_can_access=False)
    McpTool.objects.filter(server=open_server, name="tool_1").update(access_mode=AccessMode.BLOCKED)
    McpTool.objects.filter(server=open_server, name="tool_2").update(found_in_server=False)
    catalog_url = f"/api/public/organizations/{organization.pk}/mcp-tools"

    names = sorted(tool["name"] for tool in member.client.get(catalog_url).json()["data"])
    assert names == ["server_0__tool_0"]
    admin_names = sorted(tool["name"] for tool in admin.client.get(catalog_url).json()["data"])
    assert admin_names == ["server_0__tool_0", "server_1__tool_0", "server_1__tool_1", "server_1__tool_2"]

    access_url = f"{admin.create_url()}/{private_server.pk}/access"
    granted = admin.client.post(access_url, {"email": "member@acme.test"}, format="json")
    assert granted.status_code == 201
    assert [m["email"] for m in granted.json()["data"]["members"]] == ["member@acme.test"]
    member_tools = member.client.get(catalog_url).json()["data"]
    assert sorted(tool["name"] for tool in member_tools) == admin_names
    needs = {tool["name"]: tool["needsApproval"] for tool in member_tools}
    assert needs["server_1__tool_1"] is True
    assert needs["server_1__tool_0"] is False

    for fmt in ("openai", "anthropic", "mcp"):
        response = member.client.get(f"{catalog_url}?format={fmt}")
        assert response.status_code == 200
        assert len(response.json()["data"]) == 4
    assert member.client.get(f"{catalog_url}?format=xml").status_code == 400

    user_id = granted.json()["data"]["members"][0]["userId"]
    assert admin.client.delete(f"{access_url}/{user_id}").status_code == 204
    assert McpServerAccess.objects.count() == 0
    assert admin.client.delete(f"{access_url}/{user_id}").status_code == 404
    assert admin.client.post(access_url, {"email": "stranger@else.test"}, format="json").status_code == 400


@pytest.mark.django_db
def test_definition_hash_is_stable() -> None:
    from integrations.mcp import RemoteTool

    tool = RemoteTool(
        name="t", title=None, description="d", input_schema={"b": 1, "a": 2}, output_schema=None,
        annotations={}, read_only_hint=None,
    )  # fmt: skip
    same = RemoteTool(
        name="t", title=None, description="d", input_schema={"a": 2, "b": 1}, output_schema=None,
        annotations={}, read_only_hint=None,
    )  # fmt: skip
    assert definition_hash(tool) == definition_hash(same)
    # Pinned: a change to the canonical form would withdraw ALWAYS_ALLOW from every reviewed tool at its next sync.
    assert definition_hash(tool) == "4c5dc03ab708a0d34c3eaa0a80b7a019367daff70ff2fcf5dddf09dc46561e20"
