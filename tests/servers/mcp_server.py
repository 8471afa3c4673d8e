"""A configurable, real MCP server for tests, built on the MCP SDK and served by uvicorn.

Run it as ``python -m tests.servers.mcp_server [options]``; once it accepts connections it prints exactly one
line, ``LISTENING http://127.0.0.1:<port><path>``, to stdout. See ``--help`` for the options. Besides the MCP
endpoint the same port serves a small control API for tests:

* ``POST /_control`` with JSON ``{"drop": [names]}``, ``{"restore": true}`` or ``{"describe": {name: text}}``;
* ``GET /_control/requests`` -> ``{"count": <requests seen on the MCP paths>, "headers": [lowercased names],
  "rejected": <requests refused by --require-header>, "wellKnown": <requests seen on /.well-known/ paths>,
  "modern": <requests on the MCP paths that carried a 2026-era MCP-Protocol-Version>,
  "methods": [JSON-RPC methods of the POSTs to the MCP path, in order]}``.

The SDK's server speaks both protocol eras; ``--legacy-only`` makes it answer 2026-era requests as a
handshake-era server does (400, "Missing session ID"), so clients fall back to ``initialize``.
``--retry-ms N`` makes Streamable HTTP streams resumable (an in-memory event store, SSE ``retry: N``) and adds the
read-only tool ``close_stream``, which closes its call's SSE stream before answering: the answer reaches a client
that waits ``N`` ms and resumes with ``Last-Event-ID`` (SEP-1699; the SDK offers this to handshake-era clients,
so combine it with ``--legacy-only``). ``resumptions`` in ``/_control/requests`` lists the ``Last-Event-ID`` of
every GET that resumed a stream.
``--elicit-tool`` adds the read-only tool ``fill_in_form``, which asks its client to fill in a form whose fields all
have defaults (an elicitation; handshake-era sessions only, so combine it with ``--legacy-only``) and answers with
what came back.
``--no-tools-capability`` serves no tools at all: the server declares no ``tools`` capability and answers
``tools/list`` with "method not found", as a prompts-only or resources-only server does.

With ``--oauth-challenge`` the port also serves OAuth metadata: RFC 9728 protected-resource metadata at
``/.well-known/oauth-protected-resource`` and ``/.well-known/oauth-protected-resource<mcp path>`` (404 with
``--no-prm``) and RFC 8414 authorization-server metadata at ``/.well-known/oauth-authorization-server``.
The misbehaviour modes (``--redirect-to``, ``--endless-body``, ``--endless-sse-event``, ``--trickle``) exist to
test the client's bounds; the streaming ones never end on their own and stop when the client disconnects.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from mcp.server import MCPServer, ServerRequestContext
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool as ServerTool
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage, ListToolsResult, PaginatedRequestParams, Tool, ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PATH = "/_control"
WELL_KNOWN_PREFIX = "/.well-known/"
PRM_PATH = "/.well-known/oauth-protected-resource"
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"
SCOPE = "tools:read"
STREAM_CHUNK_BYTES = 64 * 1024
TRICKLE_SECONDS = 0.5


@dataclass
class ServerOptions:
    transport: str = "streamable-http"
    host: str = "127.0.0.1"
    port: int = 0
    tools: int = 3
    page_size: int = 0
    require_header: tuple[str, str] | None = None
    oauth_challenge: bool = False
    list_delay: float = 0.0
    status: int | None = None
    exit_with_parent: bool = False
    redirect_to: str | None = None
    redirect_status: int = 307
    endless_body: bool = False
    endless_sse_event: bool = False
    trickle: bool = False
    description_size: int | None = None
    resource_metadata: str | None = None
    authorization_server: str | None = None
    as_endpoint_base: str | None = None
    issuer: str | None = None
    no_prm: bool = False
    no_as_metadata: bool = False
    scope_count: int = 1
    metadata_format: str = "json"
    legacy_only: bool = False
    call_tools: bool = False
    no_tools_capability: bool = False
    retry_ms: int | None = None
    elicit_tool: bool = False

    @property
    def mcp_path(self) -> str:
        return "/sse" if self.transport == "sse" else "/mcp"

    @property
    def mcp_paths(self) -> tuple[str, ...]:
        # The legacy SSE transport takes client messages on a second path.
        return ("/sse", "/messages") if self.transport == "sse" else ("/mcp",)


@dataclass
class ServerState:
    """What tests can observe and change at runtime through the control API."""

    dropped: set[str] = field(default_factory=set)
    descriptions: dict[str, str] = field(default_factory=dict)
    request_count: int = 0
    rejected_count: int = 0
    well_known_count: int = 0
    modern_count: int = 0
    header_names: set[str] = field(default_factory=set)
    methods: list[str] = field(default_factory=list)
    resumptions: list[str] = field(default_factory=list)


def _make_tool_fn(index: int) -> Callable[..., str]:
    def tool_fn(text: str, repeat: int = 1) -> str:
        return f"tool_{index}: " + text * repeat

    return tool_fn


def _description(index: int, size: int | None) -> str:
    text = f"Test tool number {index}."
    if size is None:
        return text
    return (text + " " + "x" * size)[:size] if size > len(text) else text[:size]


def _numbered_tools(count: int, description_size: int | None = None) -> list[ServerTool]:
    # Building each tool from its function costs ~1 ms of pydantic work; copying one template keeps a
    # 10,000-tool server starting in about a second. All tools share one signature, hence one schema.
    template = ServerTool.from_function(_make_tool_fn(0), name="tool_0", description="template")
    return [
        template.model_copy(
            update={
                "fn": _make_tool_fn(index),
                "name": f"tool_{index}",
                "title": f"Tool {index}",
                "description": _description(index, description_size),
                "annotations": ToolAnnotations(read_only_hint=index % 2 == 0),
            }
        )
        for index in range(count)
    ]


class Forecast(BaseModel):
    city: str
    degrees: int
    sky: str


def _add_call_tools(server: MCPServer[Any]) -> None:
    """Tools for the tool-call tests (``--call-tools``), all read-only (so ALWAYS_ALLOW by default)."""
    read_only = ToolAnnotations(read_only_hint=True)

    @server.tool(annotations=read_only)
    def fail_tool(message: str) -> str:
        """Always fails: the server answers with a tool error (isError) that carries `message`."""
        raise ToolError(message)

    @server.tool(annotations=read_only)
    async def slow_tool(seconds: float) -> str:
        """Answers after `seconds`."""
        await anyio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool(annotations=read_only)
    async def progress_tool(steps: int, ctx: Context[Any, Any], pause: float = 1.2) -> str:
        """Reports progress `steps` times, `pause` seconds apart."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
            await anyio.sleep(pause)
        return f"done after {steps} steps"

    @server.tool(annotations=read_only)
    def forecast(city: str) -> Forecast:
        """Structured content, with an output schema."""
        return Forecast(city=city, degrees=10 + len(city) % 15, sky="clear")

    @server.tool(annotations=read_only)
    def big_tool(size: int) -> str:
        """A text of `size` bytes."""
        return "x" * size


