"""The one error base of the integrations: the MCP client's and OAuth's errors derive from it."""

from __future__ import annotations


class IntegrationError(Exception):
    """An outside system could not do what was asked.

    `str(exc)` is a plain sentence, safe to show to users and to log: never a header value, a token or a response
    body. `transient` is true when trying again later may help (connection failures, timeouts, 429 and 5xx).
    """

    transient: bool = False

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient
