"""Domain errors: services raise these; the API's exception handler and the admin forms present them."""

from __future__ import annotations


class ApplicationError(Exception):
    status_code = 400
    title = "BadRequest"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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
