"""Writes of the OAuth flow toward MCP servers: start an authorization, accept its callback, complete it,
keep the access token fresh. The protocol itself is in `mcp_servers.oauth`; every request it makes goes
through the guarded outbound client, and everything that talks to the network runs in the worker.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mcp_servers import client, oauth, outbound
from mcp_servers.models import (
    McpServer,
    McpServerOAuth,
    OAuthAuthorizationRequest,
    OAuthClientSource,
    OAuthRevocation,
    SyncStatus,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
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


def _guarded(limits: client.SyncLimits) -> Any:
    return outbound.guarded_client(connect_seconds=limits.connect_seconds, read_seconds=limits.read_seconds)


def _call(limits: client.SyncLimits, call: Callable[[Any], Awaitable[_T]]) -> _T:
    """One OAuth request (or a few) on a fresh guarded client, bounded by the sync's total time."""
    return oauth.run(_guarded(limits), call, limits.total_seconds)


def _credentials(row: McpServerOAuth) -> oauth.ClientCredentials:
    return oauth.ClientCredentials(
        client_id=row.client_id, client_secret=row.client_secret, auth_method=row.token_endpoint_auth_method
    )


def stored_challenge(row: McpServerOAuth) -> client.AuthChallenge:
    return client.AuthChallenge(resource_metadata_url=row.resource_metadata_url, scope=row.challenge_scope, error=None)


# --- Starting an authorization -------------------------------------------------------------------------


def oauth_authorization_start(*, server: McpServer, challenge: client.AuthChallenge, limits: client.SyncLimits) -> str:
    """Discover the authorization server, settle this service's client identity with it, and return a new
    authorization URL (PKCE S256, single-use state bound to the server, resource indicator, scope).

    Raises DestinationRefused when any discovered URL is refused, and oauth.OAuthError for every other failure.
    """
    discovery = oauth.discover(server.server_url, challenge, _guarded(limits), total_seconds=limits.total_seconds)
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


def _client_identity(
    server: McpServer, metadata: oauth.AuthorizationServerMetadata, scope: str | None, limits: client.SyncLimits
) -> tuple[oauth.ClientCredentials, OAuthClientSource]:
    """Pre-registered credentials, else a client ID metadata document, else dynamic registration (the spec's order).

    A registration made earlier with the same issuer and callback is reused rather than repeated.
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
    ):
        return _credentials(existing), OAuthClientSource(existing.client_source)
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
        registered = _call(limits, lambda http: oauth.aregister_client(http, metadata, request))
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
        _queue_on_commit("complete", request.pk)
    return CallbackResult(accepted=True, message="Authorization received.", server_id=request.server_id)


def _queue_on_commit(kind: str, object_id: uuid.UUID) -> None:
    from mcp_servers import tasks  # tasks import services

    task = {
        "complete": tasks.oauth_complete_authorization,
        "reauthorize": tasks.oauth_reauthorize,
        "revoke": tasks.oauth_revoke,
    }[kind]
    transaction.on_commit(lambda: task.delay(str(object_id)))


class AuthorizationNotCompleted(Exception):
    """Exchanging the code failed; str() is a plain message for the server row."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def oauth_authorization_complete(*, request_id: uuid.UUID | str, limits: client.SyncLimits) -> uuid.UUID | None:
    """Exchange the waiting code (with its PKCE verifier) for tokens and store them. Returns the server id,
    or None when there is nothing to do (the request is gone or already completed)."""
    request = OAuthAuthorizationRequest.objects.select_related("server__oauth").filter(pk=request_id).first()
    if request is None or not request.code:
        return None
    row = request.server.oauth
    code = request.code
    try:
        tokens = _call(
            limits,
            lambda http: oauth.aexchange_code(
                http,
                row.token_endpoint,
                _credentials(row),
                code=code,
                code_verifier=request.code_verifier,
                redirect_uri=request.redirect_uri,
                resource=row.resource,
            ),
        )
    except outbound.DestinationRefused as exc:
        _forget_code(request.pk)
        raise AuthorizationNotCompleted(f"The token endpoint is not an allowed destination: {exc}") from None
    except oauth.OAuthError as exc:
        if not exc.transient:
            _forget_code(request.pk)
        raise AuthorizationNotCompleted(
            f"Exchanging the authorization code failed: {exc}", transient=exc.transient
        ) from None
    with transaction.atomic():
        _store_tokens(row.pk, tokens, replace_refresh=True)
        _forget_code(request.pk)
    return request.server_id


def _forget_code(request_id: uuid.UUID) -> None:
    OAuthAuthorizationRequest.objects.filter(pk=request_id).update(code=None)


def _store_tokens(row_id: int, tokens: oauth.TokenSet, *, replace_refresh: bool) -> None:
    now = timezone.now()
    fields: dict[str, Any] = {
        "access_token": tokens.access_token,
        "access_token_expires_at": now + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None,
        "updated_at": now,
    }
    if tokens.refresh_token is not None or replace_refresh:
        fields["refresh_token"] = tokens.refresh_token
    # QuerySet.update encrypts (get_db_prep_save); only bulk_update would corrupt an encrypted column.
    McpServerOAuth.objects.filter(pk=row_id).update(**fields)


