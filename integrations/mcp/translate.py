"""Every failure of an MCP call, whatever raised it (httpx2, the SDK, pydantic, the outbound guard), as one
`McpClientError` whose message names the server's host and the bound or step that failed, never a response body."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field

import anyio
import httpx2
import mcp_types
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from core import exception_groups
from integrations.mcp.errors import (
    McpClientError,
    McpDestinationRefused,
    McpLimitExceeded,
    McpProtocolError,
    McpTimeout,
    McpUnreachable,
)
from integrations.mcp.statuses import status_error
from integrations.mcp.types import Bounds
from integrations.outbound import DestinationRefused


@dataclass
class CallState:
    """What one call observed on its way, to explain a failure better than its last symptom does."""

    host: str
    limits: Bounds
    activity: str = "Listing tools from"  # what failed, in "... the MCP server at <host> failed unexpectedly"
    stage: str = "initialize"
    oversized: bool = False
    # The SDK turns a failed POST into a generic JSON-RPC error; the status kept here says what happened.
    failed_post: tuple[int, list[str]] | None = field(default=None)

    def translate(self, exc: BaseException) -> McpClientError | None:
        """Map any failure to an McpClientError; None for cancellation and non-Exception BaseExceptions."""
        cancelled = anyio.get_cancelled_exc_class()
        leaves = [leaf for leaf in exception_groups.leaves(exc) if not isinstance(leaf, cancelled)]
        if not leaves or any(not isinstance(leaf, Exception) for leaf in leaves):
            return None
        for leaf in leaves:
            if isinstance(leaf, McpClientError):
                return leaf
        for leaf in leaves:
            if isinstance(leaf, DestinationRefused):
                return McpDestinationRefused(str(leaf))
        if self.oversized:
            return McpLimitExceeded(
                f"A response from the MCP server at {self.host} was larger than "
                f"{self.limits.max_response_bytes} bytes, the most that is accepted."
            )
        leaves.sort(key=_relevance)
        return self._translate_one(leaves[0])

    def _translate_one(self, exc: BaseException) -> McpClientError:
        host = self.host
        limits = self.limits
        if isinstance(exc, httpx2.HTTPStatusError):
            return status_error(exc.response.status_code, exc.response.headers.get_list("www-authenticate"), host)
        if isinstance(exc, httpx2.ConnectTimeout):
            return McpUnreachable(
                f"Could not connect to the MCP server at {host} within {limits.connect_seconds:g} seconds."
            )
        if isinstance(exc, httpx2.TimeoutException):
            return McpTimeout(f"The MCP server at {host} did not respond within {limits.read_seconds:g} seconds.")
        if isinstance(exc, httpx2.SSEError):
            if "byte limit" in str(exc):
                return McpLimitExceeded(f"An event from the MCP server at {host} was larger than the accepted size.")
            return McpProtocolError(
                f"The URL does not look like an MCP endpoint: the server at {host} did not answer with an event stream."
            )
        if isinstance(exc, httpx2.ConnectError):
            return McpUnreachable(f"Could not connect to the MCP server at {host}{_connect_reason(exc)}.")
        if isinstance(exc, httpx2.NetworkError | httpx2.RemoteProtocolError):
            return McpUnreachable(f"The connection to the MCP server at {host} was interrupted.")
        if isinstance(exc, httpx2.UnsupportedProtocol | httpx2.InvalidURL):
            return McpProtocolError("The MCP server URL is not a valid http or https URL.")
        if isinstance(exc, httpx2.HTTPError):
            return McpProtocolError(f"The HTTP exchange with the MCP server at {host} failed ({type(exc).__name__}).")
        if isinstance(exc, MCPError):
            # A failed POST explains a later timeout or closed stream better than the symptom does.
            if self.failed_post is not None:
                return status_error(*self.failed_post, host)
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                return McpTimeout(
                    f"The MCP server at {host} did not answer {self.stage} within {limits.read_seconds:g} seconds."
                )
            if exc.code == mcp_types.CONNECTION_CLOSED:
                return McpUnreachable(f"The MCP server at {host} closed the connection before answering.")
            # The server's own error message is not repeated: it is arbitrary text from a remote party.
            return McpProtocolError(
                f"The MCP server at {host} answered {self.stage} with an error (JSON-RPC code {exc.code})."
            )
        if isinstance(exc, ValidationError):
            return McpProtocolError(f"The MCP server at {host} sent a malformed {self.stage} response.")
        if isinstance(exc, RuntimeError) and "protocol version" in str(exc).lower():
            return McpProtocolError(f"The MCP server at {host} negotiated an unsupported protocol version.")
        return McpProtocolError(f"{self.activity} the MCP server at {host} failed unexpectedly ({type(exc).__name__}).")


def _relevance(exc: BaseException) -> int:
    """Sort key: the exception that best explains a failure comes first among several in a group."""
    if isinstance(exc, httpx2.HTTPStatusError):
        return 0
    if isinstance(exc, httpx2.HTTPError):
        return 1
    if isinstance(exc, MCPError | ValidationError):
        return 2
    return 3


def _connect_reason(exc: BaseException) -> str:
    """A short cause for a failed connect, from the OS error underneath, or ''."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if isinstance(seen, socket.gaierror):
            return " (the host name could not be resolved)"
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return " (connection refused)"
        seen = seen.__cause__ or seen.__context__
    return ""
