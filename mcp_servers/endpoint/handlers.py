"""What the MCP endpoint answers: its handlers, on the SDK's low-level server kernel, over the services.

Two servers share the handlers: the organization's (every tool the caller may use, named as `GET /mcp-tools`
names them: `serverLabel__tool`) and one server's (its governed tools under their own names, and its resources,
prompts and completions passed on as its client asked for them). Every tool call goes through the tool-call
services: governed by the tool's access mode, approved when it must be, recorded in the audit trail.

A call that needs approval asks the person through MCP elicitation when the client can be asked (an accepted
approval runs it, a declined one is denied, a cancelled one stays awaiting approval); otherwise the result is a
tool error that says how to approve it, after which the same call (same tool, same arguments) goes through.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, cast

import mcp_types as types
from django.conf import settings
from django.core import signing
from mcp.server.caching import CACHEABLE_METHODS, CacheableMethod, CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from core.errors import Conflict, NotFound, ValidationError
from integrations.mcp import McpClientError, McpRemoteError, RelayRefused, ServerDescription
from mcp_servers import tool_catalog
from mcp_servers.endpoint.exchange import Exchange
from mcp_servers.models import McpServer, McpSession, McpTool, ToolCall, ToolCallStatus
from mcp_servers.selectors import mcp_server_tools_page, mcp_tool_catalog_page, tool_call_target
from mcp_servers.services.mcp_sessions import mcp_session_set_log_level
from mcp_servers.services.tool_calls import (
    Caller,
    tool_call_decide,
    tool_call_delivered,
    tool_call_execute,
    tool_call_repeat,
    tool_call_request,
)
from mcp_servers.services.upstream import Unreached, describe_upstream, in_db_thread, proxy_request

logger = logging.getLogger(__name__)

_LOG_LEVELS: tuple[str, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_APPROVAL_KEY = "approval"
_STATE_SALT = "mcp_servers.endpoint.approval"
_RESERVED_META = "io.modelcontextprotocol/"
_ANSWERED_BY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}


@dataclass
class EndpointContext:
    """One request's view of the endpoint: who asks, through which endpoint, in which session, on which exchange.
    It is the kernel's `lifespan_context`, so every handler reads it from `ctx.lifespan_context`."""

    caller: Caller
    server: McpServer | None  # the per-server endpoint's server; None for the organization's endpoint
    session: McpSession | None
    exchange: Exchange
    base_url: str
    upstream: ServerDescription | None = field(default=None)


Context = ServerRequestContext[EndpointContext, Any]


# --- tools/list ---------------------------------------------------------------------------------------------------


