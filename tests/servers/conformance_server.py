"""An MCP server for the official conformance suite's server scenarios, built on the SDK's low-level ``Server``.

Run it as ``python -m tests.servers.conformance_server [--port 0] [--exit-with-parent] [--require-bearer TOKEN]``;
once it accepts connections it prints exactly one line, ``LISTENING http://127.0.0.1:<port>/mcp``, to stdout.
``.ci/conformance-server --self`` runs every server scenario of @modelcontextprotocol/conformance against it.

What each scenario expects (tool, resource and prompt names, arguments, result shapes) is the suite's own
description of it (``conformance list --server``; the scenario classes in its ``dist/index.js``). The low-level
server is used because the scenarios check exact wire shapes (a tool's ``inputSchema`` with JSON Schema 2020-12
keywords, elicitation schemas with every enum variant) and need ``logging/setLevel`` and
``resources/subscribe``, which the high-level ``MCPServer`` does not serve.

Streamable HTTP at ``/mcp`` with stateful sessions, so the server can send requests to the client (sampling,
elicitation) on a tool call's stream, and with an event store (per session, see SessionScopedEventStore), so a
stream the server closes mid-call (``test_reconnection``) resumes with ``Last-Event-ID``. A session's requests
are served at the protocol version it negotiated (see ConformanceApp). Host and Origin are checked against
loopback names (DNS rebinding protection). With ``--require-bearer TOKEN`` every request without
``Authorization: Bearer TOKEN`` is refused with 401: the stand-in for an endpoint that requires an API key.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import io
import itertools
import json
import struct
import sys
import warnings
import wave
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolRequestParams,
    CallToolResult,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    ContentBlock,
    EmbeddedResource,
    EmptyResult,
    GetPromptRequestParams,
    GetPromptResult,
    ImageContent,
    JSONRPCMessage,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    LoggingLevel,
    PaginatedRequestParams,
    Prompt,
    PromptArgument,
    PromptMessage,
    PromptReference,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    Tool,
    UnsubscribeRequestParams,
)
from mcp_types.jsonrpc import INVALID_PARAMS
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, is_version_at_least

from tests.servers.mcp_server import listening_socket, serve_on

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Context = ServerRequestContext[Any, Any]

MCP_PATH = "/mcp"
RESOURCE_NOT_FOUND = -32002  # the spec's error code for resources/read of an unknown URI
RETRY_INTERVAL_MS = 500  # the SSE `retry` the server suggests on its streams (server-sse-polling)
MAX_STORED_EVENTS = 10_000
LOG_LEVELS: tuple[LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}


def _png_one_red_pixel() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8 bits per channel, RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # one scanline: filter type 0, then the red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(1)
        audio.setframerate(8000)
        audio.writeframes(b"\x80" * 800)  # 0.1 s of 8-bit silence
    return buffer.getvalue()


PNG_BASE64 = base64.b64encode(_png_one_red_pixel()).decode()
WAV_BASE64 = base64.b64encode(_wav_silence()).decode()


# --- sessions ----------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Session:
    """What the server keeps about one Streamable HTTP session."""

    session_id: str | None = None  # learned from the answer to the request that opened the session
    protocol_version: str | None = None  # the version `initialize` negotiated
    log_level: LoggingLevel = "debug"  # logging/setLevel
    subscriptions: set[str] = field(default_factory=set)  # resources/subscribe


# By Mcp-Session-Id, from the answer to `initialize` until DELETE (a session that expires stays: a test server).
SESSIONS: dict[str, Session] = {}

# The session of the HTTP request being served, set by ConformanceApp. The SDK runs a session's message loop (and
# so its handlers and its message router) in a task the opening request starts, which copies that request's
# context; everything else runs in the context of its own request.
CURRENT_SESSION: ContextVar[Session | None] = ContextVar("conformance_current_session", default=None)


def _session(ctx: Context) -> Session:
    """The session of a request, by its Mcp-Session-Id (stateful: every request but `initialize` carries one)."""
    session_id = ctx.request.headers.get("mcp-session-id") if ctx.request is not None else None
    if session_id is None:
        return Session()
    return SESSIONS.setdefault(session_id, Session(session_id))


async def record_negotiated_version(ctx: Context, call_next: CallNext) -> HandlerResult:
    """Server middleware: remember the protocol version `initialize` answered with (see ConformanceApp)."""
    result = await call_next(ctx)
    session = CURRENT_SESSION.get()
    if ctx.method == "initialize" and session is not None and isinstance(result, dict):
        session.protocol_version = result.get("protocolVersion")
    return result


async def _log(ctx: Context, level: LoggingLevel, text: str) -> None:
    """A notifications/message on the request's stream, unless the session's logging/setLevel filters it out."""
    if LOG_LEVELS.index(level) < LOG_LEVELS.index(_session(ctx).log_level):
        return
    await ctx.session.send_log_message(level, text, logger="conformance", related_request_id=ctx.request_id)


def _text(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=text)])


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=text)], is_error=True)


# --- tools -------------------------------------------------------------------------------------------------------

ToolHandler = Callable[[Context, dict[str, Any]], Awaitable[CallToolResult]]


@dataclass(frozen=True)
class ToolEntry:
    definition: Tool
    handler: ToolHandler


TOOLS: dict[str, ToolEntry] = {}


def tool(
    name: str, description: str, input_schema: dict[str, Any] | None = None
) -> Callable[[ToolHandler], ToolHandler]:
    def register(handler: ToolHandler) -> ToolHandler:
        definition = Tool(name=name, description=description, input_schema=input_schema or NO_ARGUMENTS)
        TOOLS[name] = ToolEntry(definition, handler)
        return handler

    return register


def _string_arguments(**descriptions: str) -> dict[str, Any]:
    """The input schema of a tool whose arguments are all required strings."""
    properties = {name: {"type": "string", "description": text} for name, text in descriptions.items()}
    return {"type": "object", "properties": properties, "required": list(descriptions)}


# Scenario tools-call-simple-text.
@tool("test_simple_text", "Returns a simple text.")
async def test_simple_text(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    return _text("This is a simple text response for testing.")


# Scenario tools-call-image.
@tool("test_image_content", "Returns an image (a 1x1 red PNG).")
async def test_image_content(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[ImageContent(data=PNG_BASE64, mime_type="image/png")])


# Scenario tools-call-audio.
@tool("test_audio_content", "Returns audio (0.1 s of silence as WAV).")
async def test_audio_content(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[AudioContent(data=WAV_BASE64, mime_type="audio/wav")])


# Scenario tools-call-embedded-resource.
@tool("test_embedded_resource", "Returns an embedded text resource.")
async def test_embedded_resource(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    resource = TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return CallToolResult(content=[EmbeddedResource(resource=resource)])


# Scenario tools-call-mixed-content.
@tool("test_multiple_content_types", "Returns text, an image and an embedded resource.")
async def test_multiple_content_types(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    resource = TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
    )
    content: list[ContentBlock] = [
        TextContent(text="Multiple content types test:"),
        ImageContent(data=PNG_BASE64, mime_type="image/png"),
        EmbeddedResource(resource=resource),
    ]
    return CallToolResult(content=content)


# Scenario tools-call-with-logging.
@tool("test_tool_with_logging", "Sends three log messages while it runs.")
async def test_tool_with_logging(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    await _log(ctx, "info", "Tool execution started")
    await anyio.sleep(0.05)
    await _log(ctx, "info", "Tool processing data")
    await anyio.sleep(0.05)
    await _log(ctx, "info", "Tool execution completed")
    return _text("Tool with logging executed successfully")


# Scenario tools-call-error.
@tool("test_error_handling", "Always fails (a tool error, isError: true).")
async def test_error_handling(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    return _error("This tool intentionally returns an error for testing")


# Scenario tools-call-with-progress.
@tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100 when the call asks for progress.")
async def test_tool_with_progress(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    for progress in (0, 50, 100):
        await ctx.session.report_progress(progress, 100, f"{progress}% done")  # a no-op without a progress token
        if progress < 100:
            await anyio.sleep(0.05)
    return _text("Tool with progress executed successfully")


# Scenario tools-call-sampling.
@tool(
    "test_sampling",
    "Asks the client's LLM (sampling/createMessage) and returns its answer.",
    _string_arguments(prompt="The prompt to send to the LLM"),
)
async def test_sampling(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    capabilities = ctx.session.client_capabilities
    if capabilities is None or capabilities.sampling is None:
        return _error("The client does not support sampling")
    message = SamplingMessage(role="user", content=TextContent(text=str(arguments.get("prompt", ""))))
    result = await ctx.session.create_message([message], max_tokens=100, related_request_id=ctx.request_id)
    answer = result.content.text if isinstance(result.content, TextContent) else json.dumps(result.content.model_dump())
    return _text(f"LLM response: {answer}")


# Scenario tools-call-elicitation.
@tool(
    "test_elicitation",
    "Asks the user for a username and an email (elicitation/create) and returns the answer.",
    _string_arguments(message="The message to show the user"),
)
async def test_elicitation(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    return await _elicit(ctx, str(arguments.get("message", "")), schema, "User response")


# Scenario json-schema-2020-12.
@tool(
    "json_schema_2020_12_tool",
    "Tool with JSON Schema 2020-12 features",
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    },
)
async def json_schema_2020_12_tool(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    return _text(f"Received: {json.dumps(arguments, sort_keys=True)}")


# Scenario elicitation-sep1034-defaults.
@tool("test_elicitation_sep1034_defaults", "Elicits a form whose fields of every primitive type have defaults.")
async def test_elicitation_sep1034_defaults(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Your name", "default": "John Doe"},
            "age": {"type": "integer", "description": "Your age", "default": 30},
            "score": {"type": "number", "description": "Your score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "Your status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Whether you are verified", "default": True},
        },
    }
    return await _elicit(ctx, "Please review and update the form fields with defaults", schema, "Elicitation completed")


# Scenario elicitation-sep1330-enums.
@tool("test_elicitation_sep1330_enums", "Elicits a form with each of the five enum schema variants.")
async def test_elicitation_sep1330_enums(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    options = ["option1", "option2", "option3"]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "description": "Untitled single-select", "enum": options},
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"},
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum (enumNames, deprecated)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": {"type": "string", "enum": options},
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]
                },
            },
        },
    }
    return await _elicit(ctx, "Please choose from each kind of enum", schema, "Elicitation completed")


# Scenario server-sse-polling.
@tool("test_reconnection", "Closes its SSE stream mid-call; the result arrives when the client resumes the stream.")
async def test_reconnection(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    # The transport offers close_sse_stream only with an event store and a 2025-11-25 client (one that resumes).
    if ctx.close_sse_stream is not None:
        await ctx.close_sse_stream()
    return _text("Reconnection test completed")  # stored, and replayed when the client resumes the stream


async def _elicit(ctx: Context, message: str, schema: dict[str, Any], prefix: str) -> CallToolResult:
    capabilities = ctx.session.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        return _error("The client does not support elicitation")
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return _text(f"{prefix}: action={result.action}, content={json.dumps(result.content)}")


# Scenario tools-list.
async def list_tools(ctx: Context, params: PaginatedRequestParams | None) -> ListToolsResult:
    return ListToolsResult(tools=[entry.definition for entry in TOOLS.values()])


async def call_tool(ctx: Context, params: CallToolRequestParams) -> CallToolResult:
    entry = TOOLS.get(params.name)
    if entry is None:
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")
    return await entry.handler(ctx, params.arguments or {})


# --- resources ---------------------------------------------------------------------------------------------------

STATIC_TEXT = TextResourceContents(
    uri="test://static-text", mime_type="text/plain", text="This is the content of the static text resource."
)
STATIC_BINARY = BlobResourceContents(uri="test://static-binary", mime_type="image/png", blob=PNG_BASE64)
WATCHED = TextResourceContents(uri="test://watched-resource", mime_type="text/plain", text="Watched resource content.")
TEMPLATE_PREFIX, TEMPLATE_SUFFIX = "test://template/", "/data"

RESOURCES = [  # resources-list
    Resource(uri=STATIC_TEXT.uri, name="static-text", description="A static text resource.", mime_type="text/plain"),
    Resource(uri=STATIC_BINARY.uri, name="static-binary", description="A static PNG image.", mime_type="image/png"),
    Resource(
        uri=WATCHED.uri, name="watched-resource", description="A resource to subscribe to.", mime_type="text/plain"
    ),
]
TEMPLATES = [
    ResourceTemplate(
        uri_template=TEMPLATE_PREFIX + "{id}" + TEMPLATE_SUFFIX,
        name="template-data",
        description="Data for an id, substituted into the URI.",
        mime_type="application/json",
    )
]


# Scenario resources-list.
async def list_resources(ctx: Context, params: PaginatedRequestParams | None) -> ListResourcesResult:
    return ListResourcesResult(resources=RESOURCES)


async def list_resource_templates(ctx: Context, params: PaginatedRequestParams | None) -> ListResourceTemplatesResult:
    return ListResourceTemplatesResult(resource_templates=TEMPLATES)


# Scenario resources-read-text.
def read_static_text() -> TextResourceContents:
    return STATIC_TEXT


# Scenario resources-read-binary.
def read_static_binary() -> BlobResourceContents:
    return STATIC_BINARY


# Scenario resources-subscribe, resources-unsubscribe.
def read_watched() -> TextResourceContents:
    return WATCHED


# Scenario resources-templates-read.
def read_template(uri: str, item_id: str) -> TextResourceContents:
    data = {"id": item_id, "templateTest": True, "data": f"Data for ID: {item_id}"}
    return TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(data, separators=(",", ":")))


STATIC_READERS: dict[str, Callable[[], TextResourceContents | BlobResourceContents]] = {
    STATIC_TEXT.uri: read_static_text,
    STATIC_BINARY.uri: read_static_binary,
    WATCHED.uri: read_watched,
}


async def read_resource(ctx: Context, params: ReadResourceRequestParams) -> ReadResourceResult:
    uri = params.uri
    if uri in STATIC_READERS:
        return ReadResourceResult(contents=[STATIC_READERS[uri]()])
    item_id = uri.removeprefix(TEMPLATE_PREFIX).removesuffix(TEMPLATE_SUFFIX)
    if uri == TEMPLATE_PREFIX + item_id + TEMPLATE_SUFFIX and item_id and "/" not in item_id:
        return ReadResourceResult(contents=[read_template(uri, item_id)])
    raise MCPError(RESOURCE_NOT_FOUND, "Resource not found", {"uri": uri})


# Scenario resources-subscribe.
async def subscribe_resource(ctx: Context, params: SubscribeRequestParams) -> EmptyResult:
    _session(ctx).subscriptions.add(params.uri)
    return EmptyResult()


# Scenario resources-unsubscribe.
async def unsubscribe_resource(ctx: Context, params: UnsubscribeRequestParams) -> EmptyResult:
    _session(ctx).subscriptions.discard(params.uri)
    return EmptyResult()


# --- prompts -----------------------------------------------------------------------------------------------------

PromptHandler = Callable[[dict[str, str]], list[PromptMessage]]


@dataclass(frozen=True)
class PromptEntry:
    definition: Prompt
    handler: PromptHandler


PROMPTS: dict[str, PromptEntry] = {}


def prompt(name: str, description: str, **arguments: str) -> Callable[[PromptHandler], PromptHandler]:
    """Register a prompt; ``arguments`` maps each (required) argument's name to its description."""

    def register(handler: PromptHandler) -> PromptHandler:
        listed = [PromptArgument(name=arg, description=text, required=True) for arg, text in arguments.items()]
        PROMPTS[name] = PromptEntry(Prompt(name=name, description=description, arguments=listed or None), handler)
        return handler

    return register


