"""Requests to MCP servers over sessions kept open between them: tool calls, and what a proxied client asks.

Opening a session costs a handshake (``initialize`` and its notification, or a ``server/discover``) and, over HTTP,
a connection; a session kept open costs neither on the next request. Each `PooledSession` runs in a task of its own
(anyio's cancel scopes belong to the task that opened them, so the task that opens a session must be the one that
closes it), serves one request at a time, and closes itself once idle for `idle_seconds` or after a request that
leaves it in doubt (a broken connection, a timeout, an authorization failure, a cancellation). A `SessionPool` keeps
the idle sessions of each endpoint and hands one to each request, opening another when all are busy.

While a session serves a request, what the server sends its client (sampling, elicitation and roots requests, log
messages) goes to that request's `Relay`: one request at a time per session is what makes that routing exact.
Without a relay the server's requests are refused and its log messages dropped.

Requests are bounded like listings (`Bounds`): the whole request by ``total_seconds``, every connect and read, every
response body or SSE event by ``max_response_bytes``; every failure is one `McpClientError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types
from mcp.client.client import Client
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from core import exception_groups
from integrations.mcp.connection import legacy_sse, open_http_client, streamable_http
from integrations.mcp.errors import McpClientError, McpProtocolError, McpRemoteError, McpTimeout
from integrations.mcp.statuses import describe_host
from integrations.mcp.translate import CallState
from integrations.mcp.types import (
    Bounds,
    HttpClientFactory,
    ProgressCallback,
    Relay,
    RelayRefused,
    ToolResult,
    TransportType,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
# Errors after which a session is still good for the next request: the server answered, and said no.
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


@dataclass(frozen=True)
class ServerDescription:
    """What a server said of itself when the session opened, in JSON form (for a proxy to present it as its own)."""

    protocol_version: str
    capabilities: dict[str, Any]
    server_info: dict[str, Any] | None
    instructions: str | None


@dataclass
class _Job:
    run: Callable[[Client], Awaitable[Any]]
    stage: str  # the method, for error messages
    relay: Relay | None
    timeout: float
    done: asyncio.Future[Any]
    scope: anyio.CancelScope | None = None


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class PooledSession:
    """One open session with a server, in its own task; `request` hands it a request and waits for the answer."""

    def __init__(
        self,
        endpoint: Endpoint,
        factory: HttpClientFactory,
        bounds: Bounds,
        idle_seconds: float,
        *,
        handshake_era: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.handshake_era = handshake_era
        self._factory = factory
        self._bounds = bounds
        self._idle_seconds = idle_seconds
        self._state = CallState(host=endpoint.host, limits=bounds, activity="Calling a tool on")
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._current: _Job | None = None
        self.description: ServerDescription | None = None
        self.usable = True
        self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"mcp-session-{endpoint.host}")

    async def request(
        self, run: Callable[[Client], Awaitable[_T]], *, stage: str, relay: Relay | None, timeout: float
    ) -> _T:
        """Run `run(client)` on this session once it is free. Cancelling the caller cancels the request at the
        server (the SDK sends ``notifications/cancelled``) and closes the session, which is in doubt then."""
        done: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        job = _Job(run, stage, relay, timeout, done)
        await self._jobs.put(job)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            self.usable = False
            if job.scope is not None:
                job.scope.cancel()
            if not done.done():
                done.cancel()
            raise

    def close(self) -> None:
        """Close once the current request (if any) is answered."""
        self.usable = False
        self._jobs.put_nowait(None)

    async def _serve(self) -> None:
        job = await self._jobs.get()  # opened for its first request
        # One cancel scope around the session's whole life, so that it is entered first and left last (anyio's scopes
        # nest strictly): its deadline bounds the opening, then each request, and is lifted while the session idles.
        # When it fires, the session (in doubt by then) closes, and the request in flight times out.
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
            while not self._jobs.empty():  # a request handed over while it closed: it will not be served here
                self._fail(self._jobs.get_nowait(), McpProtocolError("The session with the MCP server was closed."))

    async def _next_job(self) -> _Job | None:
        """The next request, or None to close: this one left the session in doubt, or none came for a while."""
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
            transport = streamable_http(self.endpoint.url, http, self._bounds)
            mode = "legacy" if self.handshake_era else "auto"
        # No response cache: a request is never answered from one. The callbacks declare sampling, elicitation and
        # roots to the server, and pass what it asks to the relay of the request being served.
        client = Client(
            transport,
            mode=mode,
            cache=None,
            read_timeout_seconds=self._bounds.read_seconds,
            sampling_callback=self._on_sampling,
            elicitation_callback=self._on_elicitation,
            list_roots_callback=self._on_roots,
            logging_callback=self._on_log,
        )
        client = await stack.enter_async_context(client)
        self.description = ServerDescription(
            protocol_version=client.protocol_version,
            capabilities=_json(client.server_capabilities),
            server_info=_json(client.server_info) if client.server_info is not None else None,
            instructions=client.instructions,
        )
        return client

    async def _run(self, client: Client, job: _Job) -> None:
        state = self._state
        state.stage, state.failed_post, state.oversized = job.stage, None, False
        self._current = job
        try:
            with anyio.CancelScope() as job.scope:
                result = await job.run(client)
        except Exception as exc:
            error = self._remote_error(exc) or state.translate(exc)
            error = error or McpProtocolError(f"Calling the MCP server at {state.host} failed unexpectedly.")
            error.__cause__ = error.__context__ = None
            if not isinstance(error, _SESSION_SURVIVES) or state.failed_post is not None:
                self.usable = False  # in doubt: the next request gets a new session
            self._fail(job, error)
            return
        finally:
            self._current = None
        if job.scope.cancelled_caught:
            self.usable = False
            self._fail(job, McpProtocolError(f"The request to the MCP server at {state.host} was cancelled."))
        elif not job.done.done():
            job.done.set_result(result)

    def _remote_error(self, exc: BaseException) -> McpClientError | None:
        """A JSON-RPC error the server answered with (not one the SDK made of a failed exchange), kept as it said it."""
        if self._state.failed_post is not None:
            return None
        for leaf in exception_groups.leaves(exc):
            if isinstance(leaf, MCPError) and leaf.code not in (mcp_types.REQUEST_TIMEOUT, mcp_types.CONNECTION_CLOSED):
                return McpRemoteError(
                    f"The MCP server at {self._state.host} answered {self._state.stage} with an error "
                    f"(JSON-RPC code {leaf.code}).",
                    code=leaf.code,
                    remote_message=leaf.error.message,
                    data=leaf.error.data,
                )
        return None

    # --- What the server sends its client while it serves a request -----------------------------------------------

    async def _relayed(
        self, method: str, params: BaseModel, result_type: Callable[[Any], _T]
    ) -> _T | mcp_types.ErrorData:
        relay = self._current.relay if self._current is not None else None
        if relay is None:
            return mcp_types.ErrorData(
                code=mcp_types.INVALID_REQUEST, message=f"This client cannot answer {method}: nobody is asking."
            )
        try:
            answer = await relay.request(method, _json(params))
        except RelayRefused as exc:
            return mcp_types.ErrorData(code=exc.code, message=exc.message)
        try:
            return result_type(answer)
        except ValidationError:
            return mcp_types.ErrorData(code=mcp_types.INTERNAL_ERROR, message=f"The answer to {method} was malformed.")

    async def _on_sampling(
        self, context: ClientRequestContext, params: mcp_types.CreateMessageRequestParams
    ) -> mcp_types.CreateMessageResult | mcp_types.CreateMessageResultWithTools | mcp_types.ErrorData:
        def parse(answer: Any) -> mcp_types.CreateMessageResult | mcp_types.CreateMessageResultWithTools:
            if isinstance(answer, dict) and isinstance(answer.get("content"), list):
                return mcp_types.CreateMessageResultWithTools.model_validate(answer)
            return mcp_types.CreateMessageResult.model_validate(answer)

        return await self._relayed("sampling/createMessage", params, parse)

    async def _on_elicitation(
        self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        return await self._relayed("elicitation/create", params, mcp_types.ElicitResult.model_validate)

    async def _on_roots(self, context: ClientRequestContext) -> mcp_types.ListRootsResult | mcp_types.ErrorData:
        return await self._relayed("roots/list", mcp_types.RequestParams(), mcp_types.ListRootsResult.model_validate)

    async def _on_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        relay = self._current.relay if self._current is not None else None
        if relay is not None:
            await relay.notify("notifications/message", _json(params))

    def _timed_out(self, job: _Job | None) -> McpTimeout:
        if self._state.stage != "initialize" and job is not None:
            return McpTimeout(
                f"The MCP server at {self._state.host} did not answer {job.stage} within {job.timeout:g} seconds."
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
    document = _json(result)
    return ToolResult(
        content=document.get("content", []),
        structured_content=document.get("structuredContent"),
        is_error=bool(document.get("isError", False)),
        meta=document.get("_meta"),
    )


def _complete(client: Client, params: dict[str, Any]) -> Awaitable[BaseModel]:
    ref_document = params.get("ref") or {}
    ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference
    if ref_document.get("type") == "ref/resource":
        ref = mcp_types.ResourceTemplateReference.model_validate(ref_document)
    else:
        ref = mcp_types.PromptReference.model_validate(ref_document)
    argument = params.get("argument") or {}
    context = (params.get("context") or {}).get("arguments")
    return client.complete(ref, {"name": argument.get("name", ""), "value": argument.get("value", "")}, context)


# The requests a proxy passes on as its client made them (params in their JSON form), through the SDK's client.
_PROXIED: dict[str, Callable[[Client, dict[str, Any]], Awaitable[BaseModel]]] = {
    "ping": lambda client, params: client.send_ping(),
    "resources/list": lambda client, params: client.list_resources(cursor=params.get("cursor"), cache_mode="refresh"),
    "resources/templates/list": lambda client, params: client.list_resource_templates(
        cursor=params.get("cursor"), cache_mode="refresh"
    ),
    "resources/read": lambda client, params: client.read_resource(str(params.get("uri", "")), cache_mode="refresh"),
    "resources/subscribe": lambda client, params: client.session.subscribe_resource(str(params.get("uri", ""))),
    "resources/unsubscribe": lambda client, params: client.session.unsubscribe_resource(str(params.get("uri", ""))),
    "prompts/list": lambda client, params: client.list_prompts(cursor=params.get("cursor"), cache_mode="refresh"),
    "prompts/get": lambda client, params: client.get_prompt(str(params.get("name", "")), params.get("arguments")),
    "completion/complete": _complete,
}
PROXIED_METHODS = frozenset(_PROXIED)


@dataclass
class SessionPool:
    """The open sessions of each endpoint, in one event loop: a request takes an idle one or opens one."""

    idle_seconds: float = 60.0
    max_idle_per_endpoint: int = 8
    _idle: dict[str, list[PooledSession]] = field(default_factory=lambda: defaultdict(list))

    async def call_tool(
        self,
        endpoint: Endpoint,
        name: str,
        arguments: dict[str, Any],
        *,
        factory: HttpClientFactory,
        bounds: Bounds,
        progress: ProgressCallback | None = None,
        relay: Relay | None = None,
    ) -> ToolResult:
        """Call a tool on the endpoint's server, within `bounds`. Raises McpClientError (a subclass) on failure."""

        level = relay.log_level if relay is not None else None
        meta: mcp_types.RequestParamsMeta | None = None
        if level is not None:  # a 2026-era server sends log messages to a request that opts in
            meta = mcp_types.RequestParamsMeta()
            meta[mcp_types.LOG_LEVEL_META_KEY] = level  # type: ignore[literal-required]

        async def run(client: Client) -> ToolResult:
            return _tool_result(await client.call_tool(name, arguments, progress_callback=progress, meta=meta))

        return await self._request(endpoint, run, "tools/call", factory=factory, bounds=bounds, relay=relay)

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        params: dict[str, Any] | None,
        *,
        factory: HttpClientFactory,
        bounds: Bounds,
        relay: Relay | None = None,
    ) -> dict[str, Any]:
        """Send any other request a proxied client makes (``resources/read``, ``prompts/get``, ...) as it made it, and
        return the result's JSON form. A JSON-RPC error from the server raises `McpRemoteError`."""

        operation = _PROXIED.get(method)
        if operation is None:
            raise McpProtocolError(f"{method} is not a request that is passed on to MCP servers.")
        arguments = dict(params or {})

        async def run(client: Client) -> dict[str, Any]:
            return _json(await operation(client, arguments))

        return await self._request(endpoint, run, method, factory=factory, bounds=bounds, relay=relay)

    async def describe(
        self, endpoint: Endpoint, *, factory: HttpClientFactory, bounds: Bounds, handshake_era: bool = False
    ) -> ServerDescription:
        """What the server said of itself when a session with it opened (opening one if none is), in the era the
        proxied client speaks."""

        async def run(client: Client) -> None:
            return None

        session = self._take(endpoint, handshake_era) or self._open(endpoint, factory, bounds, handshake_era)
        try:
            await session.request(run, stage="initialize", relay=None, timeout=bounds.total_seconds)
        finally:
            self._give_back(session)
        assert session.description is not None  # set before any request runs
        return session.description

    async def _request(
        self,
        endpoint: Endpoint,
        run: Callable[[Client], Awaitable[_T]],
        stage: str,
        *,
        factory: HttpClientFactory,
        bounds: Bounds,
        relay: Relay | None,
    ) -> _T:
        era = relay is not None and relay.handshake_era
        session = self._take(endpoint, era) or self._open(endpoint, factory, bounds, era)
        try:
            return await session.request(run, stage=stage, relay=relay, timeout=bounds.total_seconds)
        finally:
            self._give_back(session)

    def _open(
        self, endpoint: Endpoint, factory: HttpClientFactory, bounds: Bounds, handshake_era: bool
    ) -> PooledSession:
        return PooledSession(endpoint, factory, bounds, self.idle_seconds, handshake_era=handshake_era)

    @staticmethod
    def _key(endpoint: Endpoint, handshake_era: bool) -> str:
        return f"{endpoint.key}:{'handshake' if handshake_era else 'auto'}"

    def _take(self, endpoint: Endpoint, handshake_era: bool) -> PooledSession | None:
        idle = self._idle.get(self._key(endpoint, handshake_era), [])
        while idle:
            session = idle.pop()
            if session.usable:
                return session
        return None

    def _give_back(self, session: PooledSession) -> None:
        key = self._key(session.endpoint, session.handshake_era)
        idle = self._idle[key]
        idle[:] = [s for s in idle if s.usable]
        if session.usable and len(idle) < self.max_idle_per_endpoint:
            idle.append(session)
        elif session.usable:
            session.close()
        if not idle:
            del self._idle[key]

    def forget(self, endpoint: Endpoint) -> None:
        """Close the endpoint's idle sessions (its credentials were refused: new ones will be used)."""
        for era in (False, True):
            for session in self._idle.pop(self._key(endpoint, era), []):
                session.close()
