"""OAuth's errors; ``str()`` is a plain sentence for a user, never a response body or a header value."""

from __future__ import annotations

from integrations.errors import IntegrationError


class OAuthError(IntegrationError):
    """An OAuth step failed. ``transient`` is true when trying again later may help (connection failures,
    timeouts, 429 and 5xx)."""


class OAuthGrantRejected(OAuthError):
    """The authorization server refused a code or refresh token (`invalid_grant`): a person must authorize again."""
