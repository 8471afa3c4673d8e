"""Domain errors: services raise these; the API's exception handler and the admin forms present them."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """An error a caller can act on: `title` and `detail` in the API's envelope, plus any `extra` fields."""

    status_code = 400
    title = "BadRequest"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class ValidationError(ApplicationError):
    """A request field is invalid; `detail` names the field."""

    status_code = 400
    title = "ValidationError"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(ApplicationError):
    status_code = 404
    title = "NotFound"


class Forbidden(ApplicationError):
    """Known, and not allowed (a blocked tool); where not allowed must look like not there, use NotFound."""

    status_code = 403
    title = "Forbidden"


class AuthorizationRequired(ApplicationError):
    """A remote server wants a person to authorize this service (again, or with more scope): `authUrl` says where."""

    status_code = 403
    title = "AuthorizationRequired"


class Conflict(ApplicationError):
    """The request contradicts the resource's state (a call already decided, expired, or whose tool changed)."""

    status_code = 409
    title = "Conflict"


class UpstreamFailed(ApplicationError):
    """A remote server failed, refused or could not be reached; `detail` says which."""

    status_code = 502
    title = "UpstreamError"


class UpstreamTimeout(ApplicationError):
    status_code = 504
    title = "UpstreamTimeout"
