"""OAuth's persistence: a server's client credentials and tokens, stored encrypted, refreshed one at a time per
server, and revoked when the server goes. The protocol is `integrations.oauth`; the authorization itself (URL,
callback, code exchange) is `oauth_authorization`.

A server with client credentials an admin configured (`McpServerClientCredentials`, the OAuth client-credentials
extension) needs no person: its tokens come from the client_credentials grant, here, when its server first asks
for authorization and again whenever they expire or are refused."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx2
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations import oauth
from integrations.mcp import AuthChallenge, SyncLimits
from integrations.outbound import DestinationRefused
from mcp_servers import dispatch
from mcp_servers.limits import oauth_client, outbound_policy
from mcp_servers.models import (
    McpServer,
    McpServerClientCredentials,
    McpServerOAuth,
    OAuthAuthorizationRequest,
    OAuthClientSource,
    OAuthRevocation,
)
from mcp_servers.services.retry import Retryable

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def oauth_call(limits: SyncLimits, call: Callable[[httpx2.AsyncClient], Awaitable[_T]]) -> _T:
    """One OAuth request (or a few) on a fresh guarded client, bounded by the sync's total time."""
    return oauth.run(oauth_client(limits), call, limits.total_seconds)


def credentials_of(row: McpServerOAuth) -> oauth.ClientCredentials:
    return oauth.ClientCredentials(
        client_id=row.client_id, client_secret=row.client_secret, auth_method=row.token_endpoint_auth_method
    )


def configured_credentials(
    configured: McpServerClientCredentials, *, issuer: str, supported_methods: list[str] | None = None
) -> oauth.ClientCredentials:
    """The configured client as the token endpoint wants it: private_key_jwt with a key, else the secret by Basic
    authentication (RFC 8414's default), or in the form where the server takes only that."""
    if configured.private_key:
        return oauth.ClientCredentials(
            client_id=configured.client_id,
            client_secret=None,
            auth_method="private_key_jwt",
            private_key=configured.private_key,
            signing_algorithm=configured.signing_algorithm or "RS256",
            assertion_audience=issuer,
        )
    supported = supported_methods or ["client_secret_basic"]
    method = (
        "client_secret_post"
        if "client_secret_basic" not in supported and "client_secret_post" in supported
        else ("client_secret_basic")
    )
    return oauth.ClientCredentials(
        client_id=configured.client_id, client_secret=configured.client_secret, auth_method=method
    )


def oauth_client_credentials_grant(*, server: McpServer, challenge: AuthChallenge, limits: SyncLimits) -> str | None:
    """For a server with configured client credentials that asks for authorization: discover its authorization
    server, get a token with the client_credentials grant and store it as the server's OAuth credentials. Returns
    the access token, or None when the server has no client credentials (a person must authorize).

    Raises DestinationRefused when a discovered URL is refused, and oauth.OAuthError when discovery or the grant
    fails (the configured secret is never part of the message).
    """
    configured = McpServerClientCredentials.objects.filter(server=server).first()
    if configured is None:
        return None
    policy = outbound_policy()
    discovery = oauth.discover(
        server.server_url, challenge, oauth_client(limits), policy=policy, total_seconds=limits.total_seconds
    )
    metadata = discovery.authorization_server
    resource = oauth.resource_for(server.server_url, discovery)
    scope = oauth.select_scope(challenge, discovery)
    credentials = configured_credentials(
        configured, issuer=metadata.issuer, supported_methods=metadata.token_endpoint_auth_methods_supported
    )
    tokens = oauth_call(
        limits,
        lambda http: oauth.aclient_credentials(
            http, metadata.token_endpoint, credentials, resource=resource, scope=scope, policy=policy
        ),
    )
    now = timezone.now()
    # update_or_create saves the row (encrypting its fields); only bulk_update would corrupt them.
    McpServerOAuth.objects.update_or_create(
        server=server,
        defaults={
            "issuer": metadata.issuer,
            "authorization_endpoint": metadata.authorization_endpoint,
            "token_endpoint": metadata.token_endpoint,
            "revocation_endpoint": metadata.revocation_endpoint,
            "iss_parameter_supported": False,
            "resource": resource,
            "scope": tokens.scope or scope,
            "resource_metadata_url": challenge.resource_metadata_url,
            "challenge_scope": challenge.scope,
            "client_source": OAuthClientSource.CLIENT_CREDENTIALS,
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
            "token_endpoint_auth_method": credentials.auth_method,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "access_token_expires_at": now + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None,
        },
    )
    logger.info("oauth token obtained with client credentials", extra={"server_id": str(server.pk)})
    return tokens.access_token


