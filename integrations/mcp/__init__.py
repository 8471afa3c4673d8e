"""The MCP client: list a remote server's tools within bounds, over whatever transport it speaks.

Only this package imports the MCP SDK's client. Its modules, from the inside out: ``types`` (what goes in and comes
out), ``errors``, ``streams`` (bounded bodies), ``statuses`` (what an HTTP answer and its Bearer challenge mean),
``probe`` (what the endpoint speaks), ``translate`` (any failure as one ``McpClientError``), ``listing`` (the call).
"""

from integrations.mcp.errors import (
    McpAuthRequired,
    McpClientError,
    McpDestinationRefused,
    McpHeadersRejected,
    McpLimitExceeded,
    McpProtocolError,
    McpTimeout,
    McpUnreachable,
)
from integrations.mcp.listing import alist_remote_tools, list_remote_tools
from integrations.mcp.statuses import parse_bearer_challenge
from integrations.mcp.types import AuthChallenge, HttpClientFactory, RemoteTool, SyncLimits, ToolListing, TransportType

__all__ = [
    "AuthChallenge",
    "HttpClientFactory",
    "McpAuthRequired",
    "McpClientError",
    "McpDestinationRefused",
    "McpHeadersRejected",
    "McpLimitExceeded",
    "McpProtocolError",
    "McpTimeout",
    "McpUnreachable",
    "RemoteTool",
    "SyncLimits",
    "ToolListing",
    "TransportType",
    "alist_remote_tools",
    "list_remote_tools",
    "parse_bearer_challenge",
]
