"""The HTTP client of one exchange with an MCP server: made by the caller's factory (the guarded client), with the
exchange's timeouts, every body bounded as it streams in, and every refused POST noted for the error translation."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import httpx2
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from integrations.mcp.streams import BoundedStream, LentClient
from integrations.mcp.translate import CallState
from integrations.mcp.types import Bounds, HttpClientFactory


def open_http_client(
    factory: HttpClientFactory, headers: Mapping[str, str], bounds: Bounds, state: CallState
) -> httpx2.AsyncClient:
    timeout = httpx2.Timeout(
        connect=bounds.connect_seconds, read=bounds.read_seconds, write=bounds.read_seconds, pool=bounds.connect_seconds
    )
    client = factory(headers=dict(headers), timeout=timeout)
    if not any(name.lower() == "accept-encoding" for name in headers):
        # Counting bytes only bounds memory if what is counted is what gets decoded.
        client.headers["accept-encoding"] = "identity"

    def mark_oversized() -> None:
        state.oversized = True

    async def on_response(response: httpx2.Response) -> None:
        if response.request.method == "POST" and response.status_code >= 400:
            state.failed_post = (response.status_code, response.headers.get_list("www-authenticate"))
        stream = response.stream
        if isinstance(stream, httpx2.AsyncByteStream):
            content_type = response.headers.get("content-type", "").lower()
            response.stream = BoundedStream(
                stream,
                bounds.max_response_bytes,
                per_event=content_type.startswith("text/event-stream"),
                on_exceeded=mark_oversized,
            )

    client.event_hooks["response"].append(on_response)
    return client


def streamable_http(url: str, http: httpx2.AsyncClient, bounds: Bounds) -> AbstractAsyncContextManager[Any]:
    """The SDK's Streamable HTTP transport over the exchange's client (SSE events bounded like bodies)."""
    return streamable_http_client(url, http_client=http, max_sse_event_size=bounds.max_response_bytes)


def legacy_sse(url: str, http: httpx2.AsyncClient, bounds: Bounds) -> AbstractAsyncContextManager[Any]:
    """The SDK's legacy HTTP+SSE transport over the exchange's client, which it insists on opening itself."""

    def lend(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        # The exchange's client already carries the static headers and the timeouts.
        return cast(httpx2.AsyncClient, LentClient(http))

    return sse_client(
        url, timeout=bounds.connect_seconds, sse_read_timeout=bounds.read_seconds, httpx_client_factory=lend
    )