def _grant_again(row: McpServerOAuth, limits: SyncLimits) -> oauth.TokenSet | None:
    """A new client_credentials grant for a server whose token expired or was refused, with what was discovered
    when it was first granted. None when its client credentials are gone (a person must authorize)."""
    configured = McpServerClientCredentials.objects.filter(server_id=row.server_id).first()
    if configured is None:
        return None
    # The method chosen from the server's metadata at the first grant, kept on the row.
    supported = [row.token_endpoint_auth_method] if row.token_endpoint_auth_method.startswith("client_secret") else None
    credentials = configured_credentials(configured, issuer=row.issuer, supported_methods=supported)
    token_endpoint, resource, scope = row.token_endpoint, row.resource, row.scope
    return oauth_call(
        limits,
        lambda http: oauth.aclient_credentials(
            http, token_endpoint, credentials, resource=resource, scope=scope, policy=outbound_policy()
        ),
    )


def store_tokens(row_id: int, tokens: oauth.TokenSet, *, replace_refresh: bool) -> None:
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


def _fresh(row: McpServerOAuth) -> bool:
    if row.access_token_expires_at is None:
        return True
    skew = timedelta(seconds=settings.MCP_OAUTH_REFRESH_SKEW_SECONDS)
    return row.access_token_expires_at > timezone.now() + skew


def oauth_access_token(*, server_id: uuid.UUID, limits: SyncLimits, refused_token: str | None = None) -> str | None:
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
        if row.client_source == OAuthClientSource.CLIENT_CREDENTIALS and not row.refresh_token:
            try:
                granted = _grant_again(row, limits)
            except oauth.OAuthGrantRejected as exc:
                rejected, granted = exc, None
            if granted is not None:
                store_tokens(row.pk, granted, replace_refresh=True)
                logger.info("oauth token obtained again with client credentials", extra={"server_id": str(server_id)})
                return granted.access_token
            rejected = rejected or oauth.OAuthGrantRejected("The server's client credentials were removed.")
        elif not row.refresh_token:
            rejected = oauth.OAuthGrantRejected("The access token expired and the server gave no refresh token.")
        else:
            refresh_token = row.refresh_token
            try:
                tokens = oauth_call(
                    limits,
                    lambda http: oauth.arefresh(
                        http,
                        row.token_endpoint,
                        credentials_of(row),
                        refresh_token=refresh_token,
                        resource=row.resource,
                        scope=row.scope,
                        policy=outbound_policy(),
                    ),
                )
            except oauth.OAuthGrantRejected as exc:
                rejected = exc
            else:
                store_tokens(row.pk, tokens, replace_refresh=False)
                logger.info("oauth token refreshed", extra={"server_id": str(server_id)})
                return tokens.access_token
    # Outside the transaction, so the cleared tokens stay cleared.
    McpServerOAuth.objects.filter(pk=row.pk).update(access_token=None, refresh_token=None, access_token_expires_at=None)
    raise rejected


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
                dispatch.revoke_token(revocation.pk)
    row.delete()


def oauth_revoke(*, revocation_id: int | str, limits: SyncLimits, final_attempt: bool = True) -> bool:
    """Revoke one queued token (RFC 7009) and forget it. False when it is gone or the server refused it; a
    transient failure on an attempt that is not the last raises Retryable."""
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
        policy = outbound_policy()
        oauth_call(limits, lambda http: oauth.arevoke(http, endpoint, credentials, token=token, policy=policy))
    except oauth.OAuthError as exc:
        if exc.transient and not final_attempt:
            raise Retryable(str(exc)) from None
        logger.warning("oauth token revocation failed: %s", exc)
        revocation.delete()
        return False
    except DestinationRefused:
        logger.warning("oauth token revocation refused by the outbound policy")
        revocation.delete()
        return False
    revocation.delete()
    return True
