"""The admin of MCP servers and their tools: ``servers`` (with its ``inlines`` and the paged ``tool_pages``), ``tools``,
``forms`` (which collect input; the services validate and write) and ``display`` (badges and times)."""

from mcp_servers.admin.servers import McpServerAdmin
from mcp_servers.admin.tools import McpToolAdmin

__all__ = ["McpServerAdmin", "McpToolAdmin"]
