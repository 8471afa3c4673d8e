"""Tool calls over MCP sessions kept open between calls.

Opening a session costs a handshake (``initialize`` and its notification, or a ``server/discover``) and, over HTTP,
a connection; a session kept open costs neither on the next call. Each `ToolSession` runs in a task of its own
(anyio's cancel scopes belong to the task that opened them, so the task that opens a session must be the one that
closes it), serves one call at a time, and closes itself once idle for `idle_seconds` or after a call that leaves
it in doubt (a broken connection, a timeout, an authorization failure). A `SessionPool` keeps the idle sessions of
each endpoint and hands one to each call, opening another when all are busy.

Calls are bounded like listings (`Bounds`): the whole call by ``total_seconds``, every connect and read, every
response body or SSE event by ``max_response_bytes``; every failure is one `McpClientError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types
from mcp.client.client import Client

from integrations.mcp.connection import legacy_sse, open_http_client, streamable_http
from integrations.mcp.errors import McpProtocolError, McpTimeout
from integrations.mcp.statuses import describe_host
from integrations.mcp.translate import CallState
from integrations.mcp.types import Bounds, HttpClientFactory, ProgressCallback, ToolResult, TransportType

logger = logging.getLogger(__name__)

# Errors after which a session is still good for the next call: the server answered, and said no.
_SESSION_SURVIVES = (McpProtocolError,)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach a server: what a session is opened with, and what a pooled one is matched by."""

    url: str
    headers: tuple[tuple[str, str], ...]
    transport: TransportType | None  # the transport the last sync found; None: Streamable HTTP

    @classmethod
    def of(cls, url: str, headers: Mapping[str, str], transport: TransportType | None) -> Endpoint:
        return cls(url=url, headers=tuple(sorted(headers.items())), transport=transport)

    @property
    def key(self) -> str:
        """A digest of everything that defines a session (headers and tokens included, so none is kept as a key)."""
        canonical = json.dumps([self.url, self.transport, self.headers], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def host(self) -> str:
        try:
            parsed = httpx2.URL(self.url)
        except (httpx2.InvalidURL, TypeError):
            return "the configured URL"
        return describe_host(parsed) if parsed.host else "the configured URL"


@dataclass
class _Job:
    name: str
    arguments: dict[str, Any]
    progress: ProgressCallback | None
    timeout: float
    done: asyncio.Future[ToolResult]


class ToolSession:
    """One open session with a server, in its own task; `call` hands it a tool call and waits for the answer."""

    def __init__(self, endpoint: Endpoint, factory: HttpClientFactory, bounds: Bounds, idle_seconds: float) -> None:
        self.endpoint = endpoint
        self._factory = factory
        self._bounds = bounds
        self._idle_seconds = idle_seconds
        self._state = CallState(host=endpoint.host, limits=bounds, activity="Calling a tool on")
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.usable = True
        self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"mcp-session-{endpoint.host}")

    async def call(
        self, name: str, arguments: dict[str, Any], *, progress: ProgressCallback | None = None, timeout: float
    ) -> ToolResult:
        done: asyncio.Future[ToolResult] = asyncio.get_running_loop().create_future()
        await self._jobs.put(_Job(name, arguments, progress, timeout, done))
        return await done

    def close(self) -> None:
        """Close once the current call (if any) is answered."""
        self.usable = False
        self._jobs.put_nowait(None)

    async def _serve(self) -> None:
        job = await self._jobs.get()  # opened for its first call
        # One cancel scope around the session's whole life, so that it is entered first and left last (anyio's scopes
        # nest strictly): its deadline bounds the opening, then each call, and is lifted while the session idles.
        # When it fires, the session (in doubt by then) closes, and the call in flight times out.
        deadline = anyio.CancelScope(deadline=anyio.current_time() + self._bounds.total_seconds)
        try:
            with deadline:
                async with AsyncExitStack() as stack:
                    client = await self._open(stack)
                    while job is not None:
                        deadline.deadline = anyio.current_time() + job.timeout
                        await self._run(client, job)
                        deadline.deadline = math.inf
                        job = await self._next_job()
        except Exception as exc:  # the session could not be opened, or failed while closing
            error = self._state.translate(exc) or McpProtocolError(
                f"The session with the MCP server at {self._state.host} failed ({type(exc).__name__})."
            )
            error.__cause__ = error.__context__ = None
            self._fail(job, error)
        finally:
            self.usable = False
            if deadline.cancelled_caught:
                self._fail(job, self._timed_out(job))
            while not self._jobs.empty():  # a call handed over while it closed: it will not be served here
                self._fail(self._jobs.get_nowait(), McpProtocolError("The session with the MCP server was closed."))

    async def _next_job(self) -> _Job | None:
        """The next call, or None to close: this one left the session in doubt, or none came for a while."""
        if not self.usable:
            return None
        try:
            return await asyncio.wait_for(self._jobs.get(), self._idle_seconds)
        except TimeoutError:
            return None

    async def _open(self, stack: AsyncExitStack) -> Client:
        self._state.stage = "initialize"
        http = await stack.enter_async_context(
            open_http_client(self._factory, dict(self.endpoint.headers), self._bounds, self._state)
        )
        if self.endpoint.transport == "SSE":
            transport, mode = legacy_sse(self.endpoint.url, http, self._bounds), "legacy"
        else:
            transport, mode = streamable_http(self.endpoint.url, http, self._bounds), "auto"
        # No response cache: a call is never answered from one.
        client = Client(transport, mode=mode, cache=None, read_timeout_seconds=self._bounds.read_seconds)
        return await stack.enter_async_context(client)

    async def _run(self, client: Client, job: _Job) -> None:
        state = self._state
        state.stage, state.failed_post, state.oversized = "tools/call", None, False
        try:
            result = await client.call_tool(job.name, job.arguments, progress_callback=job.progress)
        except Exception as exc:
            error = state.translate(exc) or McpProtocolError(
                f"Calling a tool on the MCP server at {state.host} failed unexpectedly."
            )
            error.__cause__ = error.__context__ = None
            if not isinstance(error, _SESSION_SURVIVES) or state.failed_post is not None:
                self.usable = False  # in doubt: the next call gets a new session
            self._fail(job, error)
            return
        job.done.set_result(_tool_result(result))

    def _timed_out(self, job: _Job | None) -> McpTimeout:
        if self._state.stage == "tools/call" and job is not None:
            return McpTimeout(
                f"The MCP server at {self._state.host} did not answer the tool call within {job.timeout:g} seconds."
            )
        return McpTimeout(
            f"The MCP server at {self._state.host} did not open a session within {self._bounds.total_seconds:g} "
            "seconds."
        )

    @staticmethod
    def _fail(job: _Job | None, error: BaseException) -> None:
        if job is not None and not job.done.done():
            job.done.set_exception(error)


