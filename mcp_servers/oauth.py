"""OAuth discovery for remote MCP servers: find the authorization server a server's 401 challenge points at.

This is the only module of the project that speaks OAuth. It follows the MCP authorization specification
(revisions 2025-06-18 and 2025-11-25):

1. Protected resource metadata (RFC 9728): from the challenge's ``resource_metadata`` URL if it names one,
   then the well-known URIs built from the MCP server URL, path-suffixed first, then the root one. A candidate
   that answers 404 (any 3xx/4xx, or a redirect that is not followed) is skipped; 429 and 5xx stop discovery.
   A document whose ``resource`` does not cover the MCP server URL is refused (RFC 9728 section 3.3). When no
   candidate serves a document the server publishes none, and its origin is taken as the issuer (the spec's
   fallback for servers without protected resource metadata).
2. Authorization server metadata for the first listed authorization server: RFC 8414 then OpenID Connect
   discovery, in the spec's order for issuers with and without a path. The document's ``issuer`` must be the
   issuer it was fetched for (simple string comparison; a root issuer with or without its trailing slash counts
   as the same, as the SDK does).

Security rules:

* every URL is passed to ``mcp_servers.outbound.check_url`` before it is fetched (the resource metadata URL,
  every well-known URL, every redirect target) and so is every endpoint in the authorization server metadata;
  ``DestinationRefused`` propagates unchanged, also when an HTTP client wraps it, ``InvalidUrl`` becomes
  ``OAuthError``;
* the issuer and the authorization, token, registration and revocation endpoints must use https, unless their
  host is on ``MCP_OUTBOUND_ALLOWLIST`` (which is how local development and tests reach ``http://127.0.0.1``);
* redirects are followed only within the origin of the request (``next_request_within_origin`` from the SDK) and
  at most ``MAX_REDIRECTS`` times; a redirect elsewhere counts as "no document here";
* documents are read as streams and refused once they pass ``max_document_bytes`` (``Accept-Encoding:
  identity`` is requested, so the count is of the decoded bytes); they must be JSON objects;
* metadata requests carry no credentials: the caller's client may have default headers, cookies or auth meant
  for the MCP server, so every request is sent with only the headers built here and without client auth.

Time is not bounded here beyond the client's own timeouts: wrap the call in ``anyio.fail_after`` for a total
bound. ``str()`` of an ``OAuthError`` is a plain sentence naming at most a host; it never contains a
response body or a header value.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import anyio
import httpx2
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    is_valid_client_metadata_url,
    issuers_match,
)
from mcp.shared._httpx_utils import next_request_within_origin
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url
from mcp_types import LATEST_PROTOCOL_VERSION

from core import exception_groups
from mcp_servers.client import AuthChallenge
from mcp_servers.outbound import CheckedUrl, DestinationRefused, InvalidUrl, check_url, is_allowlisted

__all__ = [
    "MAX_REDIRECTS",
    "AuthorizationServerMetadata",
    "ClientCredentials",
    "OAuthDiscovery",
    "OAuthError",
    "OAuthGrantRejected",
    "ProtectedResourceMetadata",
    "TokenSet",
    "adiscover",
    "discover",
    "run",
]

MAX_REDIRECTS: Final = 3
DEFAULT_MAX_DOCUMENT_BYTES: Final = 1_000_000

# Only these headers leave with a metadata request; the client's defaults (auth, cookies, static headers) do not.
_KEPT_CLIENT_HEADERS: Final = frozenset({"host", "user-agent", "connection"})
_REQUEST_HEADERS: Final = {
    "accept": "application/json",
    "accept-encoding": "identity",
    "mcp-protocol-version": LATEST_PROTOCOL_VERSION,
}
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_PRM: Final = "protected resource metadata"
_ASM: Final = "authorization server metadata"


@dataclass(frozen=True)
class ProtectedResourceMetadata:
    resource: str | None
    authorization_servers: list[str]
    scopes_supported: list[str] | None


@dataclass(frozen=True)
class AuthorizationServerMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None
    revocation_endpoint: str | None
    scopes_supported: list[str] | None
    code_challenge_methods_supported: list[str] | None
    client_id_metadata_document_supported: bool
    token_endpoint_auth_methods_supported: list[str] | None = None
    authorization_response_iss_parameter_supported: bool = False


@dataclass(frozen=True)
class OAuthDiscovery:
    # None when the server publishes none; then the server's origin is the issuer (the MCP spec's fallback).
    protected_resource: ProtectedResourceMetadata | None
    authorization_server: AuthorizationServerMetadata


class OAuthError(Exception):
    """An OAuth step failed; ``str(exc)`` is a plain sentence for a user, never a response body or header value.

    ``transient`` is true when trying again later may help (connection failures, timeouts, 429 and 5xx).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def discover(
    server_url: str,
    challenge: AuthChallenge,
    http: httpx2.AsyncClient,
    *,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    total_seconds: float | None = None,
) -> OAuthDiscovery:
    """Blocking ``adiscover`` for Celery tasks; must not be called from a running event loop.

    Takes ownership of ``http`` and closes it before returning: its connections belong to the event loop this call
    starts and cannot outlive it. Pass a fresh client, not one used in another event loop. ``total_seconds`` bounds
    the whole discovery (every request together).
    """
    return anyio.run(
        functools.partial(
            _discover_and_close,
            server_url,
            challenge,
            http,
            max_document_bytes=max_document_bytes,
            total_seconds=total_seconds,
        )
    )


