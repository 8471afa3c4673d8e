"""OAuth toward MCP servers, the protocol only (what is stored lives in `mcp_servers.services`): ``discovery`` of
the authorization server a 401 points at, and the authorization-code ``flow`` (PKCE, client identity, tokens).
Both go through ``http``: the outbound policy on every URL, one bounded read, errors as ``OAuthError``."""

from integrations.oauth.discovery import (
    MAX_REDIRECTS,
    AuthorizationServerMetadata,
    OAuthDiscovery,
    ProtectedResourceMetadata,
    adiscover,
    discover,
)
from integrations.oauth.errors import OAuthError, OAuthGrantRejected
from integrations.oauth.flow import (
    ClientCredentials,
    TokenSet,
    aclient_credentials,
    aexchange_code,
    arefresh,
    aregister_client,
    arevoke,
    authorization_url,
    client_metadata,
    new_state,
    pkce_pair,
    private_key_problem,
    registration_auth_method,
    resource_for,
    run,
    same_issuer,
    select_scope,
    supports_pkce_s256,
    usable_client_metadata_url,
)

__all__ = [
    "MAX_REDIRECTS",
    "AuthorizationServerMetadata",
    "ClientCredentials",
    "OAuthDiscovery",
    "OAuthError",
    "OAuthGrantRejected",
    "ProtectedResourceMetadata",
    "TokenSet",
    "aclient_credentials",
    "adiscover",
    "aexchange_code",
    "arefresh",
    "aregister_client",
    "arevoke",
    "authorization_url",
    "client_metadata",
    "discover",
    "new_state",
    "pkce_pair",
    "private_key_problem",
    "registration_auth_method",
    "resource_for",
    "run",
    "same_issuer",
    "select_scope",
    "supports_pkce_s256",
    "usable_client_metadata_url",
]
