"""An OAuth authorization toward an MCP server, as stored: start one (discovery, client identity, PKCE, a single-use
state bound to the server), accept its callback, exchange its code. The protocol is `integrations.oauth`; every
request goes through the guarded outbound client, and everything that talks to the network runs in the worker.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import ValidationError
from integrations import oauth
from integrations.mcp import AuthChallenge, SyncLimits
from integrations.outbound import DestinationRefused
from mcp_servers import dispatch
from mcp_servers.limits import oauth_client, outbound_policy
from mcp_servers.models import (
    McpServer,
    McpServerOAuth,
    OAuthAuthorizationRequest,
    OAuthClientSource,
    SyncStatus,
)
from mcp_servers.services.oauth_tokens import credentials_of, oauth_call, store_tokens
from mcp_servers.services.retry import Retryable

CALLBACK_PATH = "/oauth/callback"
CLIENT_METADATA_PATH = "/oauth/client-metadata.json"


def callback_url() -> str:
    return f"{settings.PUBLIC_BASE_URL}{CALLBACK_PATH}"


def client_metadata_document_url() -> str:
    return settings.MCP_OAUTH_CLIENT_METADATA_URL or f"{settings.PUBLIC_BASE_URL}{CLIENT_METADATA_PATH}"


def client_metadata_document() -> dict[str, Any]:
    """The client ID metadata document this service serves (its URL is the client_id)."""
    document = oauth.client_metadata(
        client_name=settings.MCP_OAUTH_CLIENT_NAME, redirect_uri=callback_url(), scope=None, auth_method="none"
    )
    return {"client_id": client_metadata_document_url(), **document}


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def stored_challenge(row: McpServerOAuth) -> AuthChallenge:
    return AuthChallenge(resource_metadata_url=row.resource_metadata_url, scope=row.challenge_scope, error=None)


# --- Starting an authorization -------------------------------------------------------------------------


def oauth_authorization_start(*, server: McpServer, challenge: AuthChallenge, limits: SyncLimits) -> str:
    """Discover the authorization server, settle this service's client identity with it, and return a new
    authorization URL (PKCE S256, single-use state bound to the server, resource indicator, scope).

    Raises DestinationRefused when any discovered URL is refused, and oauth.OAuthError for every other failure.
    """
    discovery = oauth.discover(
        server.server_url, challenge, oauth_client(limits), policy=outbound_policy(), total_seconds=limits.total_seconds
    )
    metadata = discovery.authorization_server
    if not oauth.supports_pkce_s256(metadata):
        raise oauth.OAuthError(
            "The authorization server does not advertise PKCE with S256, which the MCP specification requires."
        )
    resource = oauth.resource_for(server.server_url, discovery)
    scope = oauth.select_scope(challenge, discovery)
    credentials, source = _client_identity(server, metadata, scope, limits)
    state = oauth.new_state()
    verifier, code_challenge = oauth.pkce_pair()
    now = timezone.now()
    with transaction.atomic():
        McpServerOAuth.objects.update_or_create(
            server=server,
            defaults={
                "issuer": metadata.issuer,
                "authorization_endpoint": metadata.authorization_endpoint,
                "token_endpoint": metadata.token_endpoint,
                "revocation_endpoint": metadata.revocation_endpoint,
                "iss_parameter_supported": metadata.authorization_response_iss_parameter_supported,
                "resource": resource,
                "scope": scope,
                "resource_metadata_url": challenge.resource_metadata_url,
                "challenge_scope": challenge.scope,
                "client_source": source,
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
                "token_endpoint_auth_method": credentials.auth_method,
            },
        )
        OAuthAuthorizationRequest.objects.create(
            server=server,
            state_hash=_state_hash(state),
            code_verifier=verifier,
            redirect_uri=callback_url(),
            expires_at=now + timedelta(seconds=settings.MCP_OAUTH_STATE_TTL_SECONDS),
        )
    return oauth.authorization_url(
        metadata,
        client_id=credentials.client_id,
        redirect_uri=callback_url(),
        state=state,
        code_challenge=code_challenge,
        resource=resource,
        scope=scope,
    )


def oauth_step_up(*, server: McpServer, challenge: AuthChallenge, limits: SyncLimits) -> str:
    """A new authorization URL for the scope an operation needs (a 403 `insufficient_scope` challenge): the scope
    granted so far plus the challenge's, as the MCP authorization spec's step-up flow asks. The current tokens keep
    working for what they cover until new ones arrive."""
    row = McpServerOAuth.objects.filter(server=server).first()
    granted = (row.scope or "").split() if row is not None else []
    wanted = [*granted, *(scope for scope in (challenge.scope or "").split() if scope not in granted)]
    escalated = AuthChallenge(
        resource_metadata_url=challenge.resource_metadata_url or (row.resource_metadata_url if row else None),
        scope=" ".join(wanted) or None,
        error=challenge.error,
    )
    return oauth_authorization_start(server=server, challenge=escalated, limits=limits)


def _client_identity(
    server: McpServer, metadata: oauth.AuthorizationServerMetadata, scope: str | None, limits: SyncLimits
) -> tuple[oauth.ClientCredentials, OAuthClientSource]:
    """Pre-registered credentials, else a client ID metadata document, else dynamic registration (the spec's order).

    A registration made earlier with the same issuer and callback is reused rather than repeated, unless it was
    made for less scope than is asked now (a step-up: servers may hold a client to the scope it registered with).
    """
    preregistered = _preregistered(metadata.issuer)
    if preregistered is not None:
        return preregistered, OAuthClientSource.PREREGISTERED
    existing = McpServerOAuth.objects.filter(server=server).first()
    if (
        existing is not None
        and oauth.same_issuer(existing.issuer, metadata.issuer)
        and existing.client_source != OAuthClientSource.PREREGISTERED
        and (
            existing.client_source != OAuthClientSource.CLIENT_METADATA_DOCUMENT
            or existing.client_id == client_metadata_document_url()
        )
        and (
            existing.client_source != OAuthClientSource.DYNAMIC_REGISTRATION
            or set((scope or "").split()) <= set((existing.scope or "").split())
        )
    ):
        return credentials_of(existing), OAuthClientSource(existing.client_source)
    document_url = client_metadata_document_url()
    if metadata.client_id_metadata_document_supported and oauth.usable_client_metadata_url(document_url):
        return oauth.ClientCredentials(client_id=document_url, client_secret=None, auth_method="none"), (
            OAuthClientSource.CLIENT_METADATA_DOCUMENT
        )
    if metadata.registration_endpoint is not None:
        request = oauth.client_metadata(
            client_name=settings.MCP_OAUTH_CLIENT_NAME,
            redirect_uri=callback_url(),
            scope=scope,
            auth_method=oauth.registration_auth_method(metadata),
        )
        registered = oauth_call(
            limits, lambda http: oauth.aregister_client(http, metadata, request, policy=outbound_policy())
        )
        return registered, OAuthClientSource.DYNAMIC_REGISTRATION
    raise oauth.OAuthError(
        "The authorization server offers no way for this service to register as a client (no dynamic "
        "registration, no client ID metadata documents); configure a pre-registered client in MCP_OAUTH_CLIENTS."
    )


def _preregistered(issuer: str) -> oauth.ClientCredentials | None:
    for configured_issuer, entry in settings.MCP_OAUTH_CLIENTS.items():
        if oauth.same_issuer(configured_issuer, issuer) and isinstance(entry, dict) and entry.get("client_id"):
            secret = entry.get("client_secret")
            method = entry.get("token_endpoint_auth_method") or ("client_secret_basic" if secret else "none")
            return oauth.ClientCredentials(client_id=str(entry["client_id"]), client_secret=secret, auth_method=method)
    return None


# --- The callback ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackResult:
    accepted: bool
    message: str
    server_id: uuid.UUID | None = None


def _refused(message: str) -> CallbackResult:
    return CallbackResult(accepted=False, message=message)


def oauth_callback_accept(*, state: str | None, code: str | None, error: str | None, iss: str | None) -> CallbackResult:
    """Check the authorization response and hand its code to the worker. A bad, replayed or expired state
    changes nothing; an accepted one is used up at once (a conditional update, so exactly once)."""
    if not state:
        return _refused("The authorization response carries no state. Start again from a new authorization link.")
    request = (
        OAuthAuthorizationRequest.objects.select_related("server", "server__oauth")
        .filter(state_hash=_state_hash(state))
        .first()
    )
    now = timezone.now()
    if request is None or request.used_at is not None:
        return _refused("This authorization link is unknown or has already been used. Ask for a new one.")
    if request.expires_at <= now:
        return _refused("This authorization link has expired. Ask for a new one.")
    if error:
        code_name = error if error.replace("_", "").isalnum() and len(error) <= 64 else "error"
        return _refused(f"The authorization server did not grant access ({code_name}).")
    if not code:
        return _refused("The authorization response carries no code.")
    row = getattr(request.server, "oauth", None)
    if row is None:
        return _refused("This server has no authorization in progress.")
    # RFC 9207: an `iss` that names another server is a mix-up attack; a server that promises `iss` must send it.
    if (iss is not None and not oauth.same_issuer(iss, row.issuer)) or (iss is None and row.iss_parameter_supported):
        return _refused("The authorization response came from an unexpected authorization server.")
    with transaction.atomic():
        claimed = OAuthAuthorizationRequest.objects.filter(
            pk=request.pk, used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now, code=code)
        if not claimed:
            return _refused("This authorization link is unknown or has already been used. Ask for a new one.")
        McpServer.objects.filter(pk=request.server_id).update(last_sync_status=SyncStatus.PENDING, updated_at=now)
        dispatch.complete_authorization(request.pk)
    return CallbackResult(accepted=True, message="Authorization received.", server_id=request.server_id)


class AuthorizationNotCompleted(Exception):
    """Exchanging the code failed for good; str() is a plain message for the server row."""


def oauth_authorization_complete(
    *, request_id: uuid.UUID | str, limits: SyncLimits, final_attempt: bool = True
) -> uuid.UUID | None:
    """Exchange the waiting code (with its PKCE verifier) for tokens and store them. Returns the server id,
    or None when there is nothing to do (the request is gone or already completed).

    A transient failure on an attempt that is not the last raises Retryable (the code stays for the retry).
    """
    request = OAuthAuthorizationRequest.objects.select_related("server__oauth").filter(pk=request_id).first()
    if request is None or not request.code:
        return None
    row = request.server.oauth
    code = request.code
    try:
        tokens = oauth_call(
            limits,
            lambda http: oauth.aexchange_code(
                http,
                row.token_endpoint,
                credentials_of(row),
                code=code,
                code_verifier=request.code_verifier,
                redirect_uri=request.redirect_uri,
                resource=row.resource,
                policy=outbound_policy(),
            ),
        )
    except DestinationRefused as exc:
        _forget_code(request.pk)
        raise AuthorizationNotCompleted(f"The token endpoint is not an allowed destination: {exc}") from None
    except oauth.OAuthError as exc:
        if exc.transient and not final_attempt:
            raise Retryable(str(exc)) from None
        _forget_code(request.pk)
        raise AuthorizationNotCompleted(f"Exchanging the authorization code failed: {exc}") from None
    with transaction.atomic():
        store_tokens(row.pk, tokens, replace_refresh=True)
        _forget_code(request.pk)
    return request.server_id


def _forget_code(request_id: uuid.UUID) -> None:
    OAuthAuthorizationRequest.objects.filter(pk=request_id).update(code=None)


def mcp_server_reauthorize_request(*, server: McpServer) -> None:
    """Ask the worker for a fresh authorization URL for a server that uses OAuth (the tokens stay until replaced)."""
    if not McpServerOAuth.objects.filter(server=server).exists():
        raise ValidationError("serverUrl", "this server has not asked for OAuth authorization.")
    with transaction.atomic():
        dispatch.reauthorize(server.pk)
