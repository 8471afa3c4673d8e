from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from core import ratelimit
from organizations.keys import matches, parse_prefix
from organizations.models import ApiKey
from organizations.services import api_key_touch

_INVALID = "Invalid or revoked API key."


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <api key>`. Missing -> NotAuthenticated; anything wrong -> AuthenticationFailed."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        ratelimit.refuse_if_auth_failures_exceeded(request._request)
        try:
            api_key = self._api_key(header)
        except AuthenticationFailed:
            ratelimit.record_auth_failure(request._request)
            raise
        api_key_touch(api_key=api_key)
        return api_key.user, api_key

    def _api_key(self, header: list[bytes]) -> ApiKey:
        if header[0].lower() != b"bearer" or len(header) != 2:
            raise AuthenticationFailed("Malformed Authorization header: expected 'Bearer <api key>'.")
        try:
            plaintext = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed(_INVALID) from None
        prefix = parse_prefix(plaintext)
        if prefix is None:
            raise AuthenticationFailed(_INVALID)
        api_key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
        if (
            api_key is None
            or not matches(plaintext, api_key.hashed_key)
            or not api_key.is_active
            or not api_key.user.is_active
        ):
            raise AuthenticationFailed(_INVALID)
        return api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def authenticated_user(request: Request) -> User:
    """The key's user; views behind IsAuthenticated always have one."""
    user = request.user
    if not isinstance(user, User):
        raise AuthenticationFailed(_INVALID)
    return user