def _cursor_in(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise MCPError(code=types.INVALID_PARAMS, message="Invalid cursor: use nextCursor as given.") from None


def _cursor_out(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    return {"nextCursor": base64.urlsafe_b64encode(name.encode()).decode("ascii").rstrip("=")}


def _tool_document(tool: McpTool) -> dict[str, Any]:
    """A server's tool as it defined it (MCP's `Tool`), under its own name."""
    document: dict[str, Any] = {"name": tool.name}
    if tool.title is not None:
        document["title"] = tool.title
    if tool.description is not None:
        document["description"] = tool.description
    schema = tool.input_schema
    document["inputSchema"] = (
        schema
        if isinstance(schema, dict) and schema.get("type") == "object"
        else tool_catalog.normalize_input_schema(schema)
    )
    if isinstance(tool.output_schema, dict) and tool.output_schema.get("type") == "object":
        document["outputSchema"] = tool.output_schema
    if isinstance(tool.annotations, dict) and tool.annotations:
        document["annotations"] = tool.annotations
    return document


async def _list_tools(ctx: Context, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
    context = ctx.lifespan_context
    after = _cursor_in(params.cursor if params is not None else None)
    limit = settings.MCP_ENDPOINT_PAGE_SIZE
    if context.server is None:
        caller = context.caller
        page, last = await in_db_thread(
            functools.partial(
                mcp_tool_catalog_page,
                organization=caller.organization,
                user_id=caller.user.pk,
                is_admin=caller.is_admin,
                after=after,
                limit=limit,
            )
        )
        return _complete(ctx, {"tools": tool_catalog.render(page, "mcp"), **_cursor_out(last)})
    tools, last = await in_db_thread(
        functools.partial(mcp_server_tools_page, server=context.server, after=after, limit=limit)
    )
    return _complete(ctx, {"tools": [_tool_document(tool) for tool in tools], **_cursor_out(last)})


def _complete(ctx: Context, result: dict[str, Any]) -> dict[str, Any]:
    """A result as the 2026 protocol wants it too (`resultType`; the cache hints come from the server's table)."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        result.setdefault("resultType", "complete")
    return result


# --- tools/call ---------------------------------------------------------------------------------------------------


def _text_error(text: str, **meta: Any) -> dict[str, Any]:
    """A tool error: a result the model reads (and can tell the person about), not a protocol error."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if meta:
        result["_meta"] = {"mcpConnectors": meta}
    return result


async def _call_tool(ctx: Context, params: types.CallToolRequestParams) -> dict[str, Any] | types.InputRequiredResult:
    result = await _governed_call(ctx, params)
    return _complete(ctx, result) if isinstance(result, dict) else result


async def _governed_call(
    ctx: Context, params: types.CallToolRequestParams
) -> dict[str, Any] | types.InputRequiredResult:
    context = ctx.lifespan_context
    caller = context.caller
    arguments = dict(params.arguments or {})
    target = functools.partial(
        tool_call_target, organization=caller.organization, user_id=caller.user.pk, is_admin=caller.is_admin
    )
    try:
        if context.server is None:
            tool = await in_db_thread(functools.partial(target, exported_name=params.name))
        else:
            tool = await in_db_thread(
                functools.partial(target, server_id=str(context.server.pk), tool_name=params.name)
            )
    except NotFound:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}") from None
    if params.request_state is not None:
        return await _resume_approval(ctx, tool, params)
    previous = await in_db_thread(functools.partial(tool_call_repeat, caller=caller, tool=tool, arguments=arguments))
    if previous is not None:
        return await _again(ctx, previous)
    try:
        call = await in_db_thread(functools.partial(tool_call_request, caller=caller, tool=tool, arguments=arguments))
    except (NotFound, ValidationError) as exc:
        return _text_error(str(exc.detail))
    if call.status == ToolCallStatus.AWAITING_APPROVAL:
        return await _ask_approval(ctx, call)
    if call.status != ToolCallStatus.RUNNING:
        return _outcome(context, call)
    return await _run(ctx, call)


async def _run(ctx: Context, call: ToolCall) -> dict[str, Any]:
    exchange = ctx.lifespan_context.exchange
    progress = exchange.progress if exchange.progress_token is not None else None
    call = await tool_call_execute(call=call, relay=ClientRelay(ctx), progress=progress)
    return _outcome(ctx.lifespan_context, call)


def _outcome(context: EndpointContext, call: ToolCall) -> dict[str, Any]:
    """A finished (or still pending) call as the tool's result: the server's own result when it ran."""
    if call.status == ToolCallStatus.COMPLETED and call.result:
        result: dict[str, Any] = json.loads(call.result)
        return _without_protocol_meta(result)
    if call.status == ToolCallStatus.AWAITING_APPROVAL:
        return _pending(context, call)
    text = call.error_message or f"The call is {call.status}."
    if call.status == ToolCallStatus.DENIED:
        text = "The call was denied: it did not run."
    if call.status == ToolCallStatus.AUTH_REQUIRED and call.auth_url:
        text = f"{text} Authorize at {call.auth_url}"
    if call.status == ToolCallStatus.RUNNING:
        text = "The call is still running; call the tool again with the same arguments for its result."
    return _text_error(text, callId=str(call.pk), status=call.status, code=call.error_code)


def _without_protocol_meta(result: dict[str, Any]) -> dict[str, Any]:
    """The server's result without the `_meta` keys the protocol reserves (`io.modelcontextprotocol/...`, such as the
    2026 protocol's `serverInfo`): they were about the server's connection with the service, not about this one."""
    meta = result.get("_meta")
    if isinstance(meta, dict) and any(key.startswith(_RESERVED_META) for key in meta):
        kept = {key: value for key, value in meta.items() if not key.startswith(_RESERVED_META)}
        result = {key: value for key, value in result.items() if key != "_meta"}
        if kept:
            result["_meta"] = kept
    return result


def _pending(context: EndpointContext, call: ToolCall) -> dict[str, Any]:
    organization = context.caller.organization
    approve = f"{context.base_url}/api/public/organizations/{organization.pk}/tool-calls/{call.pk}/approve"
    admin = f"{context.base_url}/admin/mcp_servers/toolcall/{call.pk}/change/"
    expires = call.expires_at.isoformat().replace("+00:00", "Z") if call.expires_at else "its expiry"
    text = (
        f"This call of '{call.tool_name}' needs approval before it runs. It is recorded as call {call.pk}, awaiting "
        f"approval until {expires}. Approve it in the admin ({admin}) or with POST {approve} (the member it is for, "
        "or an organization admin), then call the tool again with the same arguments."
    )
    return _text_error(text, callId=str(call.pk), status=call.status, approveUrl=approve)


def _can_elicit(ctx: Context) -> bool:
    capabilities = ctx.session.client_capabilities
    return capabilities is not None and capabilities.elicitation is not None


def _approval_question(call: ToolCall) -> tuple[str, dict[str, Any]]:
    arguments = json.loads(call.arguments)
    message = (
        f"Allow the tool '{call.tool_name}' of '{call.server_label}' to run with these arguments?\n"
        f"{json.dumps(arguments, indent=2, ensure_ascii=False)}"
    )
    return message, {"type": "object", "properties": {}}


async def _ask_approval(ctx: Context, call: ToolCall) -> dict[str, Any] | types.InputRequiredResult:
    """Ask the person, when the client can be asked: over the event stream (handshake era), or as an
    `input_required` result the client answers by calling again (2026 protocol)."""
    context = ctx.lifespan_context
    if not _can_elicit(ctx):
        return _pending(context, call)
    message, schema = _approval_question(call)
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        question = types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))
        state = signing.dumps({"call": str(call.pk), "user": context.caller.user.pk}, salt=_STATE_SALT)
        return types.InputRequiredResult(input_requests={_APPROVAL_KEY: question}, request_state=state)
    if not context.exchange.can_send_request:
        return _pending(context, call)
    try:
        answer = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    except MCPError:
        return _pending(context, call)  # not answered in time, or refused: it stays awaiting approval
    return await _decided(ctx, call, answer.action)


