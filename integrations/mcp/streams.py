"""Response bodies counted as they stream in, so a server cannot make a call read without bound."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import httpx2

# Any blank line ends an SSE event; with CR, LF and CRLF line ends these three pairs catch every blank line.
EVENT_BOUNDARIES: Final = (b"\n\n", b"\r\r", b"\n\r")


class ResponseTooLarge(Exception):
    """Raised from inside the HTTP stack when a body passes the byte bound; never escapes the MCP client."""


class BoundedStream(httpx2.AsyncByteStream):
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
            end = max(data.rfind(boundary) for boundary in EVENT_BOUNDARIES)
            self._count = self._count + len(chunk) if end < 0 else len(data) - end - 2
            self._tail = data[-2:]
        else:
            self._count += len(chunk)
        if self._count > self._limit:
            self._on_exceeded()
            raise ResponseTooLarge(f"response body exceeded {self._limit} bytes")

    async def aclose(self) -> None:
        await self._inner.aclose()


class LentClient:
    """Lends the call's one HTTP client to ``sse_client``, which insists on opening and closing its own."""

    def __init__(self, client: httpx2.AsyncClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def __aenter__(self) -> LentClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None
