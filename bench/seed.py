"""Rows for the benchmarks, written straight through the ORM and the sync's own upsert (after django_setup)."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from integrations.mcp import RemoteTool
from mcp_servers.models import McpServer, SetupState, SyncStatus
from mcp_servers.services import tool_upsert
from organizations.models import Membership, Organization
from organizations.services import api_key_create, demo_access_ensure


def admin_access(name: str) -> tuple[Organization, str]:
    """An organization, an admin user and a fresh API key (plaintext)."""
    organization, created = demo_access_ensure(
        email=f"{name}@bench.example.com", organization_name=name, role=Membership.Role.ADMIN
    )
    return organization, created.plaintext


def more_keys(organization: Organization, count: int) -> list[str]:
    """`count` more API keys (plaintext) for the organization's first admin."""
    membership = Membership.objects.select_related("user").filter(organization=organization).first()
    assert membership is not None
    return [api_key_create(user=membership.user, name=f"bench {i}").plaintext for i in range(count)]


def server_row(organization: Organization, url: str, label: str) -> McpServer:
    return McpServer.objects.create(
        organization=organization,
        display_name=label,
        server_url=url,
        server_label=label[:24],
        setup_state=SetupState.INCOMPLETE,
        last_sync_status=SyncStatus.PENDING,
    )


def fake_tools(count: int) -> list[RemoteTool]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "repeat": {"type": "integer", "default": 1}},
        "required": ["text"],
    }
    return [
        RemoteTool(
            name=f"tool_{i}",
            title=f"Tool {i}",
            description=f"Test tool number {i}.",
            input_schema=schema,
            output_schema=None,
            annotations={"readOnlyHint": i % 2 == 0},
            read_only_hint=i % 2 == 0,
        )
        for i in range(count)
    ]


def synced_servers(organization: Organization, servers: int, tools: int, prefix: str) -> list[uuid.UUID]:
    """``servers`` CONNECTED servers with ``tools`` tools each, as a successful sync leaves them."""
    listing = fake_tools(tools)
    ids = []
    now = timezone.now()
    for i in range(servers):
        server = server_row(organization, f"https://{prefix}-{i}.example.com/mcp", f"{prefix}_{i}")
        tool_upsert.tools_upsert(server.pk, listing, now)
        McpServer.objects.filter(pk=server.pk).update(
            setup_state=SetupState.CONNECTED,
            last_sync_status=SyncStatus.SUCCESS,
            transport_type="STREAMABLE_HTTP",
            has_completed_first_sync=True,
            last_successful_sync_at=now,
            last_sync_attempt_at=now,
        )
        ids.append(server.pk)
    return ids
