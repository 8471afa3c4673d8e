"""The MCP endpoints over HTTP (Streamable HTTP): `/organizations/{orgId}/mcp` and `/mcp-servers/{id}/mcp`.

The request is authenticated and the organization resolved as for the REST API (`OrganizationApi`: a member's API
key, the per-key rate limit, 404 for an organization the key may not use); a bad key is a 401 whose
`WWW-Authenticate` names the endpoint's protected-resource metadata, as the MCP authorization spec asks of a resource
server. An `Origin` other than the service's own (or one listed in MCP_ENDPOINT_ALLOWED_ORIGINS) is refused with
403, and Django refuses a `Host` outside ALLOWED_HOSTS: the DNS-rebinding protection the spec requires.

Both protocol eras are served, as the SDK's own server negotiates them:
- the handshake era (2025-03-26 to 2025-11-25): `initialize` opens a session (`Mcp-Session-Id`, a row, so any
  process serves any request of it); the endpoint may ask the client (an elicitation, a sampling request) on a
  request's event stream, and the client's answer, a POST of its own, finds the waiting request through the
  mailbox, as does a `notifications/cancelled`;
- the 2026 protocol (`MCP-Protocol-Version: 2026-07-28`): every request carries its own envelope; no session, and
  the endpoint asks the client with `input_required` results instead.

A GET (a stream for messages unrelated to any request) is answered 405: the endpoint sends nothing unprompted
(tool-list changes show on the next `tools/list`), and a web process is never held by an idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, modern_error_data
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
)
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError as PydanticValidationError
from rest_framework.request import Request

from core import logging as log_context
from core.errors import Forbidden, NotFound
from integrations.loop import background_loop
from mcp_servers.endpoint.exchange import SSE_PING, Exchange, Outgoing, cancel_key, reply_key, sse_event
from mcp_servers.endpoint.handlers import (
    ORGANIZATION_SERVER,
    SERVER_PROXY,
    EndpointContext,
    proxy_init_options,
)
from mcp_servers.endpoint.mailbox import mailbox
from mcp_servers.models import McpServer, McpSession, ToolCallChannel
from mcp_servers.selectors import servers_usable_by
from mcp_servers.services.mcp_sessions import mcp_session_close, mcp_session_find, mcp_session_open
from mcp_servers.services.tool_calls import Caller
from mcp_servers.services.upstream import describe_upstream, in_db_thread
from organizations.api import OrganizationApi
from organizations.models import ApiKey

logger = logging.getLogger(__name__)

SESSION_HEADER = "Mcp-Session-Id"
# How long the response waits for the handler's first message before it commits to an event stream (and pings):
# a request answered sooner is plain JSON.
_FIRST_MESSAGE_SECONDS = 10.0
_PING_SECONDS = 15.0
_SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def _jsonrpc_error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _json(message: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse(message, status=status, headers=headers, json_dumps_params={"separators": (",", ":")})


class McpEndpointApi(OrganizationApi):
    """The organization's MCP endpoint: every tool the caller may use, under the catalog's names."""

    member_access = True
    proxy = False
    schema = None  # JSON-RPC over Streamable HTTP, not a REST resource: not in the OpenAPI document

    # --- checks before anything else ------------------------------------------------------------------------------

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(request, origin):
            raise Forbidden("This origin may not use the MCP endpoint.")
        super().initial(request, *args, **kwargs)

    @staticmethod
    def _origin_allowed(request: Request, origin: str) -> bool:
        own = {f"{request.scheme}://{request.get_host()}".lower(), _origin_of(settings.PUBLIC_BASE_URL)}
        allowed = own | {_origin_of(entry) for entry in settings.MCP_ENDPOINT_ALLOWED_ORIGINS}
        return origin.lower().rstrip("/") in allowed

    def get_authenticate_header(self, request: Request) -> str:
        path = request.path.removeprefix("/")
        metadata = f"{settings.PUBLIC_BASE_URL}/.well-known/oauth-protected-resource/{path}"
        return f'Bearer realm="mcp", resource_metadata="{metadata}"'

    def _server(self, kwargs: dict[str, Any]) -> McpServer | None:
        return None

    # --- HTTP methods --------------------------------------------------------------------------------------------

    def get(self, request: Request, **kwargs: Any) -> HttpResponse:
        return HttpResponse(status=405, headers={"Allow": "POST, DELETE"})

    def delete(self, request: Request, **kwargs: Any) -> HttpResponse:
        server = self._server(kwargs)
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            return _json(_jsonrpc_error(None, types.INVALID_REQUEST, f"Missing {SESSION_HEADER}."), status=400)
        session = mcp_session_find(session_id=session_id, api_key=self._api_key(request), server_id=_id(server))
        if session is None:
            return _json(_jsonrpc_error(None, types.INVALID_REQUEST, "Session not found."), status=404)
        mcp_session_close(session=session)
        return HttpResponse(status=200)

    def post(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        server = self._server(kwargs)
        accept = request.headers.get("Accept", "")
        accepts_json = "application/json" in accept or "*/*" in accept
        accepts_sse = "text/event-stream" in accept
        if not (accepts_json or accepts_sse):
            return _json(_jsonrpc_error(None, types.INVALID_REQUEST, "Accept application/json."), status=406)
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError):
            return _json(_jsonrpc_error(None, types.PARSE_ERROR, "Parse error"), status=400)
        if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
            return _json(_jsonrpc_error(None, types.INVALID_REQUEST, "Send one JSON-RPC 2.0 message."), status=400)
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        modern = version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS
        api_key = self._api_key(request)
        session: McpSession | None = None
        if not modern and body.get("method") != "initialize":
            session_id = request.headers.get(SESSION_HEADER)
            if not session_id:
                message = f"Missing {SESSION_HEADER}: send initialize first (or a 2026-07-28 request envelope)."
                return _json(_jsonrpc_error(body.get("id"), types.INVALID_REQUEST, message), status=400)
            session = mcp_session_find(session_id=session_id, api_key=api_key, server_id=_id(server))
            if session is None:
                return _json(_jsonrpc_error(body.get("id"), types.INVALID_REQUEST, "Session not found."), status=404)
        if "method" not in body:  # the client's answer to a request of ours
            if session is not None and "id" in body:
                mailbox.deliver(reply_key(session.id, body["id"]), body)
            return HttpResponse(status=202)
        if "id" not in body:  # a notification
            params = body.get("params")
            if session is not None and body["method"] == "notifications/cancelled" and isinstance(params, dict):
                request_id = params.get("requestId")
                if isinstance(request_id, str | int):
                    mailbox.deliver(cancel_key(session.id, request_id), {})
            return HttpResponse(status=202)
        caller = Caller(
            organization=self.organization,
            user=self.user,
            api_key=api_key,
            is_admin=self.is_admin,
            channel=ToolCallChannel.MCP,
        )
        if modern:
            route = classify_inbound_request(body, headers={k.lower(): v for k, v in request.headers.items()})
            if isinstance(route, InboundLadderRejection):
                status = ERROR_CODE_HTTP_STATUS.get(route.code, 400)
                return _json(_jsonrpc_error(body["id"], route.code, route.message, route.data), status=status)
            connection = Connection.from_envelope(route.protocol_version, route.client_info, route.client_capabilities)
        else:
            connection = self._handshake_connection(session)
        exchange = Exchange(
            request_id=body["id"],
            session_id=session.id if session is not None else None,
            can_stream=accepts_sse,
            progress_token=progress_token_from_params(body.get("params")),
            answer_timeout=settings.MCP_ENDPOINT_ANSWER_SECONDS,
        )
        if not modern:
            connection.outbound = exchange  # messages of the session, on the one stream the client reads now
        context = EndpointContext(
            caller=caller, server=server, session=session, exchange=exchange, base_url=settings.PUBLIC_BASE_URL
        )
        job = _serve(context, connection, body, modern=modern, logs=log_context.current())
        running = background_loop.submit(job)
        return _answer(exchange, running, modern=modern, streams=accepts_sse)

    # --- helpers -------------------------------------------------------------------------------------------------

    @staticmethod
    def _api_key(request: Request) -> ApiKey:
        assert isinstance(request.auth, ApiKey)  # authenticated by OrganizationApi
        return request.auth

    @staticmethod
    def _handshake_connection(session: McpSession | None) -> Connection:
        if session is None:  # initialize
            return Connection.for_loop(_NoChannel())
        params = types.InitializeRequestParams.model_validate(session.client_params)
        connection = Connection(
            _NoChannel(), protocol_version=session.protocol_version, session_id=session.id, client_params=params
        )
        connection.initialized.set()
        return connection


class McpServerEndpointApi(McpEndpointApi):
    """One server's MCP endpoint: its governed tools under their own names, its resources, prompts and
    completions passed on (any member who may use the server)."""

    proxy = True

    def _server(self, kwargs: dict[str, Any]) -> McpServer:
        server_id = kwargs.get("server_id", "")
        usable = servers_usable_by(organization=self.organization, user_id=self.user.pk, is_admin=self.is_admin)
        try:
            server = usable.select_related("oauth").filter(pk=server_id).first()
        except Exception:  # a malformed id: no such server
            server = None
        if server is None:
            raise NotFound("MCP server not found.")
        return server


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _id(server: McpServer | None) -> Any:
    return server.pk if server is not None else None


class _NoChannel:
    """No stream for messages unrelated to a request (the endpoint serves no GET): they are dropped."""

    async def send_raw_request(self, method: str, params: Any, opts: Any = None) -> dict[str, Any]:
        raise MCPError(code=types.INVALID_REQUEST, message="The endpoint has no stream to ask the client on.")

    async def notify(self, method: str, params: Any, opts: Any = None) -> None:
        return None


async def _serve(
    context: EndpointContext, connection: Connection, body: dict[str, Any], *, modern: bool, logs: dict[str, str]
) -> None:
    """Run one request through the SDK's server kernel, in the background loop, and hand its answer to the
    exchange. A handshake-era tools/call may be cancelled by the client meanwhile (no answer then)."""
    exchange = context.exchange
    method, params = body["method"], body.get("params")
    with log_context.scope(**logs):
        server = SERVER_PROXY if context.server is not None else ORGANIZATION_SERVER
        init_options = None
        if context.server is not None and method == "initialize":
            context.upstream = await describe_upstream(context.server)
            init_options = proxy_init_options(context.server, context.upstream)
        runner = ServerRunner(server, connection, context, init_options=init_options)
        try:
            if method == "tools/call" and exchange.session_id is not None:
                result = await _cancellable(runner, exchange, method, params)
                if result is None:
                    exchange.finish(None)  # cancelled: the client expects no answer
                    return
            else:
                result = await runner.on_request(exchange, method, params)
            if method == "initialize" and not modern:
                session = await _open_session(context, connection)
                exchange.session_id = session.id
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": body["id"], "result": result}
        except MCPError as exc:
            message = _jsonrpc_error(body["id"], exc.error.code, exc.error.message, exc.error.data)
        except PydanticValidationError:
            message = _jsonrpc_error(body["id"], types.INVALID_PARAMS, "Invalid request parameters")
        except Exception as exc:
            logger.exception("mcp endpoint: %s failed", method)
            error = modern_error_data(exc)
            message = _jsonrpc_error(body["id"], error.code, error.message)
        exchange.finish(message)


async def _cancellable(runner: ServerRunner[EndpointContext], exchange: Exchange, method: str, params: Any) -> Any:
    """The request's result, or None when the client cancelled it (the task is cancelled, and so the call)."""
    assert exchange.session_id is not None
    async with mailbox.expecting(cancel_key(exchange.session_id, exchange.request_id)) as cancelled:
        task = asyncio.ensure_future(runner.on_request(exchange, method, params))
        done, _ = await asyncio.wait({task, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task  # the call records itself CANCELLED
        return None


async def _open_session(context: EndpointContext, connection: Connection) -> McpSession:
    params = connection.client_params
    document = params.model_dump(mode="json", by_alias=True, exclude_none=True) if params is not None else {}
    caller = context.caller
    api_key = caller.api_key
    assert api_key is not None  # the endpoint is used with API keys only
    return await in_db_thread(
        lambda: mcp_session_open(
            organization=caller.organization,
            api_key=api_key,
            server_id=_id(context.server),
            protocol_version=connection.protocol_version,
            client_params=document,
        )
    )


def _answer(exchange: Exchange, running: Any, *, modern: bool, streams: bool) -> HttpResponseBase:
    """The HTTP answer: the response as JSON when it comes first, else an event stream of everything until it."""
    window = _FIRST_MESSAGE_SECONDS if streams else settings.MCP_CALL_TIMEOUT_SECONDS + 60
    first = exchange.next(window)
    while first is not None and not first.final and not streams:
        first = exchange.next(window)  # a JSON answer carries the response alone
    if first is not None and first.final:
        headers = {SESSION_HEADER: exchange.session_id} if exchange.session_id else None
        if first.message is None:
            return HttpResponse(status=202)
        status = 200
        error = first.message.get("error")
        if modern and isinstance(error, dict):
            status = ERROR_CODE_HTTP_STATUS.get(error.get("code", 0), 200)
        return _json(first.message, status=status, headers=headers)
    if first is None and not streams:
        running.cancel()
        return _json(_jsonrpc_error(exchange.request_id, types.INTERNAL_ERROR, "No answer in time."), status=504)
    response = StreamingHttpResponse(_stream(exchange, first, running), content_type="text/event-stream")
    for name, value in _SSE_HEADERS.items():
        response[name] = value
    return response


def _stream(exchange: Exchange, first: Outgoing | None, running: Any) -> Iterator[bytes]:
    finished = False
    try:
        yield sse_event(first.message) if first is not None and first.message is not None else SSE_PING
        while True:
            item = exchange.next(_PING_SECONDS)
            if item is None:
                yield SSE_PING
                continue
            if item.message is not None:
                yield sse_event(item.message)
            if item.final:
                finished = True
                return
    finally:
        if not finished:
            running.cancel()  # the client went away: the request (and its call at the server) is cancelled
