"""What an MCP server's HTTP answer means: its status, and the Bearer challenge of a 401 or 403."""

from __future__ import annotations

import re
from typing import Final

import httpx2

from integrations.mcp.errors import (
    McpAuthRequired,
    McpClientError,
    McpHeadersRejected,
    McpProtocolError,
    McpUnreachable,
)
from integrations.mcp.types import AuthChallenge

AUTH_STATUSES: Final = frozenset({401, 403})
GATEWAY_STATUSES: Final = frozenset({502, 503, 504})
NOT_AN_MCP_POST_STATUSES: Final = frozenset({400, 404, 405})


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


def describe_host(url: httpx2.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port is not None else host


def status_error(status: int, challenges: list[str], host: str) -> McpClientError:
    """The error an HTTP status means, from a probe, a POST the SDK sent, or an SDK exception."""
    if status in AUTH_STATUSES:
        challenge = parse_bearer_challenge(challenges)
        if challenge is not None:
            return McpAuthRequired(
                f"The MCP server at {host} requires OAuth authorization (HTTP {status}).",
                challenge=challenge,
                status_code=status,
            )
        return McpHeadersRejected(
            f"The server at {host} refused the request (HTTP {status}). Check the static headers.",
            status_code=status,
        )
    if status == 429:
        return McpUnreachable(
            f"The MCP server at {host} is rate limiting requests (HTTP 429); try again later.",
            status_code=status,
        )
    if status in GATEWAY_STATUSES:
        return McpUnreachable(
            f"The MCP server at {host} is temporarily unavailable (HTTP {status}).", status_code=status
        )
    if 300 <= status < 400:
        return McpProtocolError(
            f"The server at {host} redirected the request (HTTP {status}) to a location that is not "
            "followed; configure the final URL instead.",
            status_code=status,
        )
    if status in NOT_AN_MCP_POST_STATUSES:
        return McpProtocolError(
            f"The URL does not look like an MCP endpoint: the server at {host} answered HTTP {status}.",
            status_code=status,
        )
    return McpProtocolError(
        f"The MCP server at {host} answered with an unexpected HTTP status ({status}).", status_code=status
    )