async def _discover_and_close(
    server_url: str,
    challenge: AuthChallenge,
    http: httpx2.AsyncClient,
    *,
    max_document_bytes: int,
    total_seconds: float | None,
) -> OAuthDiscovery:
    async with http:
        try:
            with anyio.fail_after(total_seconds):
                return await adiscover(server_url, challenge, http, max_document_bytes=max_document_bytes)
        except TimeoutError:
            raise OAuthError(
                f"Reading the server's OAuth metadata took longer than {total_seconds:g} seconds.", transient=True
            ) from None


async def adiscover(
    server_url: str,
    challenge: AuthChallenge,
    http: httpx2.AsyncClient,
    *,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> OAuthDiscovery:
    """Discover the protected resource and authorization server metadata for the MCP server at ``server_url``.

    ``challenge`` is what the server's 401 said. ``http`` should not follow redirects by itself; every request is
    sent with ``follow_redirects=False`` anyway and same-origin redirects are followed here.

    Raises:
        DestinationRefused: a URL or endpoint is refused by the outbound address policy.
        OAuthError: for every other failure.
    """
    try:
        return await _Discovery(server_url, http, max_document_bytes).run(challenge)
    except OAuthError as exc:
        error = exc
    # Raised detached, so no HTTP client or URL-parsing exception rides along with the message.
    error.__cause__ = error.__context__ = None
    raise error


class _NotServed(Exception):
    """A candidate URL has no document (3xx not followed, 4xx other than 429); try the next one."""


class _Discovery:
    def __init__(self, server_url: str, http: httpx2.AsyncClient, max_document_bytes: int) -> None:
        self.server_url = server_url
        self.http = http
        self.max_bytes = max_document_bytes
        self.redirect_refused = False

    async def run(self, challenge: AuthChallenge) -> OAuthDiscovery:
        server = _check(self.server_url, "The MCP server URL")
        protected_resource = await self._protected_resource(challenge.resource_metadata_url)
        # Without protected resource metadata the server's origin is the issuer (the MCP spec's fallback).
        issuer = protected_resource.authorization_servers[0] if protected_resource is not None else _origin(server)
        authorization_server = await self._authorization_server(issuer)
        return OAuthDiscovery(protected_resource=protected_resource, authorization_server=authorization_server)

    async def _protected_resource(self, resource_metadata_url: str | None) -> ProtectedResourceMetadata | None:
        if resource_metadata_url is not None:
            # Checked before anything is fetched: a refused challenge URL must not fall back to other requests.
            _check(resource_metadata_url, "The resource_metadata URL in the server's challenge")
        candidates = build_protected_resource_metadata_discovery_urls(resource_metadata_url, self.server_url)
        for url in dict.fromkeys(candidates):  # the challenge may name a well-known URI; ask once
            checked = _check(url, "A protected resource metadata URL")
            try:
                document = await self._fetch_json(checked, _PRM)
            except _NotServed:
                continue
            return self._parse_protected_resource(document, checked)
        return None

    async def _authorization_server(self, issuer: str) -> AuthorizationServerMetadata:
        checked_issuer = _check(issuer, "The authorization server URL")
        _require_https(checked_issuer, "The authorization server's issuer URL")
        parts = urlsplit(issuer)
        if parts.query:
            raise OAuthError(f"The authorization server URL for {_host(checked_issuer)} is not an issuer.")
        for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, self.server_url):
            checked = _check(url, "An authorization server metadata URL")
            try:
                document = await self._fetch_json(checked, _ASM)
            except _NotServed:
                continue
            return self._parse_authorization_server(document, checked, issuer)
        note = " (a redirect to another origin was not followed)" if self.redirect_refused else ""
        raise OAuthError(f"No OAuth authorization server metadata was found for {_host(checked_issuer)}{note}.")

    def _parse_protected_resource(self, document: dict[str, Any], source: CheckedUrl) -> ProtectedResourceMetadata:
        host = _host(source)
        try:
            resource = _optional_str(document, "resource")
            servers = _optional_str_list(document, "authorization_servers")
            scopes = _optional_str_list(document, "scopes_supported")
        except _Malformed:
            raise OAuthError(f"The OAuth {_PRM} from {host} is malformed.") from None
        if not servers:
            raise OAuthError(f"The OAuth {_PRM} from {host} lists no authorization server.")
        if resource is not None and not check_resource_allowed(resource_url_from_server_url(self.server_url), resource):
            raise OAuthError(f"The OAuth {_PRM} from {host} describes a different resource.")
        return ProtectedResourceMetadata(resource=resource, authorization_servers=servers, scopes_supported=scopes)

    def _parse_authorization_server(
        self, document: dict[str, Any], source: CheckedUrl, expected_issuer: str
    ) -> AuthorizationServerMetadata:
        host = _host(source)
        try:
            issuer = _required_str(document, "issuer")
            authorization_endpoint = _required_str(document, "authorization_endpoint")
            token_endpoint = _required_str(document, "token_endpoint")
            registration_endpoint = _optional_str(document, "registration_endpoint")
            revocation_endpoint = _optional_str(document, "revocation_endpoint")
            scopes = _optional_str_list(document, "scopes_supported")
            pkce_methods = _optional_str_list(document, "code_challenge_methods_supported")
            cimd = document.get("client_id_metadata_document_supported")
            if cimd is not None and not isinstance(cimd, bool):
                raise _Malformed
            auth_methods = _optional_str_list(document, "token_endpoint_auth_methods_supported")
            iss_supported = document.get("authorization_response_iss_parameter_supported")
            if iss_supported is not None and not isinstance(iss_supported, bool):
                raise _Malformed
        except _Malformed:
            raise OAuthError(f"The OAuth {_ASM} from {host} is malformed.") from None
        # RFC 8414 section 3.3: simple string comparison, except that a root issuer with and without its trailing
        # slash name the same server (the SDK's rule).
        if not issuers_match(issuer, expected_issuer):
            raise OAuthError(f"The OAuth {_ASM} from {host} names a different issuer than the one it was fetched for.")
        endpoints = {
            "authorization": authorization_endpoint,
            "token": token_endpoint,
            "registration": registration_endpoint,
            "revocation": revocation_endpoint,
        }
        for name, url in endpoints.items():
            if url is not None:
                what = f"The authorization server's {name} endpoint"
                _require_https(_check(url, what), what)
        return AuthorizationServerMetadata(
            issuer=issuer,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            registration_endpoint=registration_endpoint,
            revocation_endpoint=revocation_endpoint,
            scopes_supported=scopes,
            code_challenge_methods_supported=pkce_methods,
            client_id_metadata_document_supported=cimd is True,
            token_endpoint_auth_methods_supported=auth_methods,
            authorization_response_iss_parameter_supported=iss_supported is True,
        )

    async def _fetch_json(self, checked: CheckedUrl, what: str) -> dict[str, Any]:
        body = await self._fetch(checked, what)
        host = _host(checked)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise OAuthError(f"The OAuth {what} from {host} is not valid JSON.") from None
        if not isinstance(document, dict):
            raise OAuthError(f"The OAuth {what} from {host} is not a JSON object.")
        return document

    async def _fetch(self, checked: CheckedUrl, what: str) -> bytes:
        """GET one document, following same-origin redirects; raises _NotServed when there is none here."""
        refused: DestinationRefused | None = None
        error: OAuthError | None = None
        try:
            return await self._fetch_following(checked, what)
        except (OAuthError, _NotServed):
            raise
        except Exception as exc:
            refused = _find_refused(exc)
            if refused is None:
                error = _translate(exc, _host(checked), what)
                if error is None:
                    raise
        # Raised outside the except block so neither gets the HTTP client's exception as its context.
        if refused is not None:
            raise refused
        assert error is not None
        raise error

    async def _fetch_following(self, checked: CheckedUrl, what: str) -> bytes:
        current = checked
        for hop in range(MAX_REDIRECTS + 1):
            response = await self.http.send(self._request(current.url), stream=True, auth=None, follow_redirects=False)
            try:
                status = response.status_code
                if 300 <= status < 400:
                    following = next_request_within_origin(response)
                    if following is None or hop == MAX_REDIRECTS:
                        self.redirect_refused = True
                        raise _NotServed
                    current = _check(str(following.url), f"A redirect of the {what} request")
                    continue
                if status == 429 or status >= 500:
                    raise OAuthError(
                        f"The server at {_host(current)} answered the OAuth {what} request with HTTP {status}.",
                        transient=True,
                    )
                if status != 200:
                    raise _NotServed
                return await self._read_bounded(response, current, what)
            finally:
                await response.aclose()
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, url: str) -> httpx2.Request:
        request = self.http.build_request("GET", url, headers=_REQUEST_HEADERS)
        for name in list(request.headers.keys()):
            if name.lower() not in _KEPT_CLIENT_HEADERS and name.lower() not in _REQUEST_HEADERS:
                del request.headers[name]
        return request

    async def _read_bounded(self, response: httpx2.Response, checked: CheckedUrl, what: str) -> bytes:
        too_large = OAuthError(
            f"The OAuth {what} from {_host(checked)} is larger than {self.max_bytes} bytes, the most that is read."
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)


