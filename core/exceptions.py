"""Domain errors and the one place that turns any error into the contract's envelope.

Services raise `ApplicationError` subclasses; DRF views let them propagate; `api_exception_handler`
renders `{"error": {"title", "detail"}}` with a stable title, and anything unexpected becomes a 500
in the same envelope, logged with its traceback but never shown to the caller.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import ApplicationError
from core.ratelimit import RateLimited

logger = logging.getLogger(__name__)


def error_body(title: str, detail: str) -> dict[str, Any]:
    return {"error": {"title": title, "detail": detail}}


def _drf_detail(exc: drf_exceptions.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, list | tuple) and detail:
        detail = detail[0]
    if isinstance(detail, dict) and detail:
        field, message = next(iter(detail.items()))
        if isinstance(message, list | tuple) and message:
            message = message[0]
        return f"{field}: {message}"
    return str(detail)


_DRF_TITLES: dict[type[drf_exceptions.APIException], tuple[str, str | None]] = {
    drf_exceptions.ParseError: ("ValidationError", "The request body is not valid JSON."),
    drf_exceptions.UnsupportedMediaType: (
        "ValidationError",
        "The request body must be JSON (Content-Type: application/json).",
    ),
    drf_exceptions.NotAuthenticated: ("Unauthorized", "Missing API key: send 'Authorization: Bearer <api key>'."),
    drf_exceptions.AuthenticationFailed: ("Unauthorized", None),
    drf_exceptions.PermissionDenied: ("NotFound", "Not found."),
    drf_exceptions.NotFound: ("NotFound", "Not found."),
    drf_exceptions.MethodNotAllowed: ("MethodNotAllowed", None),
    drf_exceptions.NotAcceptable: ("NotAcceptable", None),
    drf_exceptions.ValidationError: ("ValidationError", None),
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every error, expected or not, leaves in the contract's envelope."""
    set_rollback()
    headers: dict[str, str] = {}
    if isinstance(exc, Http404 | DjangoPermissionDenied):
        return Response(error_body("NotFound", "Not found."), status=404)
    if isinstance(exc, drf_exceptions.Throttled):
        # A rate limit's throttle (organizations.throttling) kept its decision on the request, for the headers.
        decision = getattr(context.get("request"), "rate_limit", None)
        if decision is not None:
            exc = RateLimited(decision)
    if isinstance(exc, RateLimited):
        body = error_body(exc.title, exc.detail)
        body["error"]["retryAfterMs"] = exc.retry_after_ms
        headers = {"Retry-After": str(math.ceil(exc.retry_after_ms / 1000)), **exc.decision.headers()}
        return Response(body, status=429, headers=headers)
    if isinstance(exc, ApplicationError):
        body = error_body(exc.title, exc.detail)
        body["error"].update(exc.extra)
        return Response(body, status=exc.status_code)
    if isinstance(exc, drf_exceptions.APIException):
        title, fixed_detail = "BadRequest", None
        for cls in type(exc).__mro__:
            if cls in _DRF_TITLES:
                title, fixed_detail = _DRF_TITLES[cls]
                break
        status = exc.status_code
        if isinstance(exc, drf_exceptions.PermissionDenied):
            status = 404  # "not allowed" looks like "not found"
        if isinstance(exc, drf_exceptions.UnsupportedMediaType):
            status = 400  # the contract answers every unreadable body with 400
        if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
            status = 401
            view = context.get("view")
            request = context.get("request")
            # The view's own challenge (the MCP endpoint names its protected-resource metadata), else the API's.
            challenge = view.get_authenticate_header(request) if view is not None and request is not None else None
            headers["WWW-Authenticate"] = challenge or 'Bearer realm="api"'
        return Response(error_body(title, fixed_detail or _drf_detail(exc)), status=status, headers=headers)
    view = context.get("view")
    logger.exception("Unhandled error in %s", type(view).__name__ if view else "API view")
    return Response(error_body("InternalServerError", "An unexpected error occurred."), status=500)


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("NotFound", "Not found."), status=404)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("InternalServerError", "An unexpected error occurred."), status=500)