async def _decided(ctx: Context, call: ToolCall, action: str) -> dict[str, Any]:
    context = ctx.lifespan_context
    if action not in ("accept", "decline"):
        return _pending(context, call)  # cancelled: the person did not decide
    decide = functools.partial(tool_call_decide, call=call, user=context.caller.user, is_admin=context.caller.is_admin)
    try:
        call = await in_db_thread(functools.partial(decide, approve=action == "accept"))
    except (Conflict, NotFound) as exc:
        return _text_error(str(exc.detail), callId=str(call.pk), **exc.extra)
    await in_db_thread(functools.partial(tool_call_delivered, call=call))
    if call.status != ToolCallStatus.RUNNING:
        return _outcome(context, call)
    return await _run(ctx, call)


async def _resume_approval(
    ctx: Context, tool: McpTool, params: types.CallToolRequestParams
) -> dict[str, Any] | types.InputRequiredResult:
    """The 2026 protocol's second round: the client answers the approval question with the state it was given."""
    context = ctx.lifespan_context
    try:
        state = signing.loads(params.request_state or "", salt=_STATE_SALT, max_age=settings.MCP_CALL_APPROVAL_SECONDS)
    except signing.BadSignature:
        raise MCPError(code=types.INVALID_PARAMS, message="Invalid or expired requestState.") from None
    if state.get("user") != context.caller.user.pk:
        raise MCPError(code=types.INVALID_PARAMS, message="Invalid or expired requestState.")
    call = await in_db_thread(
        lambda: ToolCall.objects.filter(pk=state.get("call"), tool=tool, requested_by=context.caller.user).first()
    )
    if call is None:
        raise MCPError(code=types.INVALID_PARAMS, message="Invalid or expired requestState.")
    answer = (params.input_responses or {}).get(_APPROVAL_KEY)
    if not isinstance(answer, types.ElicitResult):
        return await _ask_approval(ctx, call)
    if call.status != ToolCallStatus.AWAITING_APPROVAL:
        return await _again(ctx, call)
    return await _decided(ctx, call, answer.action)


