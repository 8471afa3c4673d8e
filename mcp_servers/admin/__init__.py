"""The admin of MCP servers, their tools and the calls made to them: ``servers`` (with its ``inlines`` and the paged
``tool_pages``), ``tools``, ``calls`` (approvals and the audit trail),
``forms`` (which collect input; the services validate and write) and ``display`` (badges and times)."""

from mcp_servers.admin.calls import ToolCallAdmin
from mcp_servers.admin.servers import McpServerAdmin
from mcp_servers.admin.tools import McpToolAdmin

__all__ = ["McpServerAdmin", "McpToolAdmin", "ToolCallAdmin"]