def _tool_result(result: mcp_types.CallToolResult) -> ToolResult:
    document = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return ToolResult(
        content=document.get("content", []),
        structured_content=document.get("structuredContent"),
        is_error=bool(document.get("isError", False)),
        meta=document.get("_meta"),
    )


@dataclass
class SessionPool:
    """The open sessions of each endpoint, in one event loop: a call takes an idle one or opens one."""

    idle_seconds: float = 60.0
    max_idle_per_endpoint: int = 8
    _idle: dict[str, list[ToolSession]] = field(default_factory=lambda: defaultdict(list))

    async def call_tool(
        self,
        endpoint: Endpoint,
        name: str,
        arguments: dict[str, Any],
        *,
        factory: HttpClientFactory,
        bounds: Bounds,
        progress: ProgressCallback | None = None,
    ) -> ToolResult:
        """Call a tool on the endpoint's server, within `bounds`. Raises McpClientError (a subclass) on failure."""
        session = self._take(endpoint) or ToolSession(endpoint, factory, bounds, self.idle_seconds)
        try:
            return await session.call(name, arguments, progress=progress, timeout=bounds.total_seconds)
        finally:
            self._give_back(session)

    def _take(self, endpoint: Endpoint) -> ToolSession | None:
        idle = self._idle.get(endpoint.key, [])
        while idle:
            session = idle.pop()
            if session.usable:
                return session
        return None

    def _give_back(self, session: ToolSession) -> None:
        idle = self._idle[session.endpoint.key]
        idle[:] = [s for s in idle if s.usable]
        if session.usable and len(idle) < self.max_idle_per_endpoint:
            idle.append(session)
        elif session.usable:
            session.close()
        if not idle:
            del self._idle[session.endpoint.key]

    def forget(self, endpoint: Endpoint) -> None:
        """Close the endpoint's idle sessions (its credentials were refused: new ones will be used)."""
        for session in self._idle.pop(endpoint.key, []):
            session.close()