# --- Access tokens ---------------------------------------------------------------------------------------


def _fresh(row: McpServerOAuth) -> bool:
    if row.access_token_expires_at is None:
        return True
    skew = timedelta(seconds=settings.MCP_OAUTH_REFRESH_SKEW_SECONDS)
    return row.access_token_expires_at > timezone.now() + skew


def oauth_access_token(
    *, server_id: uuid.UUID, limits: client.SyncLimits, refused_token: str | None = None
) -> str | None:
    """The server's access token, refreshed first when it is about to expire or was just refused.

    One refresh at a time per server, across all workers: the refresh runs holding the credential row's
    lock, and whoever waited for the lock finds the new token and does not refresh again (a refresh token
    may be single-use). Raises oauth.OAuthGrantRejected when the grant is gone (the tokens are cleared), and
    oauth.OAuthError when the authorization server cannot be reached.
    """
    row = McpServerOAuth.objects.filter(server_id=server_id).first()
    if row is None or not row.access_token:
        return None
    if refused_token is None and _fresh(row):
        return row.access_token
    rejected: oauth.OAuthGrantRejected | None = None
    with transaction.atomic():
        row = McpServerOAuth.objects.select_for_update().get(pk=row.pk)
        if not row.access_token:
            return None
        if refused_token is not None and row.access_token != refused_token:
            return row.access_token  # another worker refreshed it meanwhile
        if refused_token is None and _fresh(row):
            return row.access_token
        if not row.refresh_token:
            rejected = oauth.OAuthGrantRejected("The access token expired and the server gave no refresh token.")
        else:
            refresh_token = row.refresh_token
            try:
                tokens = _call(
                    limits,
                    lambda http: oauth.arefresh(
                        http,
                        row.token_endpoint,
                        _credentials(row),
                        refresh_token=refresh_token,
                        resource=row.resource,
                        scope=row.scope,
                    ),
                )
            except oauth.OAuthGrantRejected as exc:
                rejected = exc
            else:
                _store_tokens(row.pk, tokens, replace_refresh=False)
                logger.info("oauth token refreshed", extra={"server_id": str(server_id)})
                return tokens.access_token
    # Outside the transaction, so the cleared tokens stay cleared.
    McpServerOAuth.objects.filter(pk=row.pk).update(access_token=None, refresh_token=None, access_token_expires_at=None)
    raise rejected


# --- Re-authorization ------------------------------------------------------------------------------------


def mcp_server_reauthorize_request(*, server: McpServer) -> None:
    """Ask the worker for a fresh authorization URL for a server that uses OAuth (the tokens stay until replaced)."""
    from core.exceptions import ValidationError

    if not McpServerOAuth.objects.filter(server=server).exists():
        raise ValidationError("serverUrl", "this server has not asked for OAuth authorization.")
    with transaction.atomic():
        _queue_on_commit("reauthorize", server.pk)


# --- Discarding credentials --------------------------------------------------------------------------------


def oauth_credentials_discard(*, server: McpServer) -> None:
    """Forget a server's OAuth credentials (it is deleted, or now points elsewhere): its pending authorizations
    go, and its tokens are queued for revocation at the authorization server when it offers revocation.

    Call inside the caller's transaction; the revocations are queued after commit.
    """
    OAuthAuthorizationRequest.objects.filter(server=server).delete()
    row = McpServerOAuth.objects.filter(server=server).first()
    if row is None:
        return
    if row.revocation_endpoint:
        # The refresh token first: revoking it ends the whole grant on most servers.
        for token in (row.refresh_token, row.access_token):
            if token:
                revocation = OAuthRevocation.objects.create(
                    revocation_endpoint=row.revocation_endpoint,
                    client_id=row.client_id,
                    client_secret=row.client_secret,
                    token_endpoint_auth_method=row.token_endpoint_auth_method,
                    token=token,
                )
                _queue_on_commit("revoke", revocation.pk)  # type: ignore[arg-type]
    row.delete()


def oauth_revoke(*, revocation_id: int | str, limits: client.SyncLimits, final_attempt: bool = True) -> bool:
    """Revoke one queued token (RFC 7009) and forget it. False when it is gone or the server refused it."""
    revocation = OAuthRevocation.objects.filter(pk=revocation_id).first()
    if revocation is None:
        return False
    credentials = oauth.ClientCredentials(
        client_id=revocation.client_id,
        client_secret=revocation.client_secret,
        auth_method=revocation.token_endpoint_auth_method,
    )
    token, endpoint = revocation.token, revocation.revocation_endpoint
    try:
        _call(
            limits,
            lambda http: oauth.arevoke(http, endpoint, credentials, token=token),
        )
    except oauth.OAuthError as exc:
        if exc.transient and not final_attempt:
            raise
        logger.warning("oauth token revocation failed: %s", exc)
        revocation.delete()
        return False
    except outbound.DestinationRefused:
        logger.warning("oauth token revocation refused by the outbound policy")
        revocation.delete()
        return False
    revocation.delete()
    return True