class Profile(BaseModel):
    name: str = "John Doe"
    age: int = 30
    verified: bool = True


def _add_elicit_tool(server: MCPServer[Any]) -> None:
    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def fill_in_form(ctx: Context[Any, Any]) -> str:
        """Asks the client to fill in a form (an elicitation) and answers with what came back."""
        answer = await ctx.elicit("Please confirm your profile", Profile)
        if answer.action != "accept":
            return answer.action
        return "accepted " + answer.data.model_dump_json()


def _add_close_stream_tool(server: MCPServer[Any]) -> None:
    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def close_stream(ctx: Context[Any, Any]) -> str:
        """Closes this call's SSE stream, then answers (on the stream the client resumes)."""
        await ctx.close_sse_stream()
        return "answered on the resumed stream"


class MemoryEventStore(EventStore):
    """Every event of every stream, in order, for replay after a Last-Event-ID (tests keep few)."""

    def __init__(self) -> None:
        self.events: list[tuple[StreamId, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        self.events.append((stream_id, message))
        return str(len(self.events))

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        if not last_event_id.isdigit() or not 0 < int(last_event_id) <= len(self.events):
            return None
        stream_id = self.events[int(last_event_id) - 1][0]
        for index in range(int(last_event_id), len(self.events)):
            other, message = self.events[index]
            if other == stream_id and message is not None:
                await send_callback(EventMessage(message, str(index + 1)))
        return stream_id


class ConfigurableMcpServer(MCPServer[Any]):
    """MCPServer whose tools/list honours cursors, can be slowed down, and reflects control-API edits.

    Dropping a tool only hides it from tools/list (calling it still works); that is all the tests need.
    """

    def __init__(self, options: ServerOptions, state: ServerState) -> None:
        tools = _numbered_tools(options.tools, options.description_size)
        super().__init__("test-mcp-server", log_level="WARNING", tools=tools)
        if options.call_tools:
            _add_call_tools(self)
        if options.retry_ms is not None:
            _add_close_stream_tool(self)
        if options.elicit_tool:
            _add_elicit_tool(self)
        if options.no_tools_capability:
            # The SDK derives the capability from the handlers it has; MCPServer always registers these two.
            for method in ("tools/list", "tools/call"):
                self._lowlevel_server._request_handlers.pop(method, None)
        self._options = options
        self._state = state

    def drop(self, names: list[str]) -> None:
        self._state.dropped.update(names)

    def restore(self) -> None:
        self._state.dropped.clear()
        self._state.descriptions.clear()

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        if self._options.list_delay:
            await anyio.sleep(self._options.list_delay)
        tools: list[Tool] = []
        for tool in await self.list_tools():
            if tool.name in self._state.dropped:
                continue
            if tool.name in self._state.descriptions:
                tool = tool.model_copy(update={"description": self._state.descriptions[tool.name]})
            tools.append(tool)
        size = self._options.page_size
        if size <= 0:
            return ListToolsResult(tools=tools)
        cursor = params.cursor if params is not None else None
        start = int(cursor) if cursor else 0
        end = start + size
        return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


async def _send_json(
    send: Send, status: int, payload: Any, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = [(b"content-length", str(len(body)).encode()), *extra_headers]
    if payload is not None:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_document(send: Send, body: bytes, content_type: bytes) -> None:
    """A 200 sent in 16 KiB pieces without Content-Length, so a client can only bound it while reading."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    for start in range(0, len(body), 16 * 1024):
        await send({"type": "http.response.body", "body": body[start : start + 16 * 1024], "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _stream_forever(
    receive: Receive, send: Send, content_type: bytes, first: bytes, chunk: bytes, interval: float
) -> None:
    """200, then ``first`` and ``chunk`` after ``chunk`` until the client disconnects; the response never ends."""
    await _read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    async with anyio.create_task_group() as tg:

        async def stop_on_disconnect() -> None:
            # uvicorn's send() returns at once after a disconnect; without this the loop below would spin.
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_disconnect)
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        while True:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await anyio.sleep(interval)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class ControlApp:
    """ASGI wrapper: control API, request accounting and the failure modes, in front of the SDK's app."""

    def __init__(
        self, inner: ASGIApp, server: ConfigurableMcpServer, options: ServerOptions, state: ServerState
    ) -> None:
        self.inner = inner
        self.server = server
        self.options = options
        self.state = state
        self.port = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path: str = scope["path"]
        if path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/"):
            await self._control(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if path.startswith(WELL_KNOWN_PREFIX):
            self.state.well_known_count += 1
            if self.options.oauth_challenge:
                await self._well_known(path, send)
                return
        on_mcp_path = any(path == p or path.startswith(p + "/") for p in self.options.mcp_paths)
        if on_mcp_path:
            self.state.request_count += 1
            self.state.header_names.update(name.decode("latin-1").lower() for name, _ in headers)
        if on_mcp_path and self.options.redirect_to is not None:
            location = self.options.redirect_to.encode("latin-1")
            await _send_json(send, self.options.redirect_status, None, ((b"location", location),))
            return
        if self.options.oauth_challenge:
            # The root URL, as this server always named: tests of the client expect it (both paths serve it).
            metadata = self.options.resource_metadata or f"{self.base_url}{PRM_PATH}"
            challenge = f'Bearer resource_metadata="{metadata}", scope="{SCOPE}"'
            await _send_json(send, 401, None, ((b"www-authenticate", challenge.encode()),))
            return
        if self.options.require_header is not None:
            name, value = self.options.require_header
            wanted = name.lower().encode("latin-1")
            if not any(k.lower() == wanted and v == value.encode("latin-1") for k, v in headers):
                self.state.rejected_count += 1
                await _send_json(send, 401, None)
                return
        is_mcp_post = scope["method"] == "POST" and path == self.options.mcp_path
        if on_mcp_path and scope["method"] == "POST":
            receive = await self._record_methods(receive)
        resumed = next((v.decode("latin-1") for k, v in headers if k.lower() == b"last-event-id"), None)
        if on_mcp_path and scope["method"] == "GET" and resumed is not None:
            self.state.resumptions.append(resumed)
        modern = on_mcp_path and any(
            k.lower() == b"mcp-protocol-version" and v.decode("latin-1") in MODERN_PROTOCOL_VERSIONS for k, v in headers
        )
        self.state.modern_count += modern
        if is_mcp_post and modern and self.options.legacy_only:
            # What a handshake-era SDK server answers a request that has no session and is not initialize.
            error = {"code": -32600, "message": "Bad Request: Missing session ID"}
            await _send_json(send, 400, {"jsonrpc": "2.0", "id": None, "error": error})
            return
        if self.options.status is not None and is_mcp_post:
            await _send_json(send, self.options.status, None)
            return
        if is_mcp_post and self.options.endless_body:
            await _stream_forever(receive, send, b"application/json", b"", b" " * STREAM_CHUNK_BYTES, 0)
            return
        if is_mcp_post and self.options.endless_sse_event:
            line = b"data: " + b"x" * (STREAM_CHUNK_BYTES - 7) + b"\n"
            await _stream_forever(receive, send, b"text/event-stream", b"event: message\n", line, 0)
            return
        if is_mcp_post and self.options.trickle:
            await _stream_forever(receive, send, b"text/event-stream", b"", b": ping\n\n", TRICKLE_SECONDS)
            return
        await self.inner(scope, receive, send)

    async def _record_methods(self, receive: Receive) -> Receive:
        """Read the body to note its JSON-RPC methods, and hand the inner app a receive that replays it."""
        body = await _read_body(receive)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        for message in payload if isinstance(payload, list) else [payload]:
            if isinstance(message, dict) and isinstance(message.get("method"), str):
                self.state.methods.append(message["method"])
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _scopes(self) -> list[str]:
        return [SCOPE, *(f"extra:scope:{index:09d}" for index in range(1, self.options.scope_count))]

    async def _well_known(self, path: str, send: Send) -> None:
        options = self.options
        document: dict[str, Any] | None = None
        if path in (PRM_PATH, PRM_PATH + options.mcp_path) and not options.no_prm:
            document = {
                "resource": self.base_url + options.mcp_path,
                "authorization_servers": [options.authorization_server or self.base_url],
                "scopes_supported": self._scopes(),
            }
        elif path == AS_METADATA_PATH and not options.no_as_metadata:
            endpoints = options.as_endpoint_base or self.base_url
            issuer = options.issuer or self.base_url
            document = {
                "issuer": self.base_url + issuer if issuer.startswith("/") else issuer,
                "authorization_endpoint": endpoints + "/authorize",
                "token_endpoint": endpoints + "/token",
                "registration_endpoint": endpoints + "/register",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": self._scopes(),
            }
        if document is None:
            await _send_json(send, 404, {"error": "not found"})
        elif options.metadata_format == "html":
            await _send_document(send, b"<html><body>Not JSON</body></html>", b"text/html")
        elif options.metadata_format == "array":
            await _send_document(send, json.dumps([document]).encode(), b"application/json")
        else:
            await _send_document(send, json.dumps(document).encode(), b"application/json")

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and scope["path"] == CONTROL_PATH + "/requests":
            payload = {
                "count": self.state.request_count,
                "headers": sorted(self.state.header_names),
                "rejected": self.state.rejected_count,
                "wellKnown": self.state.well_known_count,
                "modern": self.state.modern_count,
                "methods": self.state.methods,
                "resumptions": self.state.resumptions,
            }
            await _send_json(send, 200, payload)
            return
        if scope["method"] != "POST" or scope["path"] != CONTROL_PATH:
            await _send_json(send, 404, {"error": "unknown control endpoint"})
            return
        try:
            command = json.loads(await _read_body(receive) or b"{}")
        except ValueError:
            await _send_json(send, 400, {"error": "body is not JSON"})
            return
        if command.get("restore"):
            self.server.restore()
        if "drop" in command:
            self.server.drop(list(command["drop"]))
        for name, text in dict(command.get("describe", {})).items():
            self.state.descriptions[name] = str(text)
        await _send_json(send, 200, {"ok": True})


def parse_args(argv: list[str] | None = None) -> ServerOptions:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.mcp_server", description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tools", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=0, help="0 disables pagination")
    parser.add_argument("--require-header", metavar="NAME=VALUE", help="401 (no WWW-Authenticate) without it")
    parser.add_argument("--oauth-challenge", action="store_true", help="401 with a Bearer challenge, always")
    parser.add_argument("--list-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--status", type=int, help="answer every POST to the MCP path with this status")
    parser.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process dies")
    parser.add_argument("--redirect-to", metavar="URL", help="answer every request to the MCP path with a redirect")
    parser.add_argument("--redirect-status", type=int, default=307, metavar="N", help="status of --redirect-to")
    parser.add_argument("--endless-body", action="store_true", help="a POST gets a JSON body that never ends")
    parser.add_argument(
        "--endless-sse-event", action="store_true", help="a POST gets an event stream with one never-ending event"
    )
    parser.add_argument("--trickle", action="store_true", help="a POST gets an event stream of comments, forever")
    parser.add_argument("--call-tools", action="store_true", help="add the tool-call test tools (see _add_call_tools)")
    parser.add_argument(
        "--no-tools-capability", action="store_true", help="declare no tools capability, serve no tools"
    )
    parser.add_argument("--elicit-tool", action="store_true", help="add fill_in_form, which elicits a form")
    parser.add_argument(
        "--retry-ms", type=int, metavar="N", help="resumable streams with SSE retry N, tool close_stream"
    )
    parser.add_argument("--description-size", type=int, metavar="BYTES", help="length of every tool description")
    parser.add_argument(
        "--legacy-only", action="store_true", help="answer 2026-era requests as a handshake-era server (400)"
    )
    metadata = parser.add_argument_group("OAuth metadata (served with --oauth-challenge)")
    metadata.add_argument("--resource-metadata", metavar="URL", help="resource_metadata named by the challenge")
    metadata.add_argument("--authorization-server", metavar="URL", help="the one authorization server listed")
    metadata.add_argument("--as-endpoint-base", metavar="URL", help="base URL of the endpoints in the AS metadata")
    metadata.add_argument(
        "--issuer", metavar="URL", help="issuer written in the AS metadata (default: base URL; /path: base URL + path)"
    )
    metadata.add_argument("--no-prm", action="store_true", help="protected-resource metadata paths answer 404")
    metadata.add_argument("--no-as-metadata", action="store_true", help="the AS metadata path answers 404 too")
    metadata.add_argument("--scope-count", type=int, default=1, metavar="N", help="scopes_supported entries")
    metadata.add_argument(
        "--metadata-format", choices=["json", "html", "array"], default="json", help="how the documents are sent"
    )
    args = parser.parse_args(argv)
    required: tuple[str, str] | None = None
    if args.require_header is not None:
        name, sep, value = args.require_header.partition("=")
        if not sep or not name:
            parser.error("--require-header takes NAME=VALUE")
        required = (name, value)
    return ServerOptions(
        transport=args.transport,
        host=args.host,
        port=args.port,
        tools=args.tools,
        page_size=args.page_size,
        require_header=required,
        oauth_challenge=args.oauth_challenge,
        list_delay=args.list_delay,
        status=args.status,
        exit_with_parent=args.exit_with_parent,
        redirect_to=args.redirect_to,
        redirect_status=args.redirect_status,
        endless_body=args.endless_body,
        endless_sse_event=args.endless_sse_event,
        trickle=args.trickle,
        description_size=args.description_size,
        resource_metadata=args.resource_metadata,
        authorization_server=args.authorization_server,
        as_endpoint_base=args.as_endpoint_base,
        issuer=args.issuer,
        no_prm=args.no_prm,
        no_as_metadata=args.no_as_metadata,
        scope_count=args.scope_count,
        metadata_format=args.metadata_format,
        legacy_only=args.legacy_only,
        call_tools=args.call_tools,
        no_tools_capability=args.no_tools_capability,
        retry_ms=args.retry_ms,
        elicit_tool=args.elicit_tool,
    )


async def serve(options: ServerOptions) -> None:
    state = ServerState()
    server = ConfigurableMcpServer(options, state)
    inner: ASGIApp
    if options.transport == "sse":
        inner = server.sse_app(host=options.host)
    elif options.retry_ms is not None:
        inner = server.streamable_http_app(
            host=options.host, event_store=MemoryEventStore(), retry_interval=options.retry_ms
        )
    else:
        inner = server.streamable_http_app(host=options.host)
    app = ControlApp(inner, server, options, state)
    sock = listening_socket(options.host, options.port)
    app.port = sock.getsockname()[1]
    await serve_on(app, sock, options.mcp_path, exit_with_parent=options.exit_with_parent)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket; binding it ourselves is what makes port 0 usable: the chosen port is known before serving."""
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY on accepted connections only when the listening socket
    # says it is TCP, and without it Nagle holds a response body behind its headers for a delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def serve_on(app: ASGIApp, sock: socket.socket, path: str, *, exit_with_parent: bool) -> None:
    """Serve ``app`` with uvicorn on ``sock``; once it accepts connections, print ``LISTENING <url of path>``."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=1)
    userver = uvicorn.Server(config)

    async with anyio.create_task_group() as tg:
        tg.start_soon(userver.serve, [sock])
        while not userver.started:
            if userver.should_exit:
                return
            await anyio.sleep(0.01)
        print(f"LISTENING http://127.0.0.1:{sock.getsockname()[1]}{path}", flush=True)
        if exit_with_parent:
            tg.start_soon(_exit_with_parent, userver)


async def _exit_with_parent(userver: uvicorn.Server) -> None:
    # A test runner killed with SIGKILL cannot stop its servers; orphans notice being re-parented instead.
    parent = os.getppid()
    while not userver.should_exit:
        if os.getppid() != parent:
            userver.should_exit = True
            return
        await anyio.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, options)
    sys.exit(0)


if __name__ == "__main__":
    main()