class _Malformed(Exception):
    pass


def _required_str(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise _Malformed
    return value


def _optional_str(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _Malformed
    return value


def _optional_str_list(document: dict[str, Any], key: str) -> list[str] | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Malformed
    return list(value)


def _check(url: str, what: str) -> CheckedUrl:
    """``check_url``; DestinationRefused propagates, InvalidUrl becomes OAuthError (without the URL)."""
    try:
        return check_url(url)
    except InvalidUrl:
        raise OAuthError(f"{what} is not a valid http or https URL.") from None


def _require_https(checked: CheckedUrl, what: str) -> None:
    if checked.scheme != "https" and not is_allowlisted(host=checked.host, port=checked.port, ip=checked.ip):
        raise OAuthError(f"{what} at {_host(checked)} must use https.")


def _host(checked: CheckedUrl) -> str:
    host = f"[{checked.host}]" if ":" in checked.host else checked.host
    return host if _DEFAULT_PORTS[checked.scheme] == checked.port else f"{host}:{checked.port}"


def _origin(checked: CheckedUrl) -> str:
    return f"{checked.scheme}://{_host(checked)}"


def _find_refused(exc: BaseException) -> DestinationRefused | None:
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


def _translate(exc: Exception, host: str, what: str) -> OAuthError | None:
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


# --- The authorization code flow (PKCE S256), client registration, token exchange, refresh, revocation ---

_T = TypeVar("_T")
MAX_TOKEN_RESPONSE_BYTES: Final = 64 * 1024
_TOKEN_STEP = "token response"  # noqa: S105 - a label for messages, not a secret
_REGISTRATION_STEP = "client registration"
_REVOCATION_STEP = "token revocation"


class OAuthGrantRejected(OAuthError):
    """The authorization server refused a code or refresh token (`invalid_grant`): a person must authorize again."""


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str | None
    auth_method: str  # "none", "client_secret_basic" or "client_secret_post"


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_in: int | None
    scope: str | None


def same_issuer(a: str, b: str) -> bool:
    """RFC 8414 issuer comparison (a root issuer with and without its trailing slash count as one)."""
    return issuers_match(a, b)


def usable_client_metadata_url(url: str) -> bool:
    """A client ID metadata document URL must be https with a path (the MCP spec)."""
    return is_valid_client_metadata_url(url)


def new_state() -> str:
    return secrets.token_urlsafe(32)


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier (RFC 7636: 43 to 128 characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=")
    return verifier, challenge.decode("ascii")


def supports_pkce_s256(metadata: AuthorizationServerMetadata) -> bool:
    """The MCP spec (2025-11-25) forbids proceeding unless the server advertises S256."""
    return "S256" in (metadata.code_challenge_methods_supported or [])


def resource_for(server_url: str, discovery: OAuthDiscovery) -> str:
    """The RFC 8707 resource indicator: the protected resource's own identifier, else the canonical server URL."""
    prm = discovery.protected_resource
    if prm is not None and prm.resource:
        return prm.resource
    return resource_url_from_server_url(server_url)


def select_scope(challenge: AuthChallenge, discovery: OAuthDiscovery) -> str | None:
    """The spec's order: the challenge's `scope`, else every scope the resource lists, else none (omit it)."""
    if challenge.scope:
        return challenge.scope
    prm = discovery.protected_resource
    if prm is not None and prm.scopes_supported:
        return " ".join(prm.scopes_supported)
    return None


def authorization_url(
    metadata: AuthorizationServerMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    resource: str,
    scope: str | None,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    if scope:
        params["scope"] = scope
    separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
    return f"{metadata.authorization_endpoint}{separator}{urlencode(params)}"


def client_metadata(*, client_name: str, redirect_uri: str, scope: str | None, auth_method: str) -> dict[str, Any]:
    """RFC 7591 client metadata, for dynamic registration and for a client ID metadata document."""
    metadata: dict[str, Any] = {
        "client_name": client_name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": auth_method,
    }
    if scope:
        metadata["scope"] = scope
    return metadata


def registration_auth_method(metadata: AuthorizationServerMetadata) -> str:
    """A confidential client when the server takes one (RFC 8414's default is client_secret_basic).

    client_secret_post comes first when both are offered: some servers (the MCP SDK's among them) want the
    secret in the form at their revocation endpoint whatever the method, and the form works everywhere then.
    """
    supported = metadata.token_endpoint_auth_methods_supported or ["client_secret_basic"]
    for method in ("client_secret_post", "client_secret_basic", "none"):
        if method in supported:
            return method
    return "none"


async def aregister_client(
    http: httpx2.AsyncClient, metadata: AuthorizationServerMetadata, client: dict[str, Any]
) -> ClientCredentials:
    """Dynamic client registration (RFC 7591)."""
    if metadata.registration_endpoint is None:
        raise OAuthError("The authorization server does not offer dynamic client registration.")
    document = await _post(http, metadata.registration_endpoint, _REGISTRATION_STEP, json_body=client)
    client_id = document.get("client_id")
    secret = document.get("client_secret")
    if not isinstance(client_id, str) or not client_id or (secret is not None and not isinstance(secret, str)):
        raise OAuthError("The authorization server's client registration response is malformed.")
    method = document.get("token_endpoint_auth_method", client["token_endpoint_auth_method"])
    if method not in ("none", "client_secret_basic", "client_secret_post") or (method != "none" and not secret):
        method = "none" if not secret else "client_secret_basic"
    return ClientCredentials(client_id=client_id, client_secret=secret, auth_method=method)


async def aexchange_code(
    http: httpx2.AsyncClient,
    token_endpoint: str,
    client: ClientCredentials,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    resource: str,
) -> TokenSet:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri,
        "resource": resource,
    }
    return _token_set(await _post(http, token_endpoint, _TOKEN_STEP, form=form, client=client))


async def arefresh(
    http: httpx2.AsyncClient,
    token_endpoint: str,
    client: ClientCredentials,
    *,
    refresh_token: str,
    resource: str,
    scope: str | None,
) -> TokenSet:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource}
    if scope:
        form["scope"] = scope
    return _token_set(await _post(http, token_endpoint, _TOKEN_STEP, form=form, client=client))


async def arevoke(http: httpx2.AsyncClient, revocation_endpoint: str, client: ClientCredentials, *, token: str) -> None:
    """RFC 7009 revocation; a server that answers 200 has revoked it (or never knew it)."""
    form = {"token": token}
    await _post(http, revocation_endpoint, _REVOCATION_STEP, form=form, client=client, expect_json=False)


def run(http: httpx2.AsyncClient, call: Callable[[httpx2.AsyncClient], Awaitable[_T]], total_seconds: float) -> _T:
    """Run one OAuth call from blocking code (a Celery task) within `total_seconds`; closes `http`."""

    async def main() -> _T:
        async with http:
            try:
                with anyio.fail_after(total_seconds):
                    return await call(http)
            except TimeoutError:
                raise OAuthError(
                    f"The authorization server did not answer within {total_seconds:g} seconds.", transient=True
                ) from None

    return anyio.run(main)


def _token_set(document: dict[str, Any]) -> TokenSet:
    access = document.get("access_token")
    token_type = document.get("token_type", "Bearer")
    refresh = document.get("refresh_token")
    expires_in = document.get("expires_in")
    scope = document.get("scope")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if (
        not isinstance(access, str)
        or not access
        or not isinstance(token_type, str)
        or token_type.lower() != "bearer"
        or (refresh is not None and not isinstance(refresh, str))
        or (expires_in is not None and (not isinstance(expires_in, int) or isinstance(expires_in, bool)))
        or (scope is not None and not isinstance(scope, str))
    ):
        raise OAuthError("The authorization server's token response is malformed.")
    return TokenSet(access_token=access, refresh_token=refresh or None, expires_in=expires_in, scope=scope)


async def _post(
    http: httpx2.AsyncClient,
    url: str,
    what: str,
    *,
    form: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
    client: ClientCredentials | None = None,
    expect_json: bool = True,
) -> dict[str, Any]:
    """POST to an endpoint of the authorization server: no redirects, bounded answer, errors as OAuthError.

    Only the headers built here leave (the client's defaults may carry the MCP server's static headers).
    """
    checked = _check(url, f"The authorization server's {what} endpoint")
    host = _host(checked)
    headers = {"accept": "application/json", "accept-encoding": "identity"}
    if client is not None and form is not None:
        # client_id always goes in the form too: servers commonly require it even with Basic authentication.
        form = {**form, "client_id": client.client_id}
        if client.auth_method == "client_secret_basic" and client.client_secret is not None:
            pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        elif client.auth_method == "client_secret_post" and client.client_secret is not None:
            form["client_secret"] = client.client_secret
    request = http.build_request("POST", checked.url, data=form, json=json_body, headers=headers)
    for name in list(request.headers.keys()):
        if (
            name.lower() not in _KEPT_CLIENT_HEADERS
            and name.lower() not in headers
            and name.lower()
            not in (
                "content-type",
                "content-length",
            )
        ):
            del request.headers[name]
    refused: DestinationRefused | None = None
    error: OAuthError | None = None
    try:
        response = await http.send(request, stream=True, auth=None, follow_redirects=False)
        try:
            body = await _read_limited(response, host, what)
        finally:
            await response.aclose()
    except OAuthError:
        raise
    except Exception as exc:
        refused = _find_refused(exc)
        if refused is None:
            error = _translate(exc, host, what)
            if error is None:
                raise
    if refused is not None:
        raise refused
    if error is not None:
        raise error
    return _interpret(response.status_code, body, host, what, expect_json)


async def _read_limited(response: httpx2.Response, host: str, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_TOKEN_RESPONSE_BYTES:
            raise OAuthError(f"The {what} from {host} is larger than {MAX_TOKEN_RESPONSE_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _interpret(status: int, body: bytes, host: str, what: str, expect_json: bool) -> dict[str, Any]:
    document: Any = None
    try:
        document = json.loads(body) if body else None
    except (ValueError, RecursionError):
        document = None
    if 200 <= status < 300:
        if not expect_json:
            return {}
        if not isinstance(document, dict):
            raise OAuthError(f"The {what} from {host} is not a JSON object.")
        return document
    code = document.get("error") if isinstance(document, dict) else None
    if status in (400, 401) and code == "invalid_grant":
        # The server's error_description is not repeated: it is text from a remote party.
        raise OAuthGrantRejected(f"The authorization server at {host} rejected the grant (invalid_grant).")
    if status == 429 or status >= 500:
        raise OAuthError(f"The authorization server at {host} answered the {what} with HTTP {status}.", transient=True)
    if 300 <= status < 400:
        raise OAuthError(f"The authorization server at {host} redirected the {what}; redirects are not followed.")
    detail = f" ({code})" if isinstance(code, str) and code.replace("_", "").isalnum() and len(code) < 64 else ""
    raise OAuthError(f"The authorization server at {host} refused the {what} with HTTP {status}{detail}.")
