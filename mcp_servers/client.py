"""List the tools of a remote MCP server, with hard bounds and user-facing errors.

This is the only module of the project that talks to the MCP SDK. It detects the protocol and transport with
raw probes, as the SDK's own "auto" negotiation does: ``server/discover`` first (a 2026-era server answers it
and is then listed over the stateless protocol), else ``initialize`` (Streamable HTTP of the handshake era, or
legacy HTTP+SSE). It lists every tool page through the SDK's ``Client`` and turns every failure into one of
the ``McpClientError`` subclasses below, whose ``str()`` is a plain sentence that is safe to show to users and
to log: it never contains header values, tokens or response bodies.

Bounds, all taken from ``SyncLimits``:

* time: the whole call (probe, connect, every page, session teardown) runs under ``anyio.fail_after``;
  ``connect_seconds`` / ``read_seconds`` additionally bound each connection attempt and each read, and
  ``read_seconds`` also bounds how long one JSON-RPC request waits for its answer;
* size: every HTTP response body is counted as it streams in. A plain body (JSON) may not exceed
  ``max_response_bytes`` in total; an event stream may not exceed it per event (the SDK also enforces this for
  Streamable HTTP through ``max_sse_event_size``; for legacy SSE the SDK has a fixed 1 MiB per-event cap that
  cannot be raised, so there the effective bound is ``min(1 MiB, max_response_bytes)``). Bytes are counted as
  received: ``Accept-Encoding: identity`` is requested (unless the static headers say otherwise) so that this is
  the decoded size too; a server that compresses anyway is only bounded on the compressed size. The probe
  reads at most 64 KiB of its response body;
* volume: at most ``max_pages`` tools/list pages and ``max_tools`` tools.

Not bounded here: the memory the SDK's pydantic models take for a response that is within the byte bound, and
the number of response headers (httpcore2 has its own limits on those).

Every HTTP request (probe, SDK traffic, session DELETE) goes through the single ``httpx2.AsyncClient`` made by
``http_client_factory`` for the call, so a guarded factory sees all of them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

import anyio
import httpx2
import mcp_types
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import stream_within_origin
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from core import exception_groups
from mcp_servers import outbound

__all__ = [
    "AuthChallenge",
    "HttpClientFactory",
    "McpAuthRequired",
    "McpClientError",
    "McpHeadersRejected",
    "McpLimitExceeded",
    "McpProtocolError",
    "McpTimeout",
    "McpUnreachable",
    "RemoteTool",
    "SyncLimits",
    "ToolListing",
    "TransportType",
    "alist_remote_tools",
    "list_remote_tools",
    "parse_bearer_challenge",
]

TransportType = Literal["STREAMABLE_HTTP", "SSE"]

HttpClientFactory = Callable[..., httpx2.AsyncClient]
"""Builds the call's HTTP client; called as ``factory(headers=..., timeout=...)``, like the SDK's
``McpHttpClientFactory``. The client must not follow redirects itself (the SDK follows same-origin ones)."""

_T = TypeVar("_T")

_PROBE_BODY_LIMIT: Final = 64 * 1024
_PROBE_ID: Final = "probe"
_AUTH_STATUSES: Final = frozenset({401, 403})
_GATEWAY_STATUSES: Final = frozenset({502, 503, 504})
_NOT_AN_MCP_POST_STATUSES: Final = frozenset({400, 404, 405})
# Answers to server/discover that may only mean "not this request": a handshake-era server, or an SSE endpoint.
_NOT_UNDERSTOOD_STATUSES: Final = frozenset({400, 404, 405, 406, 415, 422, 501})
# Any blank line ends an SSE event; with CR, LF and CRLF line ends these three pairs catch every blank line.
_EVENT_BOUNDARIES: Final = (b"\n\n", b"\r\r", b"\n\r")


_DISCOVER: Final = "server/discover"
_PROBE_CLIENT_INFO: Final = {"name": "mcp-tool-sync-probe", "version": "1"}
_PROBE_HEADERS: Final = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@dataclass(frozen=True)
class _Probe:
    transport: TransportType
    discovered: mcp_types.DiscoverResult | None  # set when the server speaks a modern (stateless) version
    sessions: tuple[str, ...]  # sessions the probes opened, released while the tools are listed


def _modern_version(discovered: mcp_types.DiscoverResult) -> str:
    """The newest modern version both sides support (the probe only keeps results that offer one)."""
    return [v for v in MODERN_PROTOCOL_VERSIONS if v in discovered.supported_versions][-1]


@dataclass(frozen=True)
class SyncLimits:
    total_seconds: float = 30.0
    connect_seconds: float = 5.0
    read_seconds: float = 15.0
    max_pages: int = 100
    max_tools: int = 10_000
    max_response_bytes: int = 16 * 1024 * 1024


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
    resource_metadata_url: str | None
    scope: str | None
    error: str | None


class McpClientError(Exception):
    """Base class; ``str(exc)`` is a plain sentence safe to show to users and to log."""

    transient: bool = False

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


def list_remote_tools(
    url: str,
    headers: Mapping[str, str],
    *,
    preferred_transport: TransportType | None = None,
    limits: SyncLimits = SyncLimits(),
    http_client_factory: HttpClientFactory | None = None,
) -> ToolListing:
    """Blocking ``alist_remote_tools`` for Celery tasks; must not be called from a running event loop."""
    return anyio.run(
        functools.partial(
            alist_remote_tools,
            url,
            headers,
            preferred_transport=preferred_transport,
            limits=limits,
            http_client_factory=http_client_factory,
        )
    )


async def alist_remote_tools(
    url: str,
    headers: Mapping[str, str],
    *,
    preferred_transport: TransportType | None = None,
    limits: SyncLimits = SyncLimits(),
    http_client_factory: HttpClientFactory | None = None,
) -> ToolListing:
    """Detect the transport of the MCP server at ``url`` and list all its tools.

    ``headers`` are sent on every request. With ``preferred_transport="SSE"`` legacy SSE is tried first and
    the probe only if that fails for a reason other than auth, headers or a bound; otherwise the probe decides.

    Raises:
        McpClientError: one of its subclasses, for every failure (SDK and httpx2 exceptions never escape;
            cancellation from the caller and BaseExceptions such as KeyboardInterrupt do).
    """
    lister = _ToolLister(url, headers, limits, http_client_factory or _default_client_factory())
    error: McpClientError | None = None
    deadline: anyio.CancelScope | None = None
    try:
        with anyio.fail_after(limits.total_seconds) as deadline:
            return await lister.run(preferred_transport)
    except BaseException as exc:
        error = lister.translate(exc)
        timed_out = deadline is not None and deadline.cancel_called
        if error is None and not (timed_out and isinstance(exc, TimeoutError)):
            raise
        if timed_out:
            # Whatever the cancellation turned into on its way out (a closed stream, say), the cause is the bound.
            error = McpTimeout(
                f"The MCP server at {lister.host} did not finish listing its tools "
                f"within {limits.total_seconds:g} seconds."
            )
        assert error is not None
    # Raised outside the except block, and detached, so no SDK or httpx2 exception rides along with it.
    error.__cause__ = error.__context__ = None
    raise error


def _default_client_factory() -> HttpClientFactory:
    # Every request goes through the guarded client; the allowlist is read when the client is made.
    return outbound.guarded_client_factory()


def _describe_host(url: httpx2.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port is not None else host


_AUTH_PARAM_RE: Final = re.compile(r"""\s*,?\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))?""")


def parse_bearer_challenge(values: list[str]) -> AuthChallenge | None:
    """Parse the Bearer challenge out of ``WWW-Authenticate`` header values, or None if there is none.

    Tolerates several challenges in one value, quoted or bare parameter values and any casing of names.
    """
    for value in values:
        params: dict[str, str] | None = None
        pos = 0
        while pos < len(value):
            match = _AUTH_PARAM_RE.match(value, pos)
            if match is None or match.end() == pos:
                break
            pos = match.end()
            name, raw = match.group(1), match.group(2)
            if raw is None:
                # A bare token starts the next challenge (or is a token68, which Bearer does not use).
                if params is not None:
                    break
                if name.lower() == "bearer":
                    params = {}
                continue
            if params is not None:
                if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params.setdefault(name.lower(), raw)
        if params is not None:
            return AuthChallenge(
                resource_metadata_url=params.get("resource_metadata") or None,
                scope=params.get("scope") or None,
                error=params.get("error") or None,
            )
    return None


class _ResponseTooLarge(Exception):
    """Raised from inside the HTTP stack when a body passes the byte bound; never escapes the module."""


class _BoundedStream(httpx2.AsyncByteStream):
    """Counts a response body as it streams and raises once it passes the bound.

    Works below the SDK, so it bounds bodies the SDK reads whole with ``aread()`` (plain JSON answers).
    """

    def __init__(
        self, inner: httpx2.AsyncByteStream, limit: int, *, per_event: bool, on_exceeded: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._per_event = per_event
        self._on_exceeded = on_exceeded
        self._count = 0
        self._tail = b""

    @property
    def elapsed(self) -> object:
        # httpx2.Response.elapsed reads this from whatever stream it holds.
        return getattr(self._inner, "elapsed", None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = self._inner.__aiter__()
        try:
            async for chunk in iterator:
                self._account(chunk)
                yield chunk
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    def _account(self, chunk: bytes) -> None:
        if self._per_event:
            data = self._tail + chunk
            end = max(data.rfind(boundary) for boundary in _EVENT_BOUNDARIES)
            self._count = self._count + len(chunk) if end < 0 else len(data) - end - 2
            self._tail = data[-2:]
        else:
            self._count += len(chunk)
        if self._count > self._limit:
            self._on_exceeded()
            raise _ResponseTooLarge(f"response body exceeded {self._limit} bytes")

    async def aclose(self) -> None:
        await self._inner.aclose()


class _LentClient:
    """Lends the call's one HTTP client to ``sse_client``, which insists on opening and closing its own."""

    def __init__(self, client: httpx2.AsyncClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def __aenter__(self) -> _LentClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_ANNOTATION_WIRE_NAMES: Final = tuple(
    (name, field.serialization_alias or field.alias or name)
    for name, field in mcp_types.ToolAnnotations.model_fields.items()
)


def _annotations_as_on_the_wire(annotations: mcp_types.ToolAnnotations) -> dict[str, Any]:
    # Hand-rolled because model_dump() per tool is a measurable share of listing 1,000 tools; the fields are
    # plain bools and strings, so no JSON-mode conversion is needed.
    wire = {alias: value for name, alias in _ANNOTATION_WIRE_NAMES if (value := getattr(annotations, name)) is not None}
    if annotations.model_extra:
        wire.update((key, value) for key, value in annotations.model_extra.items() if value is not None)
    return wire


def _to_remote_tool(tool: mcp_types.Tool) -> RemoteTool:
    annotations: dict[str, Any] = {}
    read_only_hint: bool | None = None
    if tool.annotations is not None:
        annotations = _annotations_as_on_the_wire(tool.annotations)
        read_only_hint = tool.annotations.read_only_hint
    return RemoteTool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=annotations,
        read_only_hint=read_only_hint,
    )