# Scenario prompts-get-simple.
@prompt("test_simple_prompt", "A simple prompt without arguments.")
def test_simple_prompt(arguments: dict[str, str]) -> list[PromptMessage]:
    return [PromptMessage(role="user", content=TextContent(text="This is a simple prompt for testing."))]


# Scenario prompts-get-with-args.
@prompt(
    "test_prompt_with_arguments",
    "A prompt with two arguments.",
    arg1="First test argument",
    arg2="Second test argument",
)
def test_prompt_with_arguments(arguments: dict[str, str]) -> list[PromptMessage]:
    text = f"Prompt with arguments: arg1='{arguments['arg1']}', arg2='{arguments['arg2']}'"
    return [PromptMessage(role="user", content=TextContent(text=text))]


# Scenario prompts-get-embedded-resource.
@prompt(
    "test_prompt_with_embedded_resource",
    "A prompt that embeds a resource.",
    resourceUri="URI of the resource to embed",
)
def test_prompt_with_embedded_resource(
    arguments: dict[str, str],
) -> list[PromptMessage]:
    resource = TextResourceContents(
        uri=arguments["resourceUri"], mime_type="text/plain", text="Embedded resource content for testing."
    )
    return [
        PromptMessage(role="user", content=EmbeddedResource(resource=resource)),
        PromptMessage(role="user", content=TextContent(text="Please process the embedded resource above.")),
    ]


