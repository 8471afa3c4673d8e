"""Reaching a registered MCP server from a web process, as tool calls and the MCP endpoint's pass-through do.

- `upstream_of(server)` (blocking: reads rows, may refresh an OAuth token) says how: the checked URL, the static
  headers and the OAuth access token, the guarded client factory and the call's bounds; or why it cannot be reached.
- `with_credentials(upstream, attempt)` (in the background loop) runs a request and answers a refusal of the
  credentials as a sync would: a 401 refreshes the token once (one refresh per server at a time, across processes)
  and tries again; a 403 `insufficient_scope` asks a person for the wider scope (step-up); any other challenge asks
  for authorization again. A request that cannot go through raises `Unreached`, which says why.
- `pool()` is the process's one set of open sessions (in the background loop), `in_db_thread` runs blocking ORM
  work off that loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections

from integrations import oauth
from integrations.errors import IntegrationError
from integrations.mcp import (
    AuthChallenge,
    Bounds,
    Endpoint,
    HttpClientFactory,
    McpAuthRequired,
    McpClientError,
    Relay,
    ServerDescription,
    SessionPool,
)
from integrations.outbound import DestinationRefused, InvalidUrl, check_url
from mcp_servers.limits import call_bounds, mcp_client_factory, outbound_policy, sync_limits
from mcp_servers.models import McpServer, McpServerHeader, ToolCallError, ToolCallStatus
from mcp_servers.services.oauth_authorization import oauth_step_up
from mcp_servers.services.oauth_tokens import oauth_access_token
from mcp_servers.services.sync import AUTH_EXPIRED_MESSAGE, AUTH_REQUIRED_MESSAGE, mcp_server_authorize_again

_T = TypeVar("_T")
logger = logging.getLogger(__name__)


class Unreached(Exception):
    """The server could not be asked: `status` (FAILED, or AUTH_REQUIRED with `auth_url`), `code` (a
    ToolCallError) and `message` (a plain sentence, safe to show and to log) say why."""

    def __init__(self, status: ToolCallStatus, code: str | None, message: str, auth_url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.auth_url = auth_url


@dataclass(frozen=True)
class Upstream:
    server_id: uuid.UUID
    endpoint: Endpoint
    factory: HttpClientFactory
    bounds: Bounds
    token: str | None
    refreshed: bool = False


def upstream_of(server: McpServer | None) -> Upstream:
    """How to reach `server` now (its `oauth` row selected with it saves a query). Raises Unreached."""
    if server is None:
        raise Unreached(ToolCallStatus.FAILED, ToolCallError.ACCESS_REVOKED, "The MCP server was deleted.")
    try:
        check_url(server.server_url, rules=outbound_policy().rules)
    except (DestinationRefused, InvalidUrl) as exc:
        raise Unreached(
            ToolCallStatus.FAILED, ToolCallError.DESTINATION_REFUSED, f"The server URL was refused: {exc}."
        ) from None
    headers = dict(McpServerHeader.objects.filter(server_id=server.pk).values_list("key", "value"))
    token: str | None = None
    if hasattr(server, "oauth"):
        try:
            token = oauth_access_token(server_id=server.pk, limits=sync_limits())
        except oauth.OAuthGrantRejected:
            raise _authorize_again(server.pk, None) from None
        except (oauth.OAuthError, DestinationRefused) as exc:
            raise Unreached(
                ToolCallStatus.FAILED,
                ToolCallError.OAUTH_FAILED,
                f"Refreshing the OAuth access token failed: {exc}",
            ) from None
    return Upstream(
        server_id=server.pk,
        endpoint=_endpoint(server.server_url, headers, token, server.transport_type),
        factory=mcp_client_factory(),
        bounds=call_bounds(),
        token=token,
    )


def _endpoint(url: str, headers: dict[str, str], token: str | None, transport: str | None) -> Endpoint:
    if token is not None:
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {token}"
    return Endpoint.of(url, headers, transport)  # type: ignore[arg-type]


async def with_credentials(upstream: Upstream, attempt: Callable[[Upstream], Awaitable[_T]]) -> _T:
    """`attempt(upstream)`, answering a refusal of the credentials (see the module docstring). Raises Unreached
    when a person must authorize (again, or with more scope) or the token cannot be refreshed, and whatever else
    `attempt` raises (McpClientError)."""
    try:
        return await attempt(upstream)
    except McpAuthRequired as exc:
        challenge = exc.challenge
    pool().forget(upstream.endpoint)
    if challenge.error == "insufficient_scope" and upstream.token is not None:
        raise await in_db_thread(_step_up, upstream.server_id, challenge)
    if upstream.token is not None and not upstream.refreshed:
        try:
            token = await in_db_thread(
                functools.partial(
                    oauth_access_token, server_id=upstream.server_id, limits=sync_limits(), refused_token=upstream.token
                )
            )
        except oauth.OAuthGrantRejected:
            token = None
        except (oauth.OAuthError, DestinationRefused) as exc:
            raise Unreached(
                ToolCallStatus.FAILED, ToolCallError.OAUTH_FAILED, f"Refreshing the OAuth access token failed: {exc}"
            ) from None
        if token is not None:
            endpoint = upstream.endpoint
            refreshed = _endpoint(endpoint.url, dict(endpoint.headers), token, endpoint.transport)
            return await with_credentials(replace(upstream, endpoint=refreshed, token=token, refreshed=True), attempt)
    raise await in_db_thread(_authorize_again, upstream.server_id, challenge)


def _step_up(server_id: uuid.UUID, challenge: AuthChallenge) -> Unreached:
    server = McpServer.objects.filter(pk=server_id).first()
    if server is None:
        return Unreached(ToolCallStatus.FAILED, ToolCallError.ACCESS_REVOKED, "The MCP server was deleted.")
    try:
        url = oauth_step_up(server=server, challenge=challenge, limits=sync_limits())
    except (IntegrationError, DestinationRefused) as exc:
        return Unreached(
            ToolCallStatus.FAILED,
            ToolCallError.OAUTH_FAILED,
            f"The tool needs more OAuth scope, but asking for it failed: {exc}",
        )
    return Unreached(
        ToolCallStatus.AUTH_REQUIRED,
        None,
        "The tool needs more access than the server's OAuth authorization grants (insufficient_scope): open the "
        "authorization URL to grant it, then call again.",
        auth_url=url,
    )


def _authorize_again(server_id: uuid.UUID, challenge: AuthChallenge | None) -> Unreached:
    """The server refuses the credentials: a fresh authorization URL, recorded on the server as a sync would."""
    message = AUTH_EXPIRED_MESSAGE if challenge is None else AUTH_REQUIRED_MESSAGE
    mcp_server_authorize_again(server_id=server_id, message=message, challenge=challenge)
    auth_url = McpServer.objects.filter(pk=server_id).values_list("auth_url", flat=True).first()
    if not auth_url:
        return Unreached(
            ToolCallStatus.FAILED,
            ToolCallError.OAUTH_FAILED,
            "The server requires OAuth authorization, and no authorization URL could be made for it.",
        )
    return Unreached(ToolCallStatus.AUTH_REQUIRED, None, message, auth_url=auth_url)


async def proxy_request(
    *, server: McpServer, method: str, params: dict[str, Any], relay: Relay | None
) -> dict[str, Any]:
    """A request a proxied MCP client makes of `server` (resources, prompts, completions), passed on as it made it,
    in the background loop. Raises Unreached, McpRemoteError (the server's JSON-RPC error) or McpClientError."""
    upstream = await in_db_thread(upstream_of, server)

    async def attempt(target: Upstream) -> dict[str, Any]:
        return await pool().request(
            target.endpoint, method, params, factory=target.factory, bounds=target.bounds, relay=relay
        )

    return await with_credentials(upstream, attempt)


async def describe_upstream(server: McpServer, *, handshake_era: bool = False) -> ServerDescription | None:
    """What `server` said of itself when a session with it opened (opening one, of the era the proxied client
    speaks, if none is open), or None when it cannot be reached now (a proxy then presents its tools alone)."""

    async def attempt(target: Upstream) -> ServerDescription:
        return await pool().describe(
            target.endpoint, factory=target.factory, bounds=target.bounds, handshake_era=handshake_era
        )

    try:
        upstream = await in_db_thread(upstream_of, server)
        return await with_credentials(upstream, attempt)
    except (Unreached, McpClientError) as exc:
        logger.info("mcp endpoint: the server could not describe itself: %s", exc)
        return None


# The process's open sessions (in the background loop) and the threads the loop hands database work to.
_sessions: SessionPool | None = None
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


def pool() -> SessionPool:
    global _sessions
    if _sessions is None:  # only ever touched from the loop's thread
        _sessions = SessionPool(idle_seconds=settings.MCP_CALL_SESSION_IDLE_SECONDS)
    return _sessions


def _db_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="tool-call-db")
            _executor_pid = os.getpid()
        return _executor


async def in_db_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """Run blocking ORM (and OAuth) work off the loop, on a connection that is closed again if it went stale."""

    def job() -> _T:
        close_old_connections()
        try:
            return fn(*args)
        finally:
            close_old_connections()

    return await asyncio.get_running_loop().run_in_executor(_db_executor(), job)