class _ToolLister:
    """One call's state: the target, the bounds, and what the HTTP layer observed for error reporting."""

    def __init__(self, url: str, headers: Mapping[str, str], limits: SyncLimits, factory: HttpClientFactory) -> None:
        self.url = url
        self.headers = dict(headers)
        self.limits = limits
        self.factory = factory
        self.invalid_url = False
        try:
            parsed = httpx2.URL(url)
            self.invalid_url = parsed.scheme not in ("http", "https") or not parsed.host
            self.host = _describe_host(parsed) if parsed.host else "the configured URL"
        except (httpx2.InvalidURL, TypeError):
            self.invalid_url = True
            self.host = "the configured URL"
        self.oversized = False
        # The SDK turns a failed POST into a generic JSON-RPC error; the status kept here says what happened.
        self.failed_post: tuple[int, list[str]] | None = None
        self.stage = "initialize"

    async def run(self, preferred: TransportType | None) -> ToolListing:
        if self.invalid_url:
            raise McpProtocolError("The MCP server URL is not a valid http or https URL.")
        async with self._open_client() as http:
            sse_failure: McpClientError | None = None
            if preferred == "SSE":
                try:
                    return ToolListing("SSE", await self._guard(self._list_over_sse(http)))
                except (McpAuthRequired, McpHeadersRejected, McpLimitExceeded):
                    raise
                except McpClientError as exc:
                    sse_failure = exc
            probe = await self._guard(self._probe(http))
            if probe.transport == "SSE":
                if sse_failure is not None:
                    raise sse_failure
                return ToolListing("SSE", await self._guard(self._list_over_sse(http)))
            tools = await self._guard(self._list_over_streamable(http, probe))
            return ToolListing("STREAMABLE_HTTP", tools)

    def _open_client(self) -> httpx2.AsyncClient:
        timeout = httpx2.Timeout(
            connect=self.limits.connect_seconds,
            read=self.limits.read_seconds,
            write=self.limits.read_seconds,
            pool=self.limits.connect_seconds,
        )
        client = self.factory(headers=dict(self.headers), timeout=timeout)
        if not any(name.lower() == "accept-encoding" for name in self.headers):
            # Counting bytes only bounds memory if what is counted is what gets decoded.
            client.headers["accept-encoding"] = "identity"
        client.event_hooks["response"].append(self._on_response)
        return client

    async def _on_response(self, response: httpx2.Response) -> None:
        if response.request.method == "POST" and response.status_code >= 400:
            self.failed_post = (response.status_code, response.headers.get_list("www-authenticate"))
        stream = response.stream
        if isinstance(stream, httpx2.AsyncByteStream):
            content_type = response.headers.get("content-type", "").lower()
            response.stream = _BoundedStream(
                stream,
                self.limits.max_response_bytes,
                per_event=content_type.startswith("text/event-stream"),
                on_exceeded=self._mark_oversized,
            )

    def _mark_oversized(self) -> None:
        self.oversized = True

    async def _guard(self, awaitable: Awaitable[_T]) -> _T:
        """Await, turning any failure except cancellation into an McpClientError."""
        try:
            return await awaitable
        except BaseException as exc:
            error = self.translate(exc)
            if error is None:
                raise
        raise error

    async def _probe(self, http: httpx2.AsyncClient) -> _Probe:
        """Classify the endpoint, asking as the SDK's own "auto" mode does: ``server/discover`` first, then the
        handshake-era ``initialize`` when the answer is not a modern one (which also tells legacy SSE apart)."""
        discovered, stray = await self._probe_discover(http)
        strays = (stray,) if stray else ()
        if discovered is not None:
            return _Probe("STREAMABLE_HTTP", discovered, strays)
        transport, session = await self._probe_initialize(http)
        return _Probe(transport, None, (*strays, session) if session else strays)

    async def _probe_discover(self, http: httpx2.AsyncClient) -> tuple[mcp_types.DiscoverResult | None, str | None]:
        """A modern server's DiscoverResult (None when ``initialize`` should decide), and the session the server
        opened for the request, if it did (it is released while the tools are listed).

        Auth challenges and server errors raise as from the initialize probe.
        """
        payload = {
            "jsonrpc": "2.0",
            "id": _PROBE_ID,
            "method": _DISCOVER,
            "params": {
                "_meta": {
                    mcp_types.PROTOCOL_VERSION_META_KEY: LATEST_MODERN_VERSION,
                    mcp_types.CLIENT_INFO_META_KEY: _PROBE_CLIENT_INFO,
                    mcp_types.CLIENT_CAPABILITIES_META_KEY: {},
                }
            },
        }
        headers = {
            **_PROBE_HEADERS,
            MCP_PROTOCOL_VERSION_HEADER: LATEST_MODERN_VERSION,
            MCP_METHOD_HEADER: _DISCOVER,
        }
        async with stream_within_origin(http, "POST", self.url, json=payload, headers=headers) as response:
            status = response.status_code
            session = response.headers.get("mcp-session-id") or None
            if not (200 <= status < 300 or status in _NOT_UNDERSTOOD_STATUSES):
                # Auth, rate limits, server errors, misdirection: initialize would hear the same.
                raise self._status_error(status, response.headers.get_list("www-authenticate"))
            content_type = response.headers.get("content-type", "").lower()
            # Read to its end (bounded) even when it is not used: the connection then serves what follows.
            body = await self._read_probe_body(response, event_stream=content_type.startswith("text/event-stream"))
        return self._modern_result(status, content_type, body), session

    @staticmethod
    def _modern_result(status: int, content_type: str, body: bytes) -> mcp_types.DiscoverResult | None:
        if not (200 <= status < 300 and content_type.startswith("application/json")):
            return None  # e.g. 400 from a handshake-era server that wants a session, or 405 from an SSE one
        try:
            result = mcp_types.DiscoverResult.model_validate(json.loads(body)["result"])
        except (ValueError, TypeError, KeyError, ValidationError):
            return None  # a JSON-RPC error (method not found), or not a DiscoverResult
        if not set(result.supported_versions) & set(MODERN_PROTOCOL_VERSIONS):
            return None  # a server that answers discover but offers only handshake-era versions
        return result

    async def _probe_initialize(self, http: httpx2.AsyncClient) -> tuple[TransportType, str | None]:
        """Send a handshake-era ``initialize`` and classify the answer; returns the session it opened, if any."""
        payload = {
            "jsonrpc": "2.0",
            "id": _PROBE_ID,
            "method": "initialize",
            "params": {
                "protocolVersion": LATEST_HANDSHAKE_VERSION,
                "capabilities": {},
                "clientInfo": _PROBE_CLIENT_INFO,
            },
        }
        async with stream_within_origin(http, "POST", self.url, json=payload, headers=_PROBE_HEADERS) as response:
            status = response.status_code
            if 200 <= status < 300:
                content_type = response.headers.get("content-type", "").lower()
                if not content_type.startswith(("application/json", "text/event-stream")):
                    raise McpProtocolError(
                        f"The URL does not look like an MCP endpoint: the server at {self.host} answered the "
                        f"initialize request with HTTP {status} but not with JSON or an event stream.",
                        status_code=status,
                    )
                session_id = response.headers.get("mcp-session-id") or None
                await self._read_probe_body(response, event_stream=content_type.startswith("text/event-stream"))
                return "STREAMABLE_HTTP", session_id
            if status in _NOT_AN_MCP_POST_STATUSES:
                return "SSE", None
            raise self._status_error(status, response.headers.get_list("www-authenticate"))

    async def _read_probe_body(self, response: httpx2.Response, *, event_stream: bool) -> bytes:
        """Up to 64 KiB of a probe's answer. Reading a small body to its end lets the connection go back to the
        pool for the SDK's requests."""
        seen = b""
        async for chunk in response.aiter_raw():
            seen += chunk
            # An initialize answer sent as an event stream is complete after its first event; the server may
            # keep the stream open, so stop there instead of waiting for it to close.
            if len(seen) >= _PROBE_BODY_LIMIT or (event_stream and any(b in seen for b in _EVENT_BOUNDARIES)):
                break
        return seen[:_PROBE_BODY_LIMIT]

    async def _release_probe_session(self, http: httpx2.AsyncClient, session_id: str) -> None:
        headers = {"mcp-session-id": session_id, "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}
        # Best effort: an unreleased probe session merely idles until the server expires it.
        with contextlib.suppress(Exception):
            async with stream_within_origin(http, "DELETE", self.url, headers=headers):
                pass

    async def _list_over_streamable(self, http: httpx2.AsyncClient, probe: _Probe) -> list[RemoteTool]:
        transport = streamable_http_client(
            self.url, http_client=http, max_sse_event_size=self.limits.max_response_bytes
        )
        async with anyio.create_task_group() as tg:
            # Released concurrently with the SDK's own handshake so the probes cost no extra round trip.
            for session in probe.sessions:
                tg.start_soon(self._release_probe_session, http, session)
            tools = await self._list_with(transport, probe.discovered)
        return tools

    async def _list_over_sse(self, http: httpx2.AsyncClient) -> list[RemoteTool]:
        def lend(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            # The call's client already carries the static headers and the call's timeouts.
            return cast(httpx2.AsyncClient, _LentClient(http))

        transport = sse_client(
            self.url,
            timeout=self.limits.connect_seconds,
            sse_read_timeout=self.limits.read_seconds,
            httpx_client_factory=lend,
        )
        return await self._list_with(transport)

    async def _list_with(
        self, transport: AbstractAsyncContextManager[Any], discovered: mcp_types.DiscoverResult | None = None
    ) -> list[RemoteTool]:
        self.stage = "initialize"
        self.failed_post = None
        # The probe already negotiated: a modern server's DiscoverResult is adopted as is (no second discover);
        # otherwise the handshake-era initialize, which the probe (or the SSE endpoint) showed to work. No
        # response cache: every sync must see the server's current tools.
        mode = _modern_version(discovered) if discovered is not None else "legacy"
        async with Client(
            transport,
            mode=mode,
            prior_discover=discovered,
            cache=None,
            read_timeout_seconds=self.limits.read_seconds,
        ) as client:
            self.stage = "tools/list"
            return await self._collect(client)

    async def _collect(self, client: Client) -> list[RemoteTool]:
        limits = self.limits
        tools: list[RemoteTool] = []
        seen_cursors: set[str] = set()
        cursor: str | None = None
        for _ in range(limits.max_pages):
            page = await client.list_tools(cursor=cursor)
            if len(tools) + len(page.tools) > limits.max_tools:
                raise McpLimitExceeded(
                    f"The MCP server at {self.host} offers more than {limits.max_tools} tools, "
                    "the most that can be synchronised."
                )
            tools.extend(_to_remote_tool(tool) for tool in page.tools)
            # An empty cursor is treated as the end: sending it back would ask for the first page again.
            if not page.next_cursor:
                return tools
            if page.next_cursor in seen_cursors:
                raise McpProtocolError(
                    f"The MCP server at {self.host} repeated a pagination cursor while listing tools."
                )
            seen_cursors.add(page.next_cursor)
            cursor = page.next_cursor
        raise McpLimitExceeded(
            f"The MCP server at {self.host} returned more than {limits.max_pages} pages of tools, "
            "the most that are read."
        )

    def _status_error(self, status: int, challenges: list[str]) -> McpClientError:
        if status in _AUTH_STATUSES:
            challenge = parse_bearer_challenge(challenges)
            if challenge is not None:
                return McpAuthRequired(
                    f"The MCP server at {self.host} requires OAuth authorization (HTTP {status}).",
                    challenge=challenge,
                    status_code=status,
                )
            return McpHeadersRejected(
                f"The server at {self.host} refused the request (HTTP {status}). Check the static headers.",
                status_code=status,
            )
        if status == 429:
            return McpUnreachable(
                f"The MCP server at {self.host} is rate limiting requests (HTTP 429); the sync will be retried.",
                status_code=status,
            )
        if status in _GATEWAY_STATUSES:
            return McpUnreachable(
                f"The MCP server at {self.host} is temporarily unavailable (HTTP {status}).", status_code=status
            )
        if 300 <= status < 400:
            return McpProtocolError(
                f"The server at {self.host} redirected the request (HTTP {status}) to a location that is not "
                "followed; configure the final URL instead.",
                status_code=status,
            )
        if status in _NOT_AN_MCP_POST_STATUSES:
            return McpProtocolError(
                f"The URL does not look like an MCP endpoint: the server at {self.host} answered HTTP {status}.",
                status_code=status,
            )
        return McpProtocolError(
            f"The MCP server at {self.host} answered with an unexpected HTTP status ({status}).", status_code=status
        )

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
            if isinstance(leaf, outbound.DestinationRefused):
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
            return self._status_error(exc.response.status_code, exc.response.headers.get_list("www-authenticate"))
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
                return self._status_error(*self.failed_post)
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
        return McpProtocolError(
            f"Listing tools from the MCP server at {host} failed unexpectedly ({type(exc).__name__})."
        )


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
