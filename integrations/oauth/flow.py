"""The OAuth authorization-code flow toward an MCP server's authorization server: PKCE S256, the authorization URL,
client identity (RFC 7591 registration, client ID metadata documents), the token exchange, refresh and revocation;
and the client_credentials grant of the MCP OAuth client-credentials extension (SEP-1046), with a client secret or
a private_key_jwt assertion (RFC 7523).

Every request carries only the headers built here (the caller's client may hold the MCP server's static headers),
follows no redirect, reads a bounded answer, and turns every failure into an `OAuthError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import anyio
import httpx2
import jwt
from mcp.client.auth.utils import is_valid_client_metadata_url, issuers_match
from mcp.shared.auth_utils import resource_url_from_server_url

from integrations.mcp.types import AuthChallenge
from integrations.oauth.discovery import AuthorizationServerMetadata, OAuthDiscovery
from integrations.oauth.errors import OAuthError, OAuthGrantRejected
from integrations.oauth.http import (
    KEPT_CLIENT_HEADERS,
    check,
    find_refused,
    host_of,
    read_bounded,
    translate_http_error,
)
from integrations.outbound import DestinationRefused, OutboundPolicy

_T = TypeVar("_T")
MAX_TOKEN_RESPONSE_BYTES: Final = 64 * 1024
_TOKEN_STEP = "token response"  # noqa: S105 - a label for messages, not a secret
_REGISTRATION_STEP = "client registration"
_REVOCATION_STEP = "token revocation"


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str | None
    auth_method: str  # "none", "client_secret_basic", "client_secret_post" or "private_key_jwt"
    # private_key_jwt: the PEM key that signs the assertion, its algorithm, and the assertion's audience (the issuer).
    private_key: str | None = field(default=None, repr=False)
    signing_algorithm: str | None = None
    assertion_audience: str | None = None


JWT_BEARER_ASSERTION: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS: Final = 60


def client_assertion(client: ClientCredentials) -> str:
    """A private_key_jwt client assertion (RFC 7523 section 3): issued by and about the client, for the
    authorization server, short-lived and single-use (``jti``)."""
    if not client.private_key or not client.assertion_audience:
        raise OAuthError("A private_key_jwt client needs a private key and the authorization server's issuer.")
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": client.assertion_audience,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(16),
    }
    try:
        return jwt.encode(claims, client.private_key, algorithm=client.signing_algorithm or "RS256")
    except (jwt.PyJWTError, ValueError, TypeError):
        # The key's own error text is not repeated: it may quote the key.
        raise OAuthError("The configured private key cannot sign a client assertion with that algorithm.") from None


def private_key_problem(private_key: str, algorithm: str) -> str | None:
    """Why a PEM private key cannot sign client assertions with ``algorithm``, or None when it can."""
    client = ClientCredentials(
        client_id="check",
        client_secret=None,
        auth_method="private_key_jwt",
        private_key=private_key,
        signing_algorithm=algorithm,
        assertion_audience="https://issuer.invalid",
    )
    try:
        client_assertion(client)
    except OAuthError:
        return "is not a PEM private key that can sign with " + algorithm
    return None


async def aclient_credentials(
    http: httpx2.AsyncClient,
    token_endpoint: str,
    client: ClientCredentials,
    *,
    resource: str,
    scope: str | None,
    policy: OutboundPolicy,
) -> TokenSet:
    """The client_credentials grant (OAuth 2.1 section 4.2): a token for the client itself, no person involved."""
    form = {"grant_type": "client_credentials", "resource": resource}
    if scope:
        form["scope"] = scope
    return _token_set(await _post(http, token_endpoint, _TOKEN_STEP, policy, form=form, client=client))


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
    """The MCP spec (2025-11-25) forbids proceeding unless the server advertises S256. A 2025-03-26 era server that
    publishes no metadata cannot advertise anything, and that revision requires PKCE of every client: S256 it is."""
    return metadata.from_defaults or "S256" in (metadata.code_challenge_methods_supported or [])


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
    http: httpx2.AsyncClient, metadata: AuthorizationServerMetadata, client: dict[str, Any], *, policy: OutboundPolicy
) -> ClientCredentials:
    """Dynamic client registration (RFC 7591)."""
    if metadata.registration_endpoint is None:
        raise OAuthError("The authorization server does not offer dynamic client registration.")
    document = await _post(http, metadata.registration_endpoint, _REGISTRATION_STEP, policy, json_body=client)
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
    policy: OutboundPolicy,
) -> TokenSet:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri,
        "resource": resource,
    }
    return _token_set(await _post(http, token_endpoint, _TOKEN_STEP, policy, form=form, client=client))


async def arefresh(
    http: httpx2.AsyncClient,
    token_endpoint: str,
    client: ClientCredentials,
    *,
    refresh_token: str,
    resource: str,
    scope: str | None,
    policy: OutboundPolicy,
) -> TokenSet:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource}
    if scope:
        form["scope"] = scope
    return _token_set(await _post(http, token_endpoint, _TOKEN_STEP, policy, form=form, client=client))


async def arevoke(
    http: httpx2.AsyncClient, revocation_endpoint: str, client: ClientCredentials, *, token: str, policy: OutboundPolicy
) -> None:
    """RFC 7009 revocation; a server that answers 200 has revoked it (or never knew it)."""
    form = {"token": token}
    await _post(http, revocation_endpoint, _REVOCATION_STEP, policy, form=form, client=client, expect_json=False)


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
    policy: OutboundPolicy,
    *,
    form: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
    client: ClientCredentials | None = None,
    expect_json: bool = True,
) -> dict[str, Any]:
    """POST to an endpoint of the authorization server: no redirects, bounded answer, errors as OAuthError.

    Only the headers built here leave (the client's defaults may carry the MCP server's static headers).
    """
    checked = check(url, f"The authorization server's {what} endpoint", policy)
    host = host_of(checked)
    headers = {"accept": "application/json", "accept-encoding": "identity"}
    if client is not None and form is not None:
        # client_id always goes in the form too: servers commonly require it even with Basic authentication.
        form = {**form, "client_id": client.client_id}
        if client.auth_method == "client_secret_basic" and client.client_secret is not None:
            pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        elif client.auth_method == "client_secret_post" and client.client_secret is not None:
            form["client_secret"] = client.client_secret
        elif client.auth_method == "private_key_jwt":
            form["client_assertion_type"] = JWT_BEARER_ASSERTION
            form["client_assertion"] = client_assertion(client)
    request = http.build_request("POST", checked.url, data=form, json=json_body, headers=headers)
    for name in list(request.headers.keys()):
        if (
            name.lower() not in KEPT_CLIENT_HEADERS
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
            too_large = OAuthError(f"The {what} from {host} is larger than {MAX_TOKEN_RESPONSE_BYTES} bytes.")
            body = await read_bounded(response, limit=MAX_TOKEN_RESPONSE_BYTES, too_large=too_large)
        finally:
            await response.aclose()
    except OAuthError:
        raise
    except Exception as exc:
        refused = find_refused(exc)
        if refused is None:
            error = translate_http_error(exc, host, what)
            if error is None:
                raise
    if refused is not None:
        raise refused
    if error is not None:
        raise error
    return _interpret(response.status_code, body, host, what, expect_json)


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
