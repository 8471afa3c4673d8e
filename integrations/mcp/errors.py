"""The MCP client's errors: every failure of a call is one of these, and ``str()`` is safe to show and to log."""

from __future__ import annotations

from integrations.errors import IntegrationError
from integrations.mcp.types import AuthChallenge


class McpClientError(IntegrationError):
    """Base class; ``str(exc)`` is a plain sentence safe to show to users and to log."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class McpAuthRequired(McpClientError):
    """The server wants OAuth: it answered 401/403 with a ``WWW-Authenticate: Bearer`` challenge."""

    def __init__(self, message: str, *, challenge: AuthChallenge, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.challenge = challenge


class McpHeadersRejected(McpClientError):
    """The server answered 401/403 without a Bearer challenge: the static headers were not accepted."""


class McpUnreachable(McpClientError):
    """Connection refused or reset, name resolution failed, or a gateway answered 502/503/504."""

    transient = True


class McpTimeout(McpClientError):
    """A time bound was exceeded; the message names it."""


class McpLimitExceeded(McpClientError):
    """Too many tools or pages, or a response too large; the message names the bound."""


class McpProtocolError(McpClientError):
    """Anything else: an unexpected status, not an MCP endpoint, a JSON-RPC error, a malformed answer."""


class McpDestinationRefused(McpClientError):
    """The outbound policy refused a destination (a resolved address, a redirect, a discovered URL)."""


class McpRemoteError(McpProtocolError):
    """The server answered a request with a JSON-RPC error. ``str()`` stays generic (the server's text is arbitrary);
    ``code``, ``remote_message`` and ``data`` are what it said, for a proxied client to hear as the server said it."""

    def __init__(self, message: str, *, code: int, remote_message: str, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.remote_message = remote_message
        self.data = data
