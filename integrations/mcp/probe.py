"""The raw probes that tell what an MCP endpoint speaks, as the SDK's own "auto" negotiation asks: ``server/discover``
first (a 2026-era server answers it, and is then listed over the stateless protocol), else the handshake-era
``initialize``, whose answer also tells Streamable HTTP from legacy SSE."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Final

import httpx2
import mcp_types
from mcp.shared._httpx_utils import stream_within_origin
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from integrations.mcp.errors import McpProtocolError
from integrations.mcp.statuses import NOT_AN_MCP_POST_STATUSES, status_error
from integrations.mcp.streams import EVENT_BOUNDARIES
from integrations.mcp.types import TransportType

_PROBE_BODY_LIMIT: Final = 64 * 1024
_PROBE_ID: Final = "probe"
# Answers to server/discover that may only mean "not this request": a handshake-era server, or an SSE endpoint.
NOT_UNDERSTOOD_STATUSES: Final = frozenset({400, 404, 405, 406, 415, 422, 501})
_DISCOVER: Final = "server/discover"
_PROBE_CLIENT_INFO: Final = {"name": "mcp-tool-sync-probe", "version": "1"}
_PROBE_HEADERS: Final = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@dataclass(frozen=True)
class Probe:
    transport: TransportType
    discovered: mcp_types.DiscoverResult | None  # set when the server speaks a modern (stateless) version
    sessions: tuple[str, ...]  # sessions the probes opened, released while the tools are listed


def modern_version(discovered: mcp_types.DiscoverResult) -> str:
    """The newest modern version both sides support (the probe only keeps results that offer one)."""
    return [v for v in MODERN_PROTOCOL_VERSIONS if v in discovered.supported_versions][-1]


async def probe(http: httpx2.AsyncClient, url: str, host: str) -> Probe:
    """Classify the endpoint, asking as the SDK's own "auto" mode does: ``server/discover`` first, then the
    handshake-era ``initialize`` when the answer is not a modern one (which also tells legacy SSE apart)."""
    discovered, stray = await _probe_discover(http, url, host)
    strays = (stray,) if stray else ()
    if discovered is not None:
        return Probe("STREAMABLE_HTTP", discovered, strays)
    transport, session = await _probe_initialize(http, url, host)
    return Probe(transport, None, (*strays, session) if session else strays)


async def _probe_discover(
    http: httpx2.AsyncClient, url: str, host: str
) -> tuple[mcp_types.DiscoverResult | None, str | None]:
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
    async with stream_within_origin(http, "POST", url, json=payload, headers=headers) as response:
        status = response.status_code
        session = response.headers.get("mcp-session-id") or None
        if not (200 <= status < 300 or status in NOT_UNDERSTOOD_STATUSES):
            # Auth, rate limits, server errors, misdirection: initialize would hear the same.
            raise status_error(status, response.headers.get_list("www-authenticate"), host)
        content_type = response.headers.get("content-type", "").lower()
        # Read to its end (bounded) even when it is not used: the connection then serves what follows.
        body = await _read_probe_body(response, event_stream=content_type.startswith("text/event-stream"))
    return _modern_result(status, content_type, body), session


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


async def _probe_initialize(http: httpx2.AsyncClient, url: str, host: str) -> tuple[TransportType, str | None]:
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
    async with stream_within_origin(http, "POST", url, json=payload, headers=_PROBE_HEADERS) as response:
        status = response.status_code
        if 200 <= status < 300:
            content_type = response.headers.get("content-type", "").lower()
            if not content_type.startswith(("application/json", "text/event-stream")):
                raise McpProtocolError(
                    f"The URL does not look like an MCP endpoint: the server at {host} answered the "
                    f"initialize request with HTTP {status} but not with JSON or an event stream.",
                    status_code=status,
                )
            session_id = response.headers.get("mcp-session-id") or None
            await _read_probe_body(response, event_stream=content_type.startswith("text/event-stream"))
            return "STREAMABLE_HTTP", session_id
        if status in NOT_AN_MCP_POST_STATUSES:
            return "SSE", None
        raise status_error(status, response.headers.get_list("www-authenticate"), host)


async def _read_probe_body(response: httpx2.Response, *, event_stream: bool) -> bytes:
    """Up to 64 KiB of a probe's answer. Reading a small body to its end lets the connection go back to the
    pool for the SDK's requests."""
    seen = b""
    async for chunk in response.aiter_raw():
        seen += chunk
        # An initialize answer sent as an event stream is complete after its first event; the server may
        # keep the stream open, so stop there instead of waiting for it to close.
        if len(seen) >= _PROBE_BODY_LIMIT or (event_stream and any(b in seen for b in EVENT_BOUNDARIES)):
            break
    return seen[:_PROBE_BODY_LIMIT]


async def release_probe_session(http: httpx2.AsyncClient, url: str, session_id: str) -> None:
    headers = {"mcp-session-id": session_id, "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}
    # Best effort: an unreleased probe session merely idles until the server expires it.
    with contextlib.suppress(Exception):
        async with stream_within_origin(http, "DELETE", url, headers=headers):
            pass
