"""List the tools of a remote MCP server, with hard bounds and user-facing errors.

Only this package of the project talks to the MCP SDK. The probes (``probe``) tell what the endpoint speaks; every
tool page is then listed through the SDK's ``Client``, and every failure becomes one of the ``McpClientError``
subclasses (``translate``), whose ``str()`` is a plain sentence that is safe to show to users and to log: it never
contains header values, tokens or response bodies.

Bounds, all taken from ``SyncLimits``:

* time: the whole call (probe, connect, every page, session teardown) runs under ``anyio.fail_after``;
  ``connect_seconds`` / ``read_seconds`` additionally bound each connection attempt and each read, and
  ``read_seconds`` also bounds how long one JSON-RPC request waits for its answer;
* size: every HTTP response body is counted as it streams in (``streams``). A plain body (JSON) may not exceed
  ``max_response_bytes`` in total; an event stream may not exceed it per event (the SDK also enforces this for
  Streamable HTTP through ``max_sse_event_size``; for legacy SSE the SDK has a fixed 1 MiB per-event cap that
  cannot be raised, so there the effective bound is ``min(1 MiB, max_response_bytes)``). Bytes are counted as
  received: ``Accept-Encoding: identity`` is requested (unless the static headers say otherwise) so that this is
  the decoded size too; a server that compresses anyway is only bounded on the compressed size. The probe
  reads at most 64 KiB of its response body;
* volume: at most ``max_pages`` tools/list pages and ``max_tools`` tools.

A server whose negotiated capabilities have no ``tools`` lists no tools: no ``tools/list`` is sent.

Not bounded here: the memory the SDK's pydantic models take for a response that is within the byte bound, and
the number of response headers (httpcore2 has its own limits on those).

Every HTTP request (probe, SDK traffic, session DELETE) goes through the single ``httpx2.AsyncClient`` made by
``http_client_factory`` for the call, so a guarded factory sees all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, TypeVar

import anyio
import httpx2
import mcp_types
from mcp.client.client import Client

from integrations.mcp.connection import legacy_sse, open_http_client, streamable_http
from integrations.mcp.errors import (
    McpAuthRequired,
    McpClientError,
    McpHeadersRejected,
    McpLimitExceeded,
    McpProtocolError,
    McpTimeout,
)
from integrations.mcp.probe import Probe, modern_version, probe, release_probe_session
from integrations.mcp.statuses import describe_host
from integrations.mcp.translate import CallState
from integrations.mcp.types import HttpClientFactory, RemoteTool, SyncLimits, ToolListing, TransportType

_T = TypeVar("_T")
DEFAULT_LIMITS: Final = SyncLimits()


def list_remote_tools(
    url: str,
    headers: Mapping[str, str],
    *,
    preferred_transport: TransportType | None = None,
    http_client_factory: HttpClientFactory,
    limits: SyncLimits = DEFAULT_LIMITS,
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
    http_client_factory: HttpClientFactory,
    limits: SyncLimits = DEFAULT_LIMITS,
) -> ToolListing:
    """Detect the transport of the MCP server at ``url`` and list all its tools.

    ``headers`` are sent on every request, through clients ``http_client_factory`` makes (the guarded outbound
    client, in the service). With ``preferred_transport="SSE"`` legacy SSE is tried first and
    the probe only if that fails for a reason other than auth, headers or a bound; otherwise the probe decides.

    Raises:
        McpClientError: one of its subclasses, for every failure (SDK and httpx2 exceptions never escape;
            cancellation from the caller and BaseExceptions such as KeyboardInterrupt do).
    """
    lister = _ToolLister(url, headers, limits, http_client_factory)
    error: McpClientError | None = None
    deadline: anyio.CancelScope | None = None
    try:
        with anyio.fail_after(limits.total_seconds) as deadline:
            return await lister.run(preferred_transport)
    except BaseException as exc:
        error = lister.state.translate(exc)
        timed_out = deadline is not None and deadline.cancel_called
        if error is None and not (timed_out and isinstance(exc, TimeoutError)):
            raise
        if timed_out:
            # Whatever the cancellation turned into on its way out (a closed stream, say), the cause is the bound.
            error = McpTimeout(
                f"The MCP server at {lister.state.host} did not finish listing its tools "
                f"within {limits.total_seconds:g} seconds."
            )
        assert error is not None
    # Raised outside the except block, and detached, so no SDK or httpx2 exception rides along with it.
    error.__cause__ = error.__context__ = None
    raise error


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
        host = "the configured URL"
        try:
            parsed = httpx2.URL(url)
            self.invalid_url = parsed.scheme not in ("http", "https") or not parsed.host
            if parsed.host:
                host = describe_host(parsed)
        except (httpx2.InvalidURL, TypeError):
            self.invalid_url = True
        self.host = host
        self.state = CallState(host=host, limits=limits)

    async def run(self, preferred: TransportType | None) -> ToolListing:
        if self.invalid_url:
            raise McpProtocolError("The MCP server URL is not a valid http or https URL.")
        async with open_http_client(self.factory, self.headers, self.limits, self.state) as http:
            sse_failure: McpClientError | None = None
            if preferred == "SSE":
                try:
                    return ToolListing("SSE", await self._guard(self._list_over_sse(http)))
                except (McpAuthRequired, McpHeadersRejected, McpLimitExceeded):
                    raise
                except McpClientError as exc:
                    sse_failure = exc
            probe_result = await self._guard(probe(http, self.url, self.host))
            if probe_result.transport == "SSE":
                if sse_failure is not None:
                    raise sse_failure
                return ToolListing("SSE", await self._guard(self._list_over_sse(http)))
            tools = await self._guard(self._list_over_streamable(http, probe_result))
            return ToolListing("STREAMABLE_HTTP", tools)

    async def _guard(self, awaitable: Awaitable[_T]) -> _T:
        """Await, turning any failure except cancellation into an McpClientError."""
        try:
            return await awaitable
        except BaseException as exc:
            error = self.state.translate(exc)
            if error is None:
                raise
        raise error

    async def _list_over_streamable(self, http: httpx2.AsyncClient, probe: Probe) -> list[RemoteTool]:
        transport = streamable_http(self.url, http, self.limits)
        async with anyio.create_task_group() as tg:
            # Released concurrently with the SDK's own handshake so the probes cost no extra round trip.
            for session in probe.sessions:
                tg.start_soon(release_probe_session, http, self.url, session)
            tools = await self._list_with(transport, probe.discovered)
        return tools

    async def _list_over_sse(self, http: httpx2.AsyncClient) -> list[RemoteTool]:
        return await self._list_with(legacy_sse(self.url, http, self.limits))

    async def _list_with(
        self, transport: AbstractAsyncContextManager[Any], discovered: mcp_types.DiscoverResult | None = None
    ) -> list[RemoteTool]:
        self.state.stage = "initialize"
        self.state.failed_post = None
        # The probe already negotiated: a modern server's DiscoverResult is adopted as is (no second discover);
        # otherwise the handshake-era initialize, which the probe (or the SSE endpoint) showed to work. No
        # response cache: every sync must see the server's current tools.
        mode = modern_version(discovered) if discovered is not None else "legacy"
        async with Client(
            transport,
            mode=mode,
            prior_discover=discovered,
            cache=None,
            read_timeout_seconds=self.limits.read_seconds,
        ) as client:
            if client.server_capabilities.tools is None:
                # A server that declares no tools capability (prompts or resources only) has no tools to list,
                # and a client must not ask for them (MCP lifecycle: use only negotiated capabilities).
                return []
            self.state.stage = "tools/list"
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