# Scenario prompts-get-with-image.
@prompt("test_prompt_with_image", "A prompt with an image.")
def test_prompt_with_image(arguments: dict[str, str]) -> list[PromptMessage]:
    return [
        PromptMessage(role="user", content=ImageContent(data=PNG_BASE64, mime_type="image/png")),
        PromptMessage(role="user", content=TextContent(text="Please analyze the image above.")),
    ]


# Scenario prompts-list.
async def list_prompts(ctx: Context, params: PaginatedRequestParams | None) -> ListPromptsResult:
    return ListPromptsResult(prompts=[entry.definition for entry in PROMPTS.values()])


async def get_prompt(ctx: Context, params: GetPromptRequestParams) -> GetPromptResult:
    entry = PROMPTS.get(params.name)
    if entry is None:
        raise MCPError(INVALID_PARAMS, f"Unknown prompt: {params.name}")
    arguments = params.arguments or {}
    missing = [arg.name for arg in entry.definition.arguments or () if arg.required and arg.name not in arguments]
    if missing:
        raise MCPError(INVALID_PARAMS, f"Missing required arguments: {', '.join(missing)}")
    return GetPromptResult(description=entry.definition.description, messages=entry.handler(arguments))


# --- completion, logging -----------------------------------------------------------------------------------------

