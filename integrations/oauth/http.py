"""What every OAuth request shares: the outbound policy applied to each URL, one bounded read of an answer, and
HTTP client failures as `OAuthError`s (a refused destination is kept as `DestinationRefused`)."""

from __future__ import annotations

from typing import Final

import httpx2

from core import exception_groups
from integrations.oauth.errors import OAuthError
from integrations.outbound import (
    DEFAULT_PORTS,
    CheckedUrl,
    DestinationRefused,
    InvalidUrl,
    OutboundPolicy,
    check_url,
    is_allowlisted,
)

# Only these of the client's default headers leave with an OAuth request; its auth, cookies and the MCP server's
# static headers do not.
KEPT_CLIENT_HEADERS: Final = frozenset({"host", "user-agent", "connection"})


def check(url: str, what: str, policy: OutboundPolicy) -> CheckedUrl:
    """``check_url``; DestinationRefused propagates, InvalidUrl becomes OAuthError (without the URL)."""
    try:
        return check_url(url, rules=policy.rules)
    except InvalidUrl:
        raise OAuthError(f"{what} is not a valid http or https URL.") from None


def require_https(checked: CheckedUrl, what: str, policy: OutboundPolicy) -> None:
    allowlisted = is_allowlisted(host=checked.host, port=checked.port, ip=checked.ip, rules=policy.rules)
    if checked.scheme != "https" and not allowlisted:
        raise OAuthError(f"{what} at {host_of(checked)} must use https.")


def host_of(checked: CheckedUrl) -> str:
    host = f"[{checked.host}]" if ":" in checked.host else checked.host
    return host if DEFAULT_PORTS[checked.scheme] == checked.port else f"{host}:{checked.port}"


def origin_of(checked: CheckedUrl) -> str:
    return f"{checked.scheme}://{host_of(checked)}"


async def read_bounded(response: httpx2.Response, *, limit: int, too_large: OAuthError) -> bytes:
    """The whole body, or `too_large` as soon as it (or its declared length) passes `limit` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def find_refused(exc: BaseException) -> DestinationRefused | None:
    """The DestinationRefused behind ``exc``: itself, a cause or context of it, or one in an exception group."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DestinationRefused):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return None


def translate_http_error(exc: Exception, host: str, what: str) -> OAuthError | None:
    """An OAuthError for an HTTP client failure (alone or in a group); None for anything else."""
    leaves = list(exception_groups.leaves(exc))
    http_errors = (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError)
    if not leaves or not all(isinstance(leaf, http_errors) for leaf in leaves):
        return None
    leaf = leaves[0]
    if isinstance(leaf, httpx2.TimeoutException):
        return OAuthError(f"The server at {host} did not send the OAuth {what} in time.", transient=True)
    if isinstance(leaf, httpx2.ConnectError):
        return OAuthError(f"Could not connect to {host} to fetch the OAuth {what}.", transient=True)
    if isinstance(leaf, httpx2.NetworkError | httpx2.RemoteProtocolError):
        return OAuthError(f"The connection to {host} broke while fetching the OAuth {what}.", transient=True)
    if isinstance(leaf, httpx2.UnsupportedProtocol | httpx2.InvalidURL):
        return OAuthError(f"The OAuth {what} URL for {host} is not a valid http or https URL.")
    return OAuthError(f"Fetching the OAuth {what} from {host} failed ({type(leaf).__name__}).")
