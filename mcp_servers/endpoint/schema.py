"""The MCP endpoints in the OpenAPI document: one object per operation, as `mcp_servers.api.schema` does for the
REST API (whose error components these refer to by name). The JSON-RPC messages themselves are MCP's, described by
its specification, not here."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

TAG = "MCP endpoint"
_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_MESSAGE = {
    "type": "object",
    "description": "One JSON-RPC 2.0 message of the Model Context Protocol (a request, a notification, or the "
    "client's answer to a request of the endpoint's)",
    "properties": {"jsonrpc": {"type": "string", "enum": ["2.0"]}},
    "required": ["jsonrpc"],
    "additionalProperties": True,
}
_ORG_ID = OpenApiParameter("org_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="Organization ID")
_SERVER_ID = OpenApiParameter("server_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="MCP server ID")
_SESSION = OpenApiParameter(
    "Mcp-Session-Id",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="The session `initialize` opened (handshake-era protocol versions; absent at 2026-07-28)",
)
_REQUIRED_SESSION = OpenApiParameter(
    "Mcp-Session-Id",
    {"type": "string", "minLength": 1},
    OpenApiParameter.HEADER,
    required=True,
    description="The session to end",
)
_ERRORS = {
    401: OpenApiResponse(
        _ERROR,
        description="Missing or invalid API key; `WWW-Authenticate` names the endpoint's protected-resource metadata",
    ),
    403: OpenApiResponse(_ERROR, description="An `Origin` the endpoint does not accept (DNS-rebinding protection)"),
    404: OpenApiResponse(description="Organization or MCP server not found, or an unknown or expired session"),
    429: OpenApiResponse({"$ref": "#/components/schemas/RateLimitErrorResponse"}, description="Rate limit exceeded"),
    500: OpenApiResponse(_ERROR, description="Internal server error"),
}


def _operation(
    operation_id: str, summary: str, description: str, *, server: bool, session: OpenApiParameter, **options: Any
) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=description,
        tags=[TAG],
        parameters=[_ORG_ID, *([_SERVER_ID] if server else []), session],
        **options,
    )


_POST_DESCRIPTION = (
    "Streamable HTTP (MCP 2025-03-26 to 2026-07-28): one JSON-RPC message per POST. A request is answered with its "
    "response as `application/json`, or, when the client accepts `text/event-stream` and the request sends "
    "notifications (progress, log messages) or asks the client something (elicitation, sampling) on the way, with an "
    "event stream that ends with the response. A notification or an answer to the endpoint's request is accepted "
    "with 202. See the README's *MCP endpoint* section."
)
_POST: dict[str, Any] = {
    "session": _SESSION,
    "request": {"application/json": _MESSAGE},
    "responses": {
        200: OpenApiResponse(_MESSAGE, description="The JSON-RPC response (or an event stream that ends with it)"),
        202: OpenApiResponse(description="A notification or an answer was accepted"),
        400: OpenApiResponse(_MESSAGE, description="Not one JSON-RPC message, or no session where one is needed"),
        406: OpenApiResponse(_MESSAGE, description="The client accepts neither JSON nor an event stream"),
        **_ERRORS,
    },
}
_DELETE: dict[str, Any] = {
    "request": None,
    "session": _REQUIRED_SESSION,
    "responses": {
        200: OpenApiResponse(description="The session ended"),
        400: OpenApiResponse(_MESSAGE, description="No `Mcp-Session-Id`"),
        **_ERRORS,
    },
}

ORGANIZATION_POST = _operation(
    "postOrganizationMcp",
    "The organization's MCP endpoint",
    "Every tool the caller may use (the names `GET /mcp-tools` exports), governed and recorded like "
    f"`POST /tool-calls`. {_POST_DESCRIPTION}",
    server=False,
    **_POST,
)
ORGANIZATION_DELETE = _operation(
    "deleteOrganizationMcpSession",
    "End an MCP session",
    "Ends the session in `Mcp-Session-Id`.",
    server=False,
    **_DELETE,
)
SERVER_POST = _operation(
    "postMcpServerMcp",
    "One server's MCP endpoint",
    "One server's governed tools under their own names, and its resources, prompts and completions passed on. "
    f"{_POST_DESCRIPTION}",
    server=True,
    **_POST,
)
SERVER_DELETE = _operation(
    "deleteMcpServerMcpSession", "End an MCP session", "Ends the session in `Mcp-Session-Id`.", server=True, **_DELETE
)
