"""The MCP client: list a remote server's tools within bounds, over whatever transport it speaks.

Only this package imports the MCP SDK's client. Its modules, from the inside out: ``types`` (what goes in and comes
out), ``errors``, ``streams`` (bounded bodies), ``statuses`` (what an HTTP answer and its Bearer challenge mean),
``probe`` (what the endpoint speaks), ``translate`` (any failure as one ``McpClientError``), ``connection`` (the HTTP
client and transports of an exchange), ``listing`` (a sync's tool listing) and ``session`` (tool calls, and a proxied
client's requests, over sessions kept open between them).
"""

from integrations.mcp.errors import (
    McpAuthRequired,
    McpClientError,
    McpDestinationRefused,
    McpHeadersRejected,
    McpLimitExceeded,
    McpProtocolError,
    McpRemoteError,
    McpTimeout,
    McpUnreachable,
)
from integrations.mcp.listing import alist_remote_tools, list_remote_tools
from integrations.mcp.session import PROXIED_METHODS, Endpoint, ServerDescription, SessionPool
from integrations.mcp.statuses import parse_bearer_challenge
from integrations.mcp.types import (
    AuthChallenge,
    Bounds,
    HttpClientFactory,
    ProgressCallback,
    Relay,
    RelayRefused,
    RemoteTool,
    SyncLimits,
    ToolListing,
    ToolResult,
    TransportType,
)

__all__ = [
    "PROXIED_METHODS",
    "AuthChallenge",
    "Bounds",
    "Endpoint",
    "HttpClientFactory",
    "McpAuthRequired",
    "McpClientError",
    "McpDestinationRefused",
    "McpHeadersRejected",
    "McpLimitExceeded",
    "McpProtocolError",
    "McpRemoteError",
    "McpTimeout",
    "McpUnreachable",
    "ProgressCallback",
    "Relay",
    "RelayRefused",
    "RemoteTool",
    "ServerDescription",
    "SessionPool",
    "SyncLimits",
    "ToolListing",
    "ToolResult",
    "TransportType",
    "alist_remote_tools",
    "list_remote_tools",
    "parse_bearer_challenge",
]
