"""Structured logs: one JSON object per line, carrying the request id and the organization and server a line
is about. The ids travel in a context variable set by the request middleware, the API views and the Celery
task signals, so every log call gets them without passing them along. Secrets are never put there."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})  # noqa: B039
_FIELDS = ("request_id", "organization_id", "server_id", "task_id", "tool_call_id")
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def bind(**values: object) -> None:
    """Add ids to the current context (a request, a task)."""
    _context.set({**_context.get(), **{key: str(value) for key, value in values.items() if value is not None}})


def current() -> dict[str, str]:
    """The ids bound now, to carry into work that runs elsewhere (a thread, an event loop)."""
    return dict(_context.get())


def clear() -> None:
    _context.set({})


@contextmanager
def scope(**values: object) -> Iterator[None]:
    token = _context.set({key: str(value) for key, value in values.items() if value is not None})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Puts the context's ids on every record (as attributes, for any formatter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class RequestIdMiddleware:
    """A request id for every request: the caller's `X-Request-ID` when it is sane, else a new one; echoed back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _INCOMING_ID.match(incoming) else uuid.uuid4().hex
        with scope(request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: dict[str, Any]
    ) -> None:
        """The organization and server a request is about, from its URL (as given; the view checks them)."""
        bind(organization_id=view_kwargs.get("org_id"), server_id=view_kwargs.get("server_id"))