ARG1_COMPLETIONS = ["paris", "park", "party", "test", "testing", "tests"]


# Scenario completion-complete.
async def complete(ctx: Context, params: CompleteRequestParams) -> CompleteResult:
    values: list[str] = []
    ref, argument = params.ref, params.argument
    if isinstance(ref, PromptReference) and ref.name == "test_prompt_with_arguments" and argument.name == "arg1":
        values = [value for value in ARG1_COMPLETIONS if value.startswith(argument.value)]
    return CompleteResult(completion=Completion(values=values, total=len(values), has_more=False))


# Scenario logging-set-level.
async def set_logging_level(ctx: Context, params: SetLevelRequestParams) -> EmptyResult:
    _session(ctx).log_level = params.level
    return EmptyResult()


def build_server() -> Server[Any]:
    server: Server[Any] = Server(
        "mcp-conformance-server",
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe_resource,
        on_unsubscribe_resource=unsubscribe_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_logging_level,
    )
    server.middleware.append(record_negotiated_version)
    return server


# --- resumability ------------------------------------------------------------------------------------------------


class SessionScopedEventStore(EventStore):
    """An in-memory event store for SSE resumability, bounded to the last ``max_events`` events.

    The SDK names a request's stream by its JSON-RPC id alone and one store serves every session, so request 1 of
    two sessions would share a stream: each event is also filed under the session it was stored for.
    """

    def __init__(self, max_events: int = MAX_STORED_EVENTS) -> None:
        self._events: OrderedDict[int, tuple[Session | None, StreamId, JSONRPCMessage | None]] = OrderedDict()
        self._ids = itertools.count(1)
        self._max_events = max_events

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = next(self._ids)
        self._events[event_id] = (CURRENT_SESSION.get(), stream_id, message)
        while len(self._events) > self._max_events:
            self._events.popitem(last=False)
        return str(event_id)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        last = int(last_event_id) if last_event_id.isdigit() else 0
        if last not in self._events:
            return None
        session, stream_id, _ = self._events[last]
        for event_id, (other_session, other_stream, message) in list(self._events.items()):
            if event_id > last and message is not None and other_stream == stream_id and other_session is session:
                await send_callback(EventMessage(message, str(event_id)))
        return stream_id


