"""An OAuth 2.1 authorization server and OAuth-protected MCP server in one process, for tests.

Run it as ``python -m tests.servers.oauth_mcp_server [options]``; once it accepts connections it prints exactly one
line, ``LISTENING http://127.0.0.1:<port>/mcp``, to stdout (logs go to stderr; tokens and secrets are never logged).
Everything OAuth is the MCP SDK's server-side auth (``MCPServer(auth_server_provider=..., auth=AuthSettings(...))``)
backed by the in-memory provider below; a thin ASGI wrapper in front adds accounting and the control API.

* Issuer ``http://127.0.0.1:<port>``; resource ``http://127.0.0.1:<port>/mcp`` (streamable HTTP, tools
  ``tool_0..tool_{N-1}``). RFC 8414 metadata at ``/.well-known/oauth-authorization-server``, RFC 9728
  metadata at ``/.well-known/oauth-protected-resource/mcp``; endpoints ``/authorize``, ``/token``,
  ``/register`` (RFC 7591, unless ``--no-registration``) and ``/revoke`` (RFC 7009).
* ``/authorize`` auto-approves: it answers 302 to the client's ``redirect_uri`` with ``code``, ``state`` and (RFC 9207,
  unless ``--no-iss``) ``iss``; the metadata then says ``authorization_response_iss_parameter_supported``. A
  ``resource`` other than the MCP URL (exact string) is refused with ``invalid_target``, at ``/authorize`` and
  ``/token`` alike. PKCE (S256 only), redirect_uri, scope and client checks are the SDK's.
* The scopes of ``--scopes`` are the SDK's ``required_scopes`` (advertised in both metadata documents and, added by
  the wrapper, as ``scope`` in the 401 challenge): a token lacking one gets 403 ``insufficient_scope`` at ``/mcp``.
* ``--client-id ID [--client-secret SECRET]`` pre-registers one client (public without a secret). Its token and
  revocation requests may use ``client_secret_basic`` or ``client_secret_post`` (the SDK accepts only the one
  method on record, so the record follows the request). Its redirect_uris are those of ``--client-redirect-uri``
  or, without it, any ``http`` loopback URI (RFC 8252).
* ``--cimd`` advertises ``client_id_metadata_document_supported``. SHORTCUT: the server cannot fetch a client
  ID metadata document (tests have no internet), so it accepts any ``client_id`` that is a URL starting with
  ``--cimd-prefix`` (default ``http://127.0.0.1``) as a public client (``none``) with every supported scope whose
  redirect_uris are "any URI with the client_id's origin".
* ``--call-scopes`` names scopes that ``tools/call`` needs on top of those (step-up authorization): a token without
  them gets 403 with ``error="insufficient_scope"`` and, as ``scope``, every scope the call needs. They are valid
  scopes to ask for, but not required for anything else, nor in the metadata's ``scopes_supported``.
* A server of the 2025-03-26 authorization spec: ``--no-prm`` publishes no RFC 9728 metadata (404, and no
  ``resource_metadata`` in the challenge), and ``--no-as-metadata`` no RFC 8414 metadata either, which leaves the
  endpoints at that revision's defaults (``/authorize``, ``/token``, ``/register``).
* ``--client-credentials`` also grants ``client_credentials`` (the MCP client-credentials extension) to the
  pre-registered client, authenticated by its secret (Basic or in the form) or, with ``--client-public-key PEM``,
  by a private_key_jwt assertion (RFC 7523: iss and sub the client id, aud the issuer, signed by that key's
  private half). Such tokens come without a refresh token.
* Access tokens live ``--access-token-ttl`` seconds; refresh tokens are single-use and rotate on every refresh
  (``--no-rotate`` keeps them); ``--refresh-delay`` stalls every refresh_token grant before it is handled.
* Control API, no auth: ``POST /_control/revoke`` drops every code, access and refresh token; ``POST
  /_control/expire`` expires every access token now; ``POST /_control`` with ``{"revoke": true, "expire": true}``
  does either; ``GET /_control/stats`` returns the counters (see ``Stats.as_json``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import contextvars
import json
import logging
import math
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import anyio
import jwt
import uvicorn
from mcp.server import MCPServer
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.routes import build_metadata, cors_middleware
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import InvalidRedirectUriError, OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl, PrivateAttr
from starlette.routing import Route

from tests.servers.mcp_server import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    _exit_with_parent,
    _numbered_tools,
    _read_body,
    _send_json,
)

logger = logging.getLogger("tests.servers.oauth_mcp_server")

MCP_PATH = "/mcp"
CONTROL_PATH = "/_control"
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"
PRM_ROOT_PATH = "/.well-known/oauth-protected-resource"
PRM_PATH = PRM_ROOT_PATH + MCP_PATH
OIDC_METADATA_PATH = "/.well-known/openid-configuration"
AUTHORIZE_PATH = "/authorize"
TOKEN_PATH = "/token"
REVOKE_PATH = "/revoke"
CODE_TTL_SECONDS = 300
SUBJECT = "test-user"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# The client authentication method of the token/revocation request being handled; see InMemoryOAuthProvider.
_request_auth_method: contextvars.ContextVar[str] = contextvars.ContextVar("auth_method", default="client_secret_post")


@dataclass
class OAuthServerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    tools: int = 3
    scopes: list[str] = field(default_factory=lambda: ["tools:read"])
    call_scopes: list[str] = field(default_factory=list)
    registration: bool = True
    client_id: str | None = None
    client_secret: str | None = None
    client_redirect_uris: list[str] = field(default_factory=list)
    cimd: bool = False
    cimd_prefix: str = "http://127.0.0.1"
    access_token_ttl: float = 3600.0
    rotate: bool = True
    refresh_delay: float = 0.0
    iss: bool = True
    prm: bool = True
    as_metadata: bool = True
    client_credentials: bool = False
    client_public_key: str | None = None
    exit_with_parent: bool = False


@dataclass
class Stats:
    """Counters for ``GET /_control/stats``."""

    registrations: int = 0  # successful RFC 7591 registrations
    authorizations: int = 0  # codes issued by /authorize
    token_requests: dict[str, int] = field(
        default_factory=lambda: {"authorization_code": 0, "refresh_token": 0, "client_credentials": 0}
    )
    refresh_failures: int = 0  # refresh_token grant requests not answered 200
    revocations: int = 0  # RFC 7009 requests answered 200 (which includes unknown tokens, per the RFC)
    mcp_requests: int = 0  # every HTTP request to /mcp
    mcp_unauthorized: int = 0  # those answered 401
    mcp_insufficient_scope: int = 0  # tools/call requests answered 403 for want of a --call-scopes scope
    tool_calls: int = 0  # tools/call requests that reached the tools
    # Parameters as sent (None when absent) by the last /authorize and /token requests; None before the first.
    last_authorize: dict[str, str | None] | None = None
    last_token_request: dict[str, str | None] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "registrations": self.registrations,
            "authorizations": self.authorizations,
            "token_requests": dict(self.token_requests),
            "refresh_failures": self.refresh_failures,
            "revocations": self.revocations,
            "mcp_requests": self.mcp_requests,
            "mcp_unauthorized": self.mcp_unauthorized,
            "mcp_insufficient_scope": self.mcp_insufficient_scope,
            "tool_calls": self.tool_calls,
            "last_authorize": self.last_authorize,
            "last_token_request": self.last_token_request,
        }


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme, parts.hostname, port


def _is_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


class FlexibleRedirectClient(OAuthClientInformationFull):
    """A client record whose redirect_uri check is a rule (listed URIs, one origin, any loopback URI)."""

    _uris: tuple[str, ...] = PrivateAttr(default=())
    _origin: tuple[str, str | None, int | None] | None = PrivateAttr(default=None)
    _any_loopback: bool = PrivateAttr(default=False)

    def allowing(
        self,
        *,
        uris: tuple[str, ...] = (),
        origin: tuple[str, str | None, int | None] | None = None,
        any_loopback: bool = False,
    ) -> FlexibleRedirectClient:
        self._uris, self._origin, self._any_loopback = uris, origin, any_loopback
        return self

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is None:
            if len(self._uris) == 1:
                return AnyUrl(self._uris[0])
            raise InvalidRedirectUriError("redirect_uri is required for this client")
        uri = str(redirect_uri)
        if (
            uri in self._uris
            or (self._origin is not None and _origin(uri) == self._origin)
            or (self._any_loopback and _is_loopback_http(uri))
        ):
            return redirect_uri
        raise InvalidRedirectUriError(f"Redirect URI '{redirect_uri}' not allowed for client")


class GrantAccessToken(AccessToken):
    grant: str
    valid_until: float


class GrantRefreshToken(RefreshToken):
    grant: str


class InMemoryOAuthProvider(OAuthAuthorizationServerProvider[AuthorizationCode, GrantRefreshToken, GrantAccessToken]):
    """Clients, codes and tokens in dicts. Tokens of one authorization share a grant id: revoking one revokes all."""

    def __init__(self, options: OAuthServerOptions, stats: Stats, resource: str) -> None:
        self.options = options
        self.stats = stats
        self.resource = resource
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, GrantAccessToken] = {}
        self.refresh_tokens: dict[str, GrantRefreshToken] = {}
        self.preregistered: FlexibleRedirectClient | None = None
        if options.client_id is not None:
            self.preregistered = self._preregistered_client(options)

    def _preregistered_client(self, options: OAuthServerOptions) -> FlexibleRedirectClient:
        assert options.client_id is not None
        uris = list(options.client_redirect_uris)
        client = FlexibleRedirectClient(
            client_id=options.client_id,
            client_secret=options.client_secret,
            client_id_issued_at=int(time.time()),
            client_secret_expires_at=0 if options.client_secret else None,
            token_endpoint_auth_method="client_secret_post" if options.client_secret else "none",
            redirect_uris=[AnyUrl(uri) for uri in uris] or None,
            scope=" ".join(options.scopes),
            client_name="pre-registered test client",
        )
        return client.allowing(uris=tuple(uris), any_loopback=not uris)

    # -- clients ---------------------------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        pre = self.preregistered
        if pre is not None and client_id == pre.client_id:
            if not pre.client_secret:
                return pre
            # The SDK's ClientAuthenticator accepts only the method on record; this client may use either.
            return pre.model_copy(update={"token_endpoint_auth_method": _request_auth_method.get()})
        if client_id in self.clients:
            return self.clients[client_id]
        if self.options.cimd and client_id.startswith(self.options.cimd_prefix):
            parts = urlsplit(client_id)
            if parts.scheme in ("http", "https") and parts.hostname:
                origin = _origin(client_id)
                client = FlexibleRedirectClient(
                    client_id=client_id,
                    token_endpoint_auth_method="none",
                    scope=" ".join(self.options.scopes),
                )
                return client.allowing(origin=origin)
        return None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info
        self.stats.registrations += 1

    # -- authorization code ----------------------------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and params.resource != self.resource:
            raise AuthorizeError("invalid_target", f"unknown resource; this server is {self.resource}")
        scopes = params.scopes or (client.scope.split() if client.scope else list(self.options.scopes))
        code = secrets.token_urlsafe(32)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=scopes,
            expires_at=time.time() + CODE_TTL_SECONDS,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=SUBJECT,
        )
        self.stats.authorizations += 1
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        code = self.codes.get(authorization_code)
        return code if code is not None and code.client_id == client.client_id else None

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        # Popping makes the code single-use even for concurrent exchanges.
        if self.codes.pop(authorization_code.code, None) is None:
            raise TokenError("invalid_grant", "authorization code already used")
        return self._issue(client.client_id, authorization_code.scopes, secrets.token_hex(8), None)

    # -- refresh ---------------------------------------------------------------------------------------------

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> GrantRefreshToken | None:
        token = self.refresh_tokens.get(refresh_token)
        return token if token is not None and token.client_id == client.client_id else None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: GrantRefreshToken, scopes: list[str]
    ) -> OAuthToken:
        if refresh_token.token not in self.refresh_tokens:
            raise TokenError("invalid_grant", "refresh token already used or revoked")
        if self.options.rotate:
            del self.refresh_tokens[refresh_token.token]
            return self._issue(client.client_id, scopes, refresh_token.grant, None)
        return self._issue(client.client_id, scopes, refresh_token.grant, refresh_token.token)

    # -- access ----------------------------------------------------------------------------------------------

    async def load_access_token(self, token: str) -> GrantAccessToken | None:
        access = self.access_tokens.get(token)
        if access is None or access.valid_until <= time.time():
            return None
        return access

    async def revoke_token(self, token: GrantAccessToken | GrantRefreshToken) -> None:
        self._drop_grant(token.grant)

    # -- helpers ---------------------------------------------------------------------------------------------

    def issue_client_credentials(self, client_id: str, scopes: list[str]) -> OAuthToken:
        token = self._issue(client_id, scopes, secrets.token_hex(8), None)
        if token.refresh_token is not None:
            self.refresh_tokens.pop(token.refresh_token, None)
        return token.model_copy(update={"refresh_token": None})

    def _issue(self, client_id: str, scopes: list[str], grant: str, refresh: str | None) -> OAuthToken:
        ttl = self.options.access_token_ttl
        valid_until = time.time() + ttl
        access = secrets.token_urlsafe(32)
        self.access_tokens[access] = GrantAccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=math.ceil(valid_until),
            resource=self.resource,
            subject=SUBJECT,
            grant=grant,
            valid_until=valid_until,
        )
        if refresh is None:
            refresh = secrets.token_urlsafe(32)
            self.refresh_tokens[refresh] = GrantRefreshToken(
                token=refresh, client_id=client_id, scopes=scopes, resource=self.resource, subject=SUBJECT, grant=grant
            )
        return OAuthToken(access_token=access, expires_in=math.ceil(ttl), scope=" ".join(scopes), refresh_token=refresh)

    def _drop_grant(self, grant: str) -> None:
        self.access_tokens = {k: v for k, v in self.access_tokens.items() if v.grant != grant}
        self.refresh_tokens = {k: v for k, v in self.refresh_tokens.items() if v.grant != grant}

    def revoke_all(self) -> int:
        count = len(self.access_tokens) + len(self.refresh_tokens)
        self.codes.clear()
        self.access_tokens.clear()
        self.refresh_tokens.clear()
        return count

    def expire_all(self) -> int:
        now = time.time()
        live = [token for token in self.access_tokens.values() if token.valid_until > now]
        for token in live:
            token.valid_until = now - 1
            token.expires_at = math.floor(now) - 1
        return len(live)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive() that yields ``body`` (already read from ``receive``) once, then defers to ``receive``."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _basic_client_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client_id of an ``Authorization: Basic`` header, or None if there is none (or it is malformed)."""
    for name, value in headers:
        if name.lower() == b"authorization" and value[:6].lower() == b"basic ":
            try:
                decoded = base64.b64decode(value[6:].strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                return ""
            return unquote(decoded.split(":", 1)[0])
    return None


class OAuthControlApp:
    """ASGI wrapper in front of the SDK's app: control API, stats, resource checks at /token, ``iss`` and ``scope``."""

    def __init__(self, inner: ASGIApp, provider: InMemoryOAuthProvider, options: OAuthServerOptions, port: int) -> None:
        self.inner = inner
        self.provider = provider
        self.stats = provider.stats
        self.options = options
        self.base_url = f"http://127.0.0.1:{port}"
        self.resource = self.base_url + MCP_PATH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/"):
            await self._control(scope, receive, send)
        elif (not self.options.prm and path.startswith(PRM_ROOT_PATH)) or (
            not self.options.as_metadata and path in (AS_METADATA_PATH, OIDC_METADATA_PATH)
        ):
            await _send_json(send, 404, {"error": "not_found"})
        elif path == MCP_PATH:
            await self._mcp(scope, receive, send)
        elif path == AUTHORIZE_PATH and method in ("GET", "POST"):
            await self._authorize(scope, receive, send)
        elif path == TOKEN_PATH and method == "POST":
            await self._token(scope, receive, send)
        elif path == REVOKE_PATH and method == "POST":
            await self._revoke(scope, receive, send)
        else:
            await self.inner(scope, receive, send)

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats.mcp_requests += 1
        challenge_scope = f', scope="{" ".join(self.options.scopes)}"'.encode()

        async def send_with_scope(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                if message["status"] == 401:
                    self.stats.mcp_unauthorized += 1
                # The SDK's challenge names error and resource_metadata; clients also want the scope to ask for.
                message["headers"] = [
                    (name, self._challenge(value) + challenge_scope if name.lower() == b"www-authenticate" else value)
                    for name, value in message["headers"]
                ]
            await send(message)

        if scope["method"] == "POST":
            body = await _read_body(receive)
            receive = _replaying(body, receive)
            try:
                method = json.loads(body).get("method") if body else None
            except (ValueError, AttributeError):
                method = None
            if method == "tools/call":
                if await self._lacks_call_scopes(scope["headers"]):
                    await self._insufficient_scope(send)
                    return
                self.stats.tool_calls += 1
        await self.inner(scope, receive, send_with_scope)

    def _challenge(self, value: bytes) -> bytes:
        if self.options.prm:
            return value
        # A 2025-03-26 era server names no resource metadata.
        return re.sub(rb',?\s*resource_metadata="[^"]*"', b"", value).replace(b"Bearer , ", b"Bearer ")

    async def _lacks_call_scopes(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if not self.options.call_scopes:
            return False
        authorization = dict((k.lower(), v) for k, v in headers).get(b"authorization", b"").decode("latin-1")
        token = authorization[7:] if authorization[:7].lower() == "bearer " else ""
        access = await self.provider.load_access_token(token)
        # No valid token at all: the SDK's own 401 handles it.
        return access is not None and not set(self.options.call_scopes) <= set(access.scopes)

    async def _insufficient_scope(self, send: Send) -> None:
        self.stats.mcp_insufficient_scope += 1
        wanted = " ".join([*self.options.scopes, *self.options.call_scopes])
        challenge = (
            f'Bearer error="insufficient_scope", scope="{wanted}", resource_metadata="{self.base_url}{PRM_PATH}"'
        )
        await _send_json(send, 403, {"error": "insufficient_scope"}, ((b"www-authenticate", challenge.encode()),))

    async def _authorize(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive) if scope["method"] == "POST" else b""
        raw = body if scope["method"] == "POST" else scope["query_string"]
        params = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        self.stats.last_authorize = {
            name: params.get(name) for name in ("scope", "resource", "code_challenge_method", "redirect_uri")
        }
        iss = self.base_url.encode()

        async def send_with_iss(message: Message) -> None:
            # RFC 9207: every authorization response (errors too) names the issuer; the SDK leaves it to us.
            if message["type"] == "http.response.start" and message["status"] == 302 and self.options.iss:
                message["headers"] = [
                    (name, _add_iss(value, iss) if name.lower() == b"location" else value)
                    for name, value in message["headers"]
                ]
            await send(message)

        await self.inner(scope, _replaying(body, receive), send_with_iss)

    async def _token(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        form = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        grant_type = form.get("grant_type")
        basic = _basic_client_id(headers) is not None
        auth_method = "client_secret_basic" if basic else "client_secret_post" if "client_secret" in form else "none"
        if "client_assertion" in form:
            auth_method = "private_key_jwt"
        self.stats.last_token_request = {
            "resource": form.get("resource"),
            "auth_method": auth_method,
            "grant_type": grant_type,
        }
        if grant_type in self.stats.token_requests:
            self.stats.token_requests[grant_type] += 1
        is_refresh = grant_type == "refresh_token"
        if is_refresh and self.options.refresh_delay > 0:
            await anyio.sleep(self.options.refresh_delay)
        if grant_type == "client_credentials" and self.options.client_credentials:
            await self._client_credentials(form, headers, send)
            return
        resource = form.get("resource")
        if resource is not None and resource != self.resource:
            # The SDK does not hand the token request's resource to the provider, so it is checked here.
            if is_refresh:
                self.stats.refresh_failures += 1
            error = {"error": "invalid_target", "error_description": f"unknown resource; this is {self.resource}"}
            await _send_json(send, 400, error, ((b"cache-control", b"no-store"),))
            return

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start" and is_refresh and message["status"] != 200:
                self.stats.refresh_failures += 1
            await send(message)

        method_token = _request_auth_method.set("client_secret_basic" if basic else "client_secret_post")
        try:
            await self.inner(scope, _replaying(body, receive), send_counting)
        finally:
            _request_auth_method.reset(method_token)

    async def _client_credentials(self, form: dict[str, str], headers: list[tuple[bytes, bytes]], send: Send) -> None:
        no_store = ((b"cache-control", b"no-store"),)
        options = self.options
        if form.get("resource") not in (None, self.resource):
            await _send_json(send, 400, {"error": "invalid_target"}, no_store)
            return
        if not self._client_authenticated(form, headers):
            await _send_json(send, 401, {"error": "invalid_client"}, no_store)
            return
        assert options.client_id is not None
        scopes = form["scope"].split() if form.get("scope") else list(options.scopes)
        token = self.provider.issue_client_credentials(options.client_id, scopes)
        await _send_json(send, 200, token.model_dump(exclude_none=True), no_store)

    def _client_authenticated(self, form: dict[str, str], headers: list[tuple[bytes, bytes]]) -> bool:
        options = self.options
        if options.client_public_key is not None:
            if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return False
            try:
                claims = jwt.decode(
                    form.get("client_assertion", ""),
                    options.client_public_key,
                    algorithms=["ES256", "RS256", "PS256", "EdDSA"],
                    audience=[self.base_url, self.base_url + "/"],
                    options={"require": ["iss", "sub", "aud", "exp"]},
                )
            except jwt.PyJWTError:
                return False
            return claims["iss"] == claims["sub"] == options.client_id
        for name, value in headers:
            if name.lower() == b"authorization" and value[:6].lower() == b"basic ":
                try:
                    client_id, _, secret = base64.b64decode(value[6:].strip()).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    return False
                return (unquote(client_id), unquote(secret)) == (options.client_id, options.client_secret)
        return (form.get("client_id"), form.get("client_secret")) == (options.client_id, options.client_secret)

    async def _revoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        basic = _basic_client_id(scope["headers"]) is not None

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.stats.revocations += 1
            await send(message)

        method_token = _request_auth_method.set("client_secret_basic" if basic else "client_secret_post")
        try:
            await self.inner(scope, receive, send_counting)
        finally:
            _request_auth_method.reset(method_token)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == CONTROL_PATH + "/stats":
            await _send_json(send, 200, self.stats.as_json())
            return
        if method != "POST" or path not in (CONTROL_PATH, CONTROL_PATH + "/revoke", CONTROL_PATH + "/expire"):
            await _send_json(send, 404, {"error": "unknown control endpoint"})
            return
        command: dict[str, Any] = {}
        body = await _read_body(receive)
        if path == CONTROL_PATH:
            try:
                command = dict(json.loads(body or b"{}"))
            except (ValueError, TypeError):
                await _send_json(send, 400, {"error": "body is not a JSON object"})
                return
        result: dict[str, Any] = {"ok": True}
        if path.endswith("/revoke") or command.get("revoke"):
            result["revoked"] = self.provider.revoke_all()
        if path.endswith("/expire") or command.get("expire"):
            result["expired"] = self.provider.expire_all()
        await _send_json(send, 200, result)


def _add_iss(location: bytes, iss: bytes) -> bytes:
    parts = urlsplit(location.decode("latin-1"))
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "iss" for name, _ in query):
        return location
    query.append(("iss", iss.decode()))
    return urlunsplit(parts._replace(query=urlencode(query))).encode("latin-1")


def build_app(options: OAuthServerOptions, port: int) -> OAuthControlApp:
    base_url = f"http://127.0.0.1:{port}"
    resource = base_url + MCP_PATH
    stats = Stats()
    provider = InMemoryOAuthProvider(options, stats, resource)
    registration = ClientRegistrationOptions(
        enabled=options.registration,
        valid_scopes=[*options.scopes, *options.call_scopes],
        default_scopes=list(options.scopes),
    )
    revocation = RevocationOptions(enabled=True)
    # Strings, not AnyHttpUrl objects: only validation from a string keeps the issuer free of a trailing slash
    # (RFC 8414 / 9207 compare issuers as plain strings).
    auth = AuthSettings.model_validate(
        {
            "issuer_url": base_url,
            "resource_server_url": resource,
            "validate_token_resource": True,
            "required_scopes": list(options.scopes),
            "client_registration_options": registration,
            "revocation_options": revocation,
        }
    )
    server: MCPServer[Any] = MCPServer(
        "test-oauth-mcp-server",
        auth_server_provider=provider,
        auth=auth,
        tools=_numbered_tools(options.tools),
        log_level="WARNING",
    )
    # host 127.0.0.1 makes the SDK allow Host 127.0.0.1:* and localhost:* (DNS-rebinding protection).
    starlette_app = server.streamable_http_app(host="127.0.0.1")

    # The SDK's own metadata document, plus the two capabilities it cannot express through AuthSettings.
    metadata = build_metadata(auth.issuer_url, None, registration, revocation)
    if options.cimd:
        metadata.client_id_metadata_document_supported = True
    if options.iss:
        metadata.authorization_response_iss_parameter_supported = True
    routes = starlette_app.router.routes
    for index, route in enumerate(routes):
        if isinstance(route, Route) and route.path == AS_METADATA_PATH:
            routes[index] = Route(
                AS_METADATA_PATH,
                endpoint=cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"]),
                methods=["GET", "OPTIONS"],
            )
    return OAuthControlApp(starlette_app, provider, options, port)


def parse_args(argv: list[str] | None = None) -> OAuthServerOptions:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.oauth_mcp_server", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (URLs always say 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tools", type=int, default=3)
    parser.add_argument("--scopes", default="tools:read", help="space-separated supported (and required) scopes")
    parser.add_argument("--call-scopes", default="", help="space-separated scopes tools/call needs on top (step-up)")
    parser.add_argument("--no-registration", action="store_true", help="no dynamic client registration")
    parser.add_argument("--client-id", help="pre-register a client with this id")
    parser.add_argument("--client-secret", help="its secret (without one the client is public)")
    parser.add_argument(
        "--client-redirect-uri", action="append", default=[], metavar="URI", help="its redirect URIs (repeatable)"
    )
    parser.add_argument("--cimd", action="store_true", help="accept URL client_ids (see the module docstring)")
    parser.add_argument("--cimd-prefix", default="http://127.0.0.1", metavar="PREFIX")
    parser.add_argument("--access-token-ttl", type=float, default=3600.0, metavar="SECONDS")
    parser.add_argument("--no-rotate", action="store_true", help="refresh tokens stay valid after use")
    parser.add_argument("--refresh-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--no-iss", action="store_true", help="no RFC 9207 iss in authorization responses")
    parser.add_argument("--client-credentials", action="store_true", help="grant client_credentials (see above)")
    parser.add_argument("--client-public-key", metavar="PEM_FILE", help="the client's key for private_key_jwt")
    parser.add_argument("--no-prm", action="store_true", help="no protected resource metadata (2025-03-26 era)")
    parser.add_argument("--no-as-metadata", action="store_true", help="no authorization server metadata either")
    parser.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process dies")
    args = parser.parse_args(argv)
    scopes = args.scopes.split()
    if not scopes:
        parser.error("--scopes needs at least one scope")
    if args.client_secret is not None and args.client_id is None:
        parser.error("--client-secret needs --client-id")
    return OAuthServerOptions(
        host=args.host,
        port=args.port,
        tools=args.tools,
        scopes=scopes,
        call_scopes=args.call_scopes.split(),
        registration=not args.no_registration,
        client_id=args.client_id,
        client_secret=args.client_secret,
        client_redirect_uris=list(args.client_redirect_uri),
        cimd=args.cimd,
        cimd_prefix=args.cimd_prefix,
        access_token_ttl=args.access_token_ttl,
        rotate=not args.no_rotate,
        refresh_delay=args.refresh_delay,
        iss=not args.no_iss,
        prm=not args.no_prm,
        client_credentials=args.client_credentials,
        client_public_key=Path(args.client_public_key).read_text() if args.client_public_key else None,
        as_metadata=not args.no_as_metadata,
        exit_with_parent=args.exit_with_parent,
    )


async def serve(options: OAuthServerOptions) -> None:
    # Bind first: the issuer and resource URLs contain the port, and --port 0 only picks one on bind.
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY on accepted connections only when the listening socket
    # says it is TCP, and without it Nagle holds a response body behind its headers for a delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, options.port))
    port = sock.getsockname()[1]
    app = build_app(options, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=1)
    userver = uvicorn.Server(config)

    async with anyio.create_task_group() as tg:
        tg.start_soon(userver.serve, [sock])
        while not userver.started:
            if userver.should_exit:
                return
            await anyio.sleep(0.01)
        print(f"LISTENING http://127.0.0.1:{port}{MCP_PATH}", flush=True)
        if options.exit_with_parent:
            tg.start_soon(_exit_with_parent, userver)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, options)
    sys.exit(0)


if __name__ == "__main__":
    main()
