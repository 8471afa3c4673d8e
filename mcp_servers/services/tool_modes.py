"""How each tool may be used: the default a new tool gets, and an admin's decision.

A sync governs the rest inside its upsert (`tool_upsert`): a tool whose definition changed after it was allowed
falls back to NEEDS_APPROVAL, and BLOCKED is never loosened.
"""

from __future__ import annotations

from django.db import transaction

from mcp_servers.models import AccessMode, McpTool


def default_access_mode(read_only_hint: bool | None) -> AccessMode:
    """A new tool is ALWAYS_ALLOW only when it declares itself read-only."""
    return AccessMode.ALWAYS_ALLOW if read_only_hint is True else AccessMode.NEEDS_APPROVAL


def mcp_tool_set_access_mode(*, tool: McpTool, access_mode: AccessMode | str) -> McpTool:
    """An admin's decision on a tool: sets the mode and marks the current definition as reviewed."""
    mode = AccessMode(access_mode)
    with transaction.atomic():
        locked = McpTool.objects.select_for_update().get(pk=tool.pk)
        locked.access_mode = mode
        locked.reviewed_definition_hash = locked.definition_hash
        locked.save(update_fields=["access_mode", "reviewed_definition_hash", "updated_at"])
    return locked
