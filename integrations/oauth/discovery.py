"""OAuth discovery for remote MCP servers: find the authorization server a server's 401 challenge points at.

It follows the MCP authorization specification
(revisions 2025-06-18 and 2025-11-25, and the 2025-03-26 revision's discovery for servers of that era):

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
3. A server without protected resource metadata is a server of the 2025-03-26 revision, whose "authorization base
   URL" is the MCP server's origin: its metadata is read from the origin's well-known URIs, and the ``issuer`` it
   names is accepted when it is on that same origin (such servers often name an issuer with a path, say
   ``https://mcp.example.com/oauth``, while publishing its metadata at the root). An issuer on any other origin is
   still refused: the document would otherwise let a server borrow another authorization server's identity, and
   pre-registered clients are chosen by issuer. When the origin serves no metadata at all, that revision's
   default endpoints are used: ``/authorize``, ``/token`` and ``/register`` at the origin (``from_defaults``).
   Servers with protected resource metadata are held to rule 2, unchanged.

Security rules:

* every URL is passed to the caller's outbound policy (``integrations.outbound.check_url``) before it is fetched
  (the resource metadata URL, every well-known URL, every redirect target) and so is every endpoint in the
  authorization server metadata;
  ``DestinationRefused`` propagates unchanged, also when an HTTP client wraps it, ``InvalidUrl`` becomes
  ``OAuthError``;
* the issuer and the authorization, token, registration and revocation endpoints must use https, unless their
  host is allowlisted by the policy (which is how local development and tests reach ``http://127.0.0.1``);
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

import functools
import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    issuers_match,
)
from mcp.shared._httpx_utils import next_request_within_origin
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url
from mcp_types import LATEST_PROTOCOL_VERSION

from integrations.mcp.types import AuthChallenge
from integrations.oauth.errors import OAuthError
from integrations.oauth.http import (
    KEPT_CLIENT_HEADERS,
    check,
    find_refused,
    host_of,
    origin_of,
    read_bounded,
    require_https,
    translate_http_error,
)
from integrations.outbound import CheckedUrl, DestinationRefused, OutboundPolicy

MAX_REDIRECTS: Final = 3
DEFAULT_MAX_DOCUMENT_BYTES: Final = 1_000_000

_REQUEST_HEADERS: Final = {
    "accept": "application/json",
    "accept-encoding": "identity",
    "mcp-protocol-version": LATEST_PROTOCOL_VERSION,
}
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
    # No metadata was published: the 2025-03-26 revision's default endpoints at the MCP server's origin. That
    # revision makes PKCE mandatory for every client, so S256 is used although nothing advertises it.
    from_defaults: bool = False


@dataclass(frozen=True)
class OAuthDiscovery:
    # None when the server publishes none; then the server's origin is the issuer (the MCP spec's fallback).
    protected_resource: ProtectedResourceMetadata | None
    authorization_server: AuthorizationServerMetadata


def discover(
    server_url: str,
    challenge: AuthChallenge,
    http: httpx2.AsyncClient,
    *,
    policy: OutboundPolicy,
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
            policy=policy,
            max_document_bytes=max_document_bytes,
            total_seconds=total_seconds,
        )
    )


async def _discover_and_close(
    server_url: str,
    challenge: AuthChallenge,
    http: httpx2.AsyncClient,
    *,
    policy: OutboundPolicy,
    max_document_bytes: int,
    total_seconds: float | None,
) -> OAuthDiscovery:
    async with http:
        try:
            with anyio.fail_after(total_seconds):
                return await adiscover(
                    server_url, challenge, http, policy=policy, max_document_bytes=max_document_bytes
                )
        except TimeoutError:
            raise OAuthError(
                f"Reading the server's OAuth metadata took longer than {total_seconds:g} seconds.", transient=True
            ) from None


async def adiscover(
    server_url: str,
    challenge: AuthChallenge,
    http: httpx2.AsyncClient,
    *,
    policy: OutboundPolicy,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> OAuthDiscovery:
    """Discover the protected resource and authorization server metadata for the MCP server at ``server_url``.

    ``challenge`` is what the server's 401 said; ``policy`` decides which URLs may be fetched. ``http`` should not
    follow redirects by itself; every request is sent with ``follow_redirects=False`` anyway and same-origin
    redirects are followed here.

    Raises:
        DestinationRefused: a URL or endpoint is refused by the outbound address policy.
        OAuthError: for every other failure.
    """
    try:
        return await _Discovery(server_url, http, max_document_bytes, policy).run(challenge)
    except OAuthError as exc:
        error = exc
    # Raised detached, so no HTTP client or URL-parsing exception rides along with the message.
    error.__cause__ = error.__context__ = None
    raise error


class _NotServed(Exception):
    """A candidate URL has no document (3xx not followed, 4xx other than 429); try the next one."""


class _Discovery:
    def __init__(
        self, server_url: str, http: httpx2.AsyncClient, max_document_bytes: int, policy: OutboundPolicy
    ) -> None:
        self.server_url = server_url
        self.http = http
        self.max_bytes = max_document_bytes
        self.redirect_refused = False
        self.policy = policy

    async def run(self, challenge: AuthChallenge) -> OAuthDiscovery:
        server = check(self.server_url, "The MCP server URL", self.policy)
        protected_resource = await self._protected_resource(challenge.resource_metadata_url)
        # Without protected resource metadata the server's origin is the issuer (the MCP spec's fallback).
        if protected_resource is not None:
            authorization_server = await self._authorization_server(protected_resource.authorization_servers[0])
        else:
            authorization_server = await self._authorization_server(origin_of(server), legacy=True)
        return OAuthDiscovery(protected_resource=protected_resource, authorization_server=authorization_server)

    async def _protected_resource(self, resource_metadata_url: str | None) -> ProtectedResourceMetadata | None:
        if resource_metadata_url is not None:
            # Checked before anything is fetched: a refused challenge URL must not fall back to other requests.
            check(resource_metadata_url, "The resource_metadata URL in the server's challenge", self.policy)
        candidates = build_protected_resource_metadata_discovery_urls(resource_metadata_url, self.server_url)
        for url in dict.fromkeys(candidates):  # the challenge may name a well-known URI; ask once
            checked = check(url, "A protected resource metadata URL", self.policy)
            try:
                document = await self._fetch_json(checked, _PRM)
            except _NotServed:
                continue
            return self._parse_protected_resource(document, checked)
        return None

    async def _authorization_server(self, issuer: str, *, legacy: bool = False) -> AuthorizationServerMetadata:
        """The metadata of ``issuer``; with ``legacy``, ``issuer`` is the origin of a 2025-03-26 era server."""
        checked_issuer = check(issuer, "The authorization server URL", self.policy)
        require_https(checked_issuer, "The authorization server's issuer URL", self.policy)
        parts = urlsplit(issuer)
        if parts.query:
            raise OAuthError(f"The authorization server URL for {host_of(checked_issuer)} is not an issuer.")
        for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, self.server_url):
            checked = check(url, "An authorization server metadata URL", self.policy)
            try:
                document = await self._fetch_json(checked, _ASM)
            except _NotServed:
                continue
            return self._parse_authorization_server(document, checked, issuer, legacy=legacy)
        if legacy and not self.redirect_refused:
            return self._default_endpoints(issuer)
        note = " (a redirect to another origin was not followed)" if self.redirect_refused else ""
        raise OAuthError(f"No OAuth authorization server metadata was found for {host_of(checked_issuer)}{note}.")

    def _parse_protected_resource(self, document: dict[str, Any], source: CheckedUrl) -> ProtectedResourceMetadata:
        host = host_of(source)
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

    def _default_endpoints(self, origin: str) -> AuthorizationServerMetadata:
        """The 2025-03-26 revision's fallback for a server that publishes no metadata: fixed paths at its origin."""
        base = origin.rstrip("/")
        endpoints = {name: f"{base}/{name}" for name in ("authorize", "token", "register")}
        for name, url in endpoints.items():
            what = f"The authorization server's default {name} endpoint"
            require_https(check(url, what, self.policy), what, self.policy)
        return AuthorizationServerMetadata(
            issuer=base,
            authorization_endpoint=endpoints["authorize"],
            token_endpoint=endpoints["token"],
            registration_endpoint=endpoints["register"],
            revocation_endpoint=None,
            scopes_supported=None,
            code_challenge_methods_supported=None,
            client_id_metadata_document_supported=False,
            from_defaults=True,
        )

    def _parse_authorization_server(
        self, document: dict[str, Any], source: CheckedUrl, expected_issuer: str, *, legacy: bool = False
    ) -> AuthorizationServerMetadata:
        host = host_of(source)
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
        if not (issuers_match(issuer, expected_issuer) or (legacy and _same_origin(issuer, expected_issuer))):
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
                require_https(check(url, what, self.policy), what, self.policy)
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
        host = host_of(checked)
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
            refused = find_refused(exc)
            if refused is None:
                error = translate_http_error(exc, host_of(checked), what)
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
                    current = check(str(following.url), f"A redirect of the {what} request", self.policy)
                    continue
                if status == 429 or status >= 500:
                    raise OAuthError(
                        f"The server at {host_of(current)} answered the OAuth {what} request with HTTP {status}.",
                        transient=True,
                    )
                if status != 200:
                    raise _NotServed
                too_large = OAuthError(
                    f"The OAuth {what} from {host_of(current)} is larger than {self.max_bytes} bytes, the most that "
                    "is read."
                )
                return await read_bounded(response, limit=self.max_bytes, too_large=too_large)
            finally:
                await response.aclose()
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, url: str) -> httpx2.Request:
        request = self.http.build_request("GET", url, headers=_REQUEST_HEADERS)
        for name in list(request.headers.keys()):
            if name.lower() not in KEPT_CLIENT_HEADERS and name.lower() not in _REQUEST_HEADERS:
                del request.headers[name]
        return request


class _Malformed(Exception):
    pass


def _same_origin(url: str, origin: str) -> bool:
    """Whether ``url`` is an http(s) URL without query or fragment on ``origin`` (scheme, host and port)."""
    try:
        parts, expected = httpx2.URL(url), httpx2.URL(origin)
    except (httpx2.InvalidURL, TypeError):
        return False
    return (
        parts.scheme in ("http", "https")
        and not parts.query
        and not parts.fragment
        and not parts.userinfo
        and (parts.scheme, parts.host, parts.port) == (expected.scheme, expected.host, expected.port)
    )


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