# --- HTTP --------------------------------------------------------------------------------------------------------


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in headers if k.lower() == name), None)


class ConformanceApp:
    """ASGI wrapper in front of the SDK's app: the optional bearer check, and the session of each request.

    A request in a session is served at the version the session negotiated. The SDK decides per request, from
    its MCP-Protocol-Version header, whether a POST's SSE stream gets a priming event (an event id to resume
    from, and the ``retry`` field) and whether a tool may close it mid-call: only from 2025-11-25 on. The suite's
    server-sse-polling scenario negotiates 2025-11-25 but sends its raw ``tools/call`` with
    ``MCP-Protocol-Version: 2025-03-26``; served as is, the call gets neither, and the scenario's resumption
    checks never run. An older handshake-era header in a session that negotiated a newer version is therefore
    replaced by the negotiated one.
    """

    def __init__(self, inner: ASGIApp, require_bearer: str | None) -> None:
        self.inner = inner
        self.require_bearer = require_bearer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        if self.require_bearer is not None:
            expected = f"Bearer {self.require_bearer}".encode()
            if not hmac.compare_digest((_header(scope["headers"], b"authorization") or "").encode(), expected):
                await _send_unauthorized(send)
                return
        session_id = _header(scope["headers"], b"mcp-session-id")
        if session_id is None:
            await self._open_session(scope, receive, send)
            return
        session = SESSIONS.get(session_id)
        CURRENT_SESSION.set(session)
        if session is not None and session.protocol_version is not None:
            scope = {**scope, "headers": _at_version(scope["headers"], session.protocol_version)}
        await self.inner(scope, receive, send)
        if scope["method"] == "DELETE":
            SESSIONS.pop(session_id, None)

    async def _open_session(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = Session()
        CURRENT_SESSION.set(session)

        async def learn_session_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                session.session_id = _header(message.get("headers", ()), b"mcp-session-id")
                if session.session_id is not None:
                    SESSIONS[session.session_id] = session
            await send(message)

        await self.inner(scope, receive, learn_session_id)


def _at_version(headers: list[tuple[bytes, bytes]], negotiated: str) -> list[tuple[bytes, bytes]]:
    """The headers with an older handshake-era MCP-Protocol-Version replaced by ``negotiated``."""

    def replaced(name: bytes, value: bytes) -> tuple[bytes, bytes]:
        version = value.decode("latin-1")
        older = version in HANDSHAKE_PROTOCOL_VERSIONS and not is_version_at_least(version, negotiated)
        return (
            (name, negotiated.encode("latin-1")) if name.lower() == b"mcp-protocol-version" and older else (name, value)
        )

    return [replaced(name, value) for name, value in headers]


async def _send_unauthorized(send: Send) -> None:
    body = json.dumps({"error": "unauthorized", "error_description": "a valid bearer token is required"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_app(require_bearer: str | None = None) -> ConformanceApp:
    # Scenario dns-rebinding-protection: Host and Origin must name a loopback address (else 421 and 403).
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    inner = build_server().streamable_http_app(
        streamable_http_path=MCP_PATH,
        event_store=SessionScopedEventStore(),
        retry_interval=RETRY_INTERVAL_MS,
        transport_security=security,
    )
    return ConformanceApp(inner, require_bearer)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.conformance_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process dies")
    parser.add_argument(
        "--require-bearer", metavar="TOKEN", help="401 for requests without Authorization: Bearer TOKEN"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    sock = listening_socket("127.0.0.1", args.port)
    await serve_on(build_app(args.require_bearer), sock, MCP_PATH, exit_with_parent=args.exit_with_parent)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The scenarios exercise what the 2026-07-28 revision deprecates (logging, sampling); the SDK warns on each use.
    warnings.simplefilter("ignore", MCPDeprecationWarning)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, args)
    sys.exit(0)


if __name__ == "__main__":
    main()
