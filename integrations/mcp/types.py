"""What the MCP client takes and gives: bounds, and the tools a server lists, as plain dataclasses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx2
from mcp.shared.dispatcher import ProgressFnT

TransportType = Literal["STREAMABLE_HTTP", "SSE"]

HttpClientFactory = Callable[..., httpx2.AsyncClient]
"""Builds the call's HTTP client; called as ``factory(headers=..., timeout=...)``, like the SDK's
``McpHttpClientFactory``. The client must not follow redirects itself (the SDK follows same-origin ones)."""


@dataclass(frozen=True)
class Bounds:
    """What bounds one exchange with a server: the whole of it, each connect, each read, each response body."""

    total_seconds: float = 30.0
    connect_seconds: float = 5.0
    read_seconds: float = 15.0
    max_response_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class SyncLimits(Bounds):
    """A tool listing's bounds: the exchange's, and how many pages and tools are read at most."""

    max_pages: int = 100
    max_tools: int = 10_000


@dataclass(frozen=True)
class RemoteTool:
    name: str
    title: str | None
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any]
    read_only_hint: bool | None


@dataclass(frozen=True, repr=False)
class ToolListing:
    transport: TransportType
    tools: list[RemoteTool]

    def __repr__(self) -> str:
        # Short on purpose: asyncio.Runner formats its main task, result included, when anyio.run() returns
        # (restoring the SIGINT handler builds an error message with the task's repr), and the dataclass
        # repr of a thousand tools took ~13 ms each time.
        return f"ToolListing(transport={self.transport!r}, tools=<{len(self.tools)} tools>)"


@dataclass(frozen=True)
class AuthChallenge:
    """What a server's ``WWW-Authenticate: Bearer`` challenge said."""

    resource_metadata_url: str | None
    scope: str | None
    error: str | None


@dataclass(frozen=True)
class ToolResult:
    """A tool's answer to ``tools/call``, as the server sent it (MCP's CallToolResult, in its JSON form).

    ``is_error`` is the tool's own report of failure: a result, not a failed call.
    """

    content: list[dict[str, Any]]
    structured_content: dict[str, Any] | None
    is_error: bool
    meta: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"content": self.content, "isError": self.is_error}
        if self.structured_content is not None:
            document["structuredContent"] = self.structured_content
        if self.meta:
            document["_meta"] = self.meta
        return document


ProgressCallback = ProgressFnT
"""Awaited with (progress, total, message) for each progress notification of a running call."""


class Relay(Protocol):
    """Where a server's own messages go while it serves a request: the client that made the request, if it can
    answer (a proxied MCP client), else nobody. Messages are the JSON-RPC method and params, in their JSON form.

    ``request`` answers the server's requests (``sampling/createMessage``, ``elicitation/create``, ``roots/list``)
    with the result's JSON form, or raises `RelayRefused`; ``notify`` passes notifications on
    (``notifications/message``).
    """

    @property
    def handshake_era(self) -> bool:
        """Whether the client speaks a handshake-era revision (2025-11-25 and before). Its requests then go to the
        server over a session of that era too: a server written for it asks its client things on an open stream,
        which the 2026 protocol's stateless requests do not have."""
        ...

    @property
    def log_level(self) -> str | None:
        """The lowest log level the client wants passed on, or None for no log messages (the opt-in a 2026-era
        server needs before it sends any)."""
        ...

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]: ...

    async def notify(self, method: str, params: dict[str, Any]) -> None: ...


class RelayRefused(Exception):
    """The relay cannot answer a server's request: it goes back to the server as a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
