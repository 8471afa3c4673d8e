"""What settings decide for the integrations, which read no settings themselves: the outbound policy (the
allowlist), the bounds of a sync, and the HTTP clients every outbound call goes through. Read when called, never
at import: tests and deployments change them."""

from __future__ import annotations

import httpx2
from django.conf import settings

from integrations.mcp import Bounds, HttpClientFactory, SyncLimits
from integrations.outbound import OutboundPolicy, guarded_client, guarded_client_factory


def outbound_policy() -> OutboundPolicy:
    return OutboundPolicy.from_allowlist(settings.MCP_OUTBOUND_ALLOWLIST)


def sync_limits() -> SyncLimits:
    return SyncLimits(
        total_seconds=settings.MCP_SYNC_TOTAL_SECONDS,
        connect_seconds=settings.MCP_SYNC_CONNECT_SECONDS,
        read_seconds=settings.MCP_SYNC_READ_SECONDS,
        max_pages=settings.MCP_SYNC_MAX_PAGES,
        max_tools=settings.MCP_SYNC_MAX_TOOLS,
        max_response_bytes=settings.MCP_SYNC_MAX_RESPONSE_BYTES,
    )


def call_bounds() -> Bounds:
    """A tool call's bounds: its own total, connect and read timeouts and response size."""
    return Bounds(
        total_seconds=settings.MCP_CALL_TIMEOUT_SECONDS,
        connect_seconds=settings.MCP_CALL_CONNECT_SECONDS,
        read_seconds=settings.MCP_CALL_READ_SECONDS,
        max_response_bytes=settings.MCP_CALL_MAX_RESPONSE_BYTES,
    )


def mcp_client_factory() -> HttpClientFactory:
    """The guarded client factory for MCP traffic, with today's allowlist."""
    return guarded_client_factory(outbound_policy())


def oauth_client(limits: SyncLimits) -> httpx2.AsyncClient:
    """A fresh guarded client for OAuth requests, with the sync's connect and read timeouts."""
    return guarded_client(outbound_policy(), connect_seconds=limits.connect_seconds, read_seconds=limits.read_seconds)