async def _again(ctx: Context, call: ToolCall) -> dict[str, Any] | types.InputRequiredResult:
    """A call made before, made again: ask again while it awaits approval; once decided, its outcome, once."""
    context = ctx.lifespan_context
    if call.status == ToolCallStatus.AWAITING_APPROVAL:
        return await _ask_approval(ctx, call)
    if call.status == ToolCallStatus.RUNNING:
        call = await in_db_thread(_wait_for_end, call)
        if call.status == ToolCallStatus.RUNNING:
            return _outcome(context, call)
    await in_db_thread(functools.partial(tool_call_delivered, call=call))
    return _outcome(context, call)


def _wait_for_end(call: ToolCall) -> ToolCall:
    """A call approved elsewhere (the API, the admin) that still runs: its end, within the call's bound."""
    deadline = time.monotonic() + settings.MCP_CALL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        call.refresh_from_db()
        if call.status != ToolCallStatus.RUNNING:
            break
        time.sleep(0.25)
    return call


# --- What the upstream asks the client, and logging ---------------------------------------------------------------


class ClientRelay:
    """The upstream server's requests and log messages, during a call, to the MCP client that made the call (an
    `integrations.mcp.Relay`). A request the client cannot answer (it did not declare the capability, or it cannot
    be asked on this exchange) is refused to the server."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._exchange = ctx.lifespan_context.exchange

    @property
    def handshake_era(self) -> bool:
        return self._ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS

    @property
    def log_level(self) -> str | None:
        if not self._exchange.can_stream:
            return None  # a JSON answer carries the response alone
        if not self.handshake_era:  # 2026: the request says which levels it wants, if any
            meta = (self._ctx.params or {}).get("_meta")
            level = meta.get(LOG_LEVEL_META_KEY) if isinstance(meta, dict) else None
            return level if level in _LOG_LEVELS else None
        session = self._ctx.lifespan_context.session
        requested = session.log_level if session is not None else None
        return requested if requested in _LOG_LEVELS else "debug"  # every level until the client sets one

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        capability = _ANSWERED_BY.get(method)
        declared = self._ctx.session.client_capabilities
        if capability is None or declared is None or getattr(declared, capability, None) is None:
            raise RelayRefused(types.METHOD_NOT_FOUND, f"The MCP client does not support {method}.")
        if not self._exchange.can_send_request:
            raise RelayRefused(types.INVALID_REQUEST, f"The MCP client cannot be asked {method} on this connection.")
        try:
            return await self._exchange.send_raw_request(method, params)
        except MCPError as exc:
            raise RelayRefused(exc.error.code, exc.error.message) from None

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        if method == "notifications/message" and not self._wanted(str(params.get("level", "info"))):
            return
        await self._exchange.notify(method, params)

    def _wanted(self, level: str) -> bool:
        wanted = self.log_level
        return wanted is not None and level in _LOG_LEVELS and _LOG_LEVELS.index(level) >= _LOG_LEVELS.index(wanted)


async def _set_logging_level(ctx: Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
    session = ctx.lifespan_context.session
    if session is not None:
        await in_db_thread(functools.partial(mcp_session_set_log_level, session=session, level=params.level))
    return types.EmptyResult()


# --- The per-server endpoint's pass-through -----------------------------------------------------------------------


def _passed_on(method: str) -> Any:
    async def handler(ctx: Context, params: Any) -> dict[str, Any]:
        context = ctx.lifespan_context
        assert context.server is not None  # registered on the per-server endpoint only
        document = params.model_dump(mode="json", by_alias=True, exclude_none=True) if params is not None else {}
        document.pop("_meta", None)
        try:
            result = await proxy_request(server=context.server, method=method, params=document, relay=ClientRelay(ctx))
            return _complete(ctx, _without_protocol_meta(result))
        except McpRemoteError as exc:
            raise MCPError(code=exc.code, message=exc.remote_message, data=exc.data) from None
        except Unreached as exc:
            detail = f"{exc.message} Authorize at {exc.auth_url}" if exc.auth_url else exc.message
            raise MCPError(code=types.INTERNAL_ERROR, message=detail) from None
        except McpClientError as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from None

    return handler


def proxy_capabilities(upstream: ServerDescription | None, *, modern: bool) -> types.ServerCapabilities:
    """The per-server endpoint's capabilities: tools and logging always, and what the server offers of resources,
    prompts and completions (without change notifications, which the endpoint does not stream)."""
    offered = upstream.capabilities if upstream is not None else {}
    resources = offered.get("resources")
    return types.ServerCapabilities(
        tools=types.ToolsCapability(list_changed=False),
        logging=None if modern else types.LoggingCapability(),
        resources=(
            types.ResourcesCapability(subscribe=bool(resources.get("subscribe")) and not modern, list_changed=False)
            if isinstance(resources, dict)
            else None
        ),
        prompts=types.PromptsCapability(list_changed=False) if isinstance(offered.get("prompts"), dict) else None,
        completions=types.CompletionsCapability() if isinstance(offered.get("completions"), dict) else None,
    )


def proxy_init_options(server: McpServer, upstream: ServerDescription | None) -> InitializationOptions:
    info = (upstream.server_info if upstream is not None else None) or {}
    return InitializationOptions(
        server_name=server.server_label,
        server_version=str(info.get("version") or "1"),
        title=server.display_name,
        capabilities=proxy_capabilities(upstream, modern=False),
        instructions=upstream.instructions if upstream is not None else None,
    )


async def _discover_proxy(ctx: Context, params: types.RequestParams | None) -> types.DiscoverResult:
    context = ctx.lifespan_context
    assert context.server is not None
    if context.upstream is None:
        context.upstream = await describe_upstream(context.server)
    return types.DiscoverResult(
        supported_versions=list(MODERN_PROTOCOL_VERSIONS),
        capabilities=proxy_capabilities(context.upstream, modern=True),
        instructions=context.upstream.instructions if context.upstream is not None else None,
    )


def _server(name: str, *, proxy: bool) -> Server[EndpointContext]:
    handlers: dict[str, Any] = {
        "on_list_tools": _list_tools,
        "on_call_tool": _call_tool,
        "on_set_logging_level": _set_logging_level,
    }
    if proxy:
        handlers.update(
            on_list_resources=_passed_on("resources/list"),
            on_list_resource_templates=_passed_on("resources/templates/list"),
            on_read_resource=_passed_on("resources/read"),
            on_subscribe_resource=_passed_on("resources/subscribe"),
            on_unsubscribe_resource=_passed_on("resources/unsubscribe"),
            on_list_prompts=_passed_on("prompts/list"),
            on_get_prompt=_passed_on("prompts/get"),
            on_completion=_passed_on("completion/complete"),
        )
    with warnings.catch_warnings():  # logging/setLevel is deprecated at 2026-07-28, and served to older clients
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server: Server[EndpointContext] = Server(
            name,
            version="1",
            title="MCP connectors",
            description="The organization's governed MCP tools, through MCP connectors.",
            # Every answer is for its caller, and may change at the next sync or access change.
            cache_hints=dict.fromkeys(cast(frozenset[CacheableMethod], CACHEABLE_METHODS), CacheHint(ttl_ms=0)),
            **handlers,
        )
    server.middleware = []  # the SDK's OpenTelemetry span per message: nothing here exports them
    if proxy:
        server.add_request_handler("server/discover", types.RequestParams, _discover_proxy)
    return server


ORGANIZATION_SERVER = _server("mcp-connectors", proxy=False)
SERVER_PROXY = _server("mcp-connectors-server", proxy=True)
