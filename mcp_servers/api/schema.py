"""The public API's OpenAPI description (drf-spectacular), kept apart from the code that serves it.

The response bodies are built by plain functions (`mcp_server_output`, `tool_detail_output`, `access_output`,
`tool_catalog.render`), so the serializers here exist only to describe them in `extend_schema(responses=...)`;
they never touch a request. Each operation's description is one object below (`CREATE_SERVER`, ...), which its view
method carries as its only decorator. The create operation follows `contract/create-mcp-server.openapi.yaml` field for
field (names, types with null, enums, required lists, lengths, defaults, component names), which
`tests/test_openapi.py` checks, and the committed `openapi/openapi.yaml` is regenerated with:

    .venv/bin/python manage.py spectacular --file openapi/openapi.yaml --validate --fail-on-warn
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers

from mcp_servers import tool_catalog
from mcp_servers.models import AccessMode, SetupState, ToolCallChannel, ToolCallError, ToolCallStatus, TransportType
from mcp_servers.services.servers import MAX_GROUPS_PER_GRANT
from mcp_servers.validation import DISPLAY_NAME_MAX, SERVER_URL_MAX
from organizations.models import GROUP_DESCRIPTION_MAX, GROUP_NAME_MAX

TAG = "MCP servers"
CALLS_TAG = "Tool calls"
GROUPS_TAG = "Groups"
SECURITY_SCHEME = "bearerAuth"


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """`organizations.authentication.ApiKeyAuthentication` as the contract's `bearerAuth` scheme."""

    target_class = "organizations.authentication.ApiKeyAuthentication"
    name = SECURITY_SCHEME

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "API key authentication using Bearer token format: `Bearer <api key>`",
        }


# --- Components copied from the contract that serializers cannot express ------------------------------------

_REF = "#/components/schemas/"

CONTRACT_COMPONENTS: dict[str, dict[str, Any]] = {
    "SyncStatus": {
        "anyOf": [{"type": "string", "enum": [status]} for status in ("PENDING", "SUCCESS", "FAILED", "NEVER_SYNCED")],
        "description": "Status of the last schema sync",
    },
    "RateLimitErrorResponse": {
        "type": "object",
        "properties": {"error": {"$ref": f"{_REF}RateLimitError"}},
        "required": ["error"],
    },
    "RateLimitError": {
        "allOf": [
            {"$ref": f"{_REF}ApiError"},
            {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "enum": ["RateLimitExceeded"]},
                    "retryAfterMs": {
                        "type": "number",
                        "description": "Milliseconds until the rate limit window resets",
                    },
                },
                "required": ["retryAfterMs"],
            },
        ]
    },
}


@extend_schema_field({"$ref": f"{_REF}SyncStatus"})
class SyncStatusField(serializers.CharField):
    pass


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectField(serializers.JSONField):
    pass


def _nullable_enum(choices: list[str], description: str) -> Any:
    """A `type: [string, "null"]` enum that lists null among its values, as the contract spells it."""

    @extend_schema_field({"type": ["string", "null"], "enum": [*choices, None]})
    class _Field(serializers.CharField):
        pass

    return _Field(help_text=description)


# --- Errors -------------------------------------------------------------------------------------------------


class ApiErrorSerializer(serializers.Serializer):
    title = serializers.CharField(help_text="Error type identifier")
    detail = serializers.CharField(help_text="Human-readable error description")


class ErrorResponseSerializer(serializers.Serializer):
    error = ApiErrorSerializer()


_ERROR_DESCRIPTIONS = {
    400: "Bad request - Invalid JSON body or validation error",
    401: "Unauthorized - Missing or invalid API key",
    404: "Not found - Organization not found or no admin access",
    429: "Rate limit exceeded - Too many requests",
    500: "Internal server error",
    403: "Forbidden - the tool is blocked (`Forbidden`), or its server asks a person to authorize "
    "(`AuthorizationRequired`, with `authUrl`)",
    409: "Conflict - the call can no longer be decided, or its tool changed since it was requested",
    502: "Upstream error - the MCP server failed, refused the request or could not be reached",
    504: "Upstream timeout - the MCP server did not answer in time",
}


class CallErrorSerializer(ApiErrorSerializer):
    callId = serializers.CharField(required=False, help_text="The call's id, when it was recorded (the audit trail)")
    code = serializers.CharField(required=False, allow_null=True, help_text="Why, for machines (`error.code`)")
    requiresAuth = serializers.BooleanField(required=False, help_text="AuthorizationRequired: a person must authorize")
    authUrl = serializers.CharField(required=False, allow_null=True, help_text="AuthorizationRequired: where")


class CallErrorResponseSerializer(serializers.Serializer):
    error = CallErrorSerializer()


_CALL_ERRORS = frozenset({403, 409, 502, 504})


def error_responses(*statuses: int, not_found: str | None = None) -> dict[int, OpenApiResponse]:
    """The error responses of an operation: 401, 404, 429 (rate limits, core.ratelimit) and 500 always, plus
    `statuses` (400). `not_found` says what a 404 can be about, when more than the organization."""
    responses: dict[int, OpenApiResponse] = {}
    for status in sorted({*statuses, 401, 404, 429, 500}):
        description = _ERROR_DESCRIPTIONS[status]
        if status == 404 and not_found:
            description = f"Not found - {not_found}"
        schema: Any = {"$ref": f"{_REF}RateLimitErrorResponse"} if status == 429 else ErrorResponseSerializer
        if status in _CALL_ERRORS:
            schema = CallErrorResponseSerializer
        responses[status] = OpenApiResponse(schema, description=description)
    return responses


RETRY_AFTER_HEADER = {
    "description": "Seconds until the rate limit window resets (rounded up)",
    "required": True,
    "schema": {"type": "integer"},
}


# --- Path and query parameters ------------------------------------------------------------------------------

# URL kwargs are snake_case in Django; the document names them as the contract does (`postprocess`).
PATH_PARAMETER_NAMES = {
    "org_id": "orgId",
    "server_id": "serverId",
    "tool_id": "toolId",
    "user_id": "userId",
    "call_id": "callId",
    "group_id": "groupId",
}


def _path(name: str, description: str, schema: Any = OpenApiTypes.STR) -> OpenApiParameter:
    return OpenApiParameter(name, schema, OpenApiParameter.PATH, description=description)


ORG_ID = _path("org_id", "Organization ID")
SERVER_ID = _path("server_id", "MCP server ID")
TOOL_ID = _path("tool_id", "Tool ID")
USER_ID = _path(
    "user_id", "User ID (see `members[].userId` of the access list)", {"type": "string", "pattern": "^[0-9]+$"}
)
LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
    OpenApiParameter.QUERY,
    description="Page size, 1 to 100",
)
CURSOR = OpenApiParameter(
    "cursor",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    description="Where to continue: the previous page's `pagination.nextCursor` (opaque)",
)
CALL_ID = _path("call_id", "Tool call ID")
GROUP_ID = _path("group_id", "Group ID")
MEMBER_USER_ID = _path(
    "user_id", "User ID (see `data[].userId` of the group's members)", {"type": "string", "pattern": "^[0-9]+$"}
)
CALL_STATUS = OpenApiParameter(
    "status",
    {"type": "string", "enum": list(ToolCallStatus.values)},
    OpenApiParameter.QUERY,
    description="Only calls with this status",
)
CALL_SERVER_ID = OpenApiParameter(
    "serverId", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Only calls of this MCP server"
)
FORMAT = OpenApiParameter(
    "format",
    {"type": "string", "enum": list(tool_catalog.FORMATS), "default": "default"},
    OpenApiParameter.QUERY,
    description=(
        "The shape of each tool: `default` (this API's own), `openai` (Chat Completions function tools), "
        "`anthropic` (Messages API tools) or `mcp` (MCP `Tool` objects as in `tools/list`)"
    ),
)

# --- Requests -----------------------------------------------------------------------------------------------


class HeaderInputSerializer(serializers.Serializer):
    key = serializers.CharField(allow_blank=True, trim_whitespace=False)
    value = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ClientCredentialsInputSerializer(serializers.Serializer):
    clientId = serializers.CharField(
        help_text="The OAuth client id registered for this service at the server's authorization server"
    )
    clientSecret = serializers.CharField(
        required=False,
        help_text="Its secret (client_secret_basic); write-only. Exactly one of clientSecret and privateKey",
    )
    privateKey = serializers.CharField(
        required=False,
        help_text="A PEM (PKCS#8) private key that signs private_key_jwt assertions (RFC 7523); write-only",
    )
    signingAlgorithm = serializers.CharField(
        required=False, help_text="The key's JWS algorithm (RS256 by default; ES256, PS256, EdDSA, ...)"
    )


class McpServerCreateRequestSerializer(serializers.Serializer):
    displayName = serializers.CharField(
        min_length=1, max_length=DISPLAY_NAME_MAX, help_text="Display name for the MCP server"
    )
    serverUrl = serializers.CharField(min_length=1, max_length=SERVER_URL_MAX, help_text="MCP server URL")
    headers = HeaderInputSerializer(
        many=True, required=False, default=[], help_text="Static headers to use when connecting to the MCP server"
    )
    everyoneInOrganizationCanAccess = serializers.BooleanField(
        required=False, default=True, help_text="Whether every member in the organization can use this MCP server"
    )
    clientCredentials = ClientCredentialsInputSerializer(
        required=False,
        allow_null=True,
        help_text="Extension (not in the create contract): a machine-to-machine OAuth client for this server (the MCP "
        "client-credentials extension); the service gets and refreshes its tokens itself. Write-only.",
    )


CREATE_EXAMPLE = OpenApiExample(
    "A server with a static header",
    value={
        "displayName": "Weather tools",
        "serverUrl": "https://mcp.example.com/mcp",
        "headers": [{"key": "X-Api-Key", "value": "static-secret"}],
        "everyoneInOrganizationCanAccess": True,
    },
    request_only=True,
)


class McpServerUpdateRequestSerializer(serializers.Serializer):
    displayName = serializers.CharField(
        required=False, min_length=1, max_length=DISPLAY_NAME_MAX, help_text="Display name for the MCP server"
    )
    serverUrl = serializers.CharField(
        required=False,
        min_length=1,
        max_length=SERVER_URL_MAX,
        help_text="MCP server URL; a new URL discards the OAuth credentials and re-syncs",
    )
    headers = HeaderInputSerializer(
        many=True, required=False, help_text="Replaces every static header (not with setHeaders/removeHeaders)"
    )
    setHeaders = HeaderInputSerializer(many=True, required=False, help_text="Static headers to add or replace, by key")
    removeHeaders = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text="Keys of static headers to remove",
    )
    everyoneInOrganizationCanAccess = serializers.BooleanField(
        required=False, help_text="Whether every member in the organization can use this MCP server"
    )
    clientCredentials = ClientCredentialsInputSerializer(
        required=False,
        allow_null=True,
        help_text="Replaces the server's OAuth client credentials (null removes them), discards its tokens, re-syncs",
    )


class McpToolUpdateRequestSerializer(serializers.Serializer):
    accessMode = serializers.ChoiceField(choices=AccessMode.values, help_text="Tool access mode")


class McpServerAccessGrantRequestSerializer(serializers.Serializer):
    email = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="A member's email address"
    )
    groupIds = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        max_length=MAX_GROUPS_PER_GRANT,
        help_text="Ids of groups of the organization: each of their members may use the server",
    )


class GroupCreateRequestSerializer(serializers.Serializer):
    name = serializers.CharField(
        min_length=1,
        max_length=GROUP_NAME_MAX,
        trim_whitespace=False,
        help_text="The group's name, unique in the organization (case-insensitively), 1-100 characters after trimming",
    )
    description = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=GROUP_DESCRIPTION_MAX, trim_whitespace=False
    )


class GroupUpdateRequestSerializer(serializers.Serializer):
    name = serializers.CharField(
        required=False, min_length=1, max_length=GROUP_NAME_MAX, trim_whitespace=False, help_text="A new name"
    )
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=GROUP_DESCRIPTION_MAX, trim_whitespace=False
    )


@extend_schema_field({"oneOf": [{"type": "string", "pattern": "^[0-9]+$"}, {"type": "integer", "minimum": 0}]})
class UserIdInputField(serializers.CharField):
    pass


class GroupMemberAddRequestSerializer(serializers.Serializer):
    userId = UserIdInputField(required=False, help_text="A member's user id (digits, or a JSON integer); or `email`")
    email = serializers.CharField(required=False, help_text="A member's email address; or `userId`")


GROUP_MEMBER_EXAMPLE = OpenApiExample("A member by email", value={"email": "alice@acme.example"}, request_only=True)
GROUP_EXAMPLE = OpenApiExample(
    "A group", value={"name": "Support", "description": "The support team"}, request_only=True
)


# --- Responses ----------------------------------------------------------------------------------------------


class McpToolSerializer(serializers.Serializer):
    """The contract's tool object (`mcp_servers.api.serializers.tool_output`)."""

    id = serializers.CharField(help_text="Tool ID")
    name = serializers.CharField(help_text="Tool name")
    description = serializers.CharField(allow_null=True, help_text="Tool description")
    readOnlyHint = serializers.BooleanField(
        allow_null=True, help_text="Whether the tool advertises that it only reads data"
    )
    accessMode = serializers.ChoiceField(choices=AccessMode.values, help_text="Tool access mode")
    foundInServer = serializers.BooleanField(help_text="Whether this tool was found during the latest sync")


class McpServerSerializer(serializers.Serializer):
    """The contract's server object (`mcp_servers.api.serializers.mcp_server_output`)."""

    id = serializers.CharField(help_text="MCP server ID")
    displayName = serializers.CharField(help_text="Display name for the MCP server")
    serverUrl = serializers.CharField(help_text="MCP server URL")
    serverLabel = serializers.CharField(help_text="Stable server label used when exposing tools to AI models")
    transportType = _nullable_enum(TransportType.values, "Transport protocol used by the MCP server")
    setupState = serializers.ChoiceField(choices=SetupState.values, help_text="MCP server setup state")
    lastSyncStatus = SyncStatusField()
    lastSyncAttemptAt = serializers.DateTimeField(allow_null=True, help_text="Last tool sync attempt timestamp")
    lastSuccessfulSyncAt = serializers.DateTimeField(allow_null=True, help_text="Last successful tool sync timestamp")
    hasCompletedFirstSync = serializers.BooleanField(help_text="Whether the first tool sync has completed")
    syncErrorMessage = serializers.CharField(allow_null=True, help_text="Error message from the last failed sync")
    tools = McpToolSerializer(many=True, help_text="Available MCP tools")
    createdAt = serializers.DateTimeField(help_text="Creation timestamp")
    updatedAt = serializers.DateTimeField(help_text="Last update timestamp")
    authUrl = serializers.CharField(
        allow_null=True, help_text="OAuth authorization URL when the MCP server requires OAuth"
    )
    requiresAuth = serializers.BooleanField(help_text="Whether the MCP server requires OAuth authorization")


def _envelope(name: str, data: serializers.Field, **fields: serializers.Field) -> type[serializers.Serializer]:
    """`{"data": ...}`, the body of every success (a class statement cannot name a field `data`, a Serializer
    property, without upsetting type checkers)."""
    return type(name, (serializers.Serializer,), {"__module__": __name__, "data": data, **fields})


McpServerResponseSerializer = _envelope("McpServerResponseSerializer", McpServerSerializer())


class PaginationSerializer(serializers.Serializer):
    nextCursor = serializers.CharField(allow_null=True, help_text="The `cursor` of the next page; null on the last")
    hasMore = serializers.BooleanField(help_text="Whether another page follows")


McpServerListResponseSerializer = _envelope(
    "McpServerListResponseSerializer",
    McpServerSerializer(many=True, help_text="Servers, newest first"),
    pagination=PaginationSerializer(),
)


class McpToolDetailSerializer(McpToolSerializer):
    """A tool with what an admin needs to review it (`mcp_servers.api.serializers.tool_detail_output`)."""

    title = serializers.CharField(allow_null=True, help_text="Tool title")
    inputSchema = JsonObjectField(help_text="The tool's input JSON Schema, as the server listed it")
    annotations = JsonObjectField(help_text="The tool's MCP annotations, as the server listed them")
    definitionChangedSinceReview = serializers.BooleanField(
        help_text="Whether the server changed the tool's definition since its access mode was decided"
    )
    createdAt = serializers.DateTimeField(help_text="Creation timestamp")
    updatedAt = serializers.DateTimeField(help_text="Last update timestamp")


McpToolDetailResponseSerializer = _envelope("McpToolDetailResponseSerializer", McpToolDetailSerializer())
McpToolListResponseSerializer = _envelope(
    "McpToolListResponseSerializer", McpToolDetailSerializer(many=True, help_text="The server's tools, by name")
)


class McpServerAccessMemberSerializer(serializers.Serializer):
    userId = serializers.CharField(help_text="User ID")
    email = serializers.CharField(help_text="The member's email address")
    grantedAt = serializers.DateTimeField(help_text="When access was granted")


class McpServerAccessGroupSerializer(serializers.Serializer):
    groupId = serializers.CharField(help_text="Group ID")
    name = serializers.CharField(help_text="The group's name")
    memberCount = serializers.IntegerField(help_text="How many members the group has")
    grantedAt = serializers.DateTimeField(help_text="When access was granted")


class McpServerAccessSerializer(serializers.Serializer):
    everyoneInOrganizationCanAccess = serializers.BooleanField(
        help_text="Whether every member in the organization can use this MCP server"
    )
    members = McpServerAccessMemberSerializer(many=True, help_text="Members granted access (admins always have it)")
    groups = McpServerAccessGroupSerializer(many=True, help_text="Groups granted access: each of their members has it")


McpServerAccessResponseSerializer = _envelope("McpServerAccessResponseSerializer", McpServerAccessSerializer())


class GroupSerializer(serializers.Serializer):
    """A group (`mcp_servers.api.serializers.group_output`)."""

    id = serializers.CharField(help_text="Group ID")
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    memberCount = serializers.IntegerField(help_text="How many members the group has")
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


class GroupMemberSerializer(serializers.Serializer):
    """A member of a group (`mcp_servers.api.serializers.group_member_output`)."""

    userId = serializers.CharField(help_text="User ID")
    email = serializers.CharField()
    role = serializers.ChoiceField(choices=["ADMIN", "MEMBER"], help_text="The member's role in the organization")
    addedAt = serializers.DateTimeField(help_text="When the member was added to the group")


GroupResponseSerializer = _envelope("GroupResponseSerializer", GroupSerializer())
GroupListResponseSerializer = _envelope(
    "GroupListResponseSerializer",
    GroupSerializer(many=True, help_text="Groups, newest first"),
    pagination=PaginationSerializer(),
)
GroupMemberResponseSerializer = _envelope("GroupMemberResponseSerializer", GroupMemberSerializer())
GroupMemberListResponseSerializer = _envelope(
    "GroupMemberListResponseSerializer",
    GroupMemberSerializer(many=True, help_text="Members, the latest added first"),
    pagination=PaginationSerializer(),
)


# The tool catalog: one shape per `format` (see `mcp_servers.tool_catalog`).


class CatalogToolDefaultSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Model-facing tool name, unique in the catalog")
    description = serializers.CharField(allow_null=True)
    inputSchema = JsonObjectField()
    needsApproval = serializers.BooleanField()
    serverId = serializers.CharField()
    serverLabel = serializers.CharField()
    toolId = serializers.CharField()
    originalName = serializers.CharField(help_text="The tool's name on its MCP server")


class CatalogToolOpenAISerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["function"])
    function = inline_serializer(
        "CatalogToolOpenAIFunction",
        {
            "name": serializers.CharField(),
            "description": serializers.CharField(required=False),
            "parameters": JsonObjectField(),
        },
    )


class CatalogToolAnthropicSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(required=False)
    input_schema = JsonObjectField()


class CatalogToolMcpSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField(required=False)
    description = serializers.CharField(required=False)
    inputSchema = JsonObjectField()
    annotations = JsonObjectField(required=False)
    _meta = inline_serializer(
        "CatalogToolMcpMeta",
        {
            "needsApproval": serializers.BooleanField(),
            "serverId": serializers.CharField(),
            "originalName": serializers.CharField(),
        },
        label="_meta",
    )


McpToolCatalogResponseSerializer = _envelope(
    "McpToolCatalogResponseSerializer",
    PolymorphicProxySerializer(
        component_name="CatalogTool",
        serializers=[
            CatalogToolDefaultSerializer,
            CatalogToolOpenAISerializer,
            CatalogToolAnthropicSerializer,
            CatalogToolMcpSerializer,
        ],
        resource_type_field_name=None,
        many=True,
    ),
)


# The tool calls.


class ToolCallRequestSerializer(serializers.Serializer):
    tool = serializers.CharField(
        required=False, help_text="The tool's name as `GET /mcp-tools` exports it (`serverLabel__tool`)"
    )
    serverId = serializers.CharField(required=False, help_text="Instead of `tool`: the MCP server's id ...")
    toolName = serializers.CharField(required=False, help_text="... and the tool's own name on that server")
    arguments = JsonObjectField(required=False, help_text="The tool's arguments; they must fit its input schema")


CALL_EXAMPLE = OpenApiExample(
    "A call by the exported name",
    value={"tool": "demo_tools__get_weather", "arguments": {"city": "Lisbon"}},
    request_only=True,
)


class PersonSerializer(serializers.Serializer):
    userId = serializers.CharField()
    email = serializers.CharField()


class CallErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=ToolCallError.values, allow_null=True)
    message = serializers.CharField()


class ToolResultSerializer(serializers.Serializer):
    content = serializers.ListField(
        child=JsonObjectField(), help_text="The MCP content blocks, as the server sent them"
    )
    structuredContent = JsonObjectField(required=False)
    isError = serializers.BooleanField(help_text="The tool's own report of failure: a result, not a failed call")


class ToolCallSerializer(serializers.Serializer):
    """A call (`mcp_servers.api.serializers.tool_call_output`); the list leaves out `arguments` and `result`."""

    id = serializers.CharField()
    status = serializers.ChoiceField(choices=ToolCallStatus.values)
    serverId = serializers.CharField(allow_null=True)
    serverLabel = serializers.CharField()
    toolName = serializers.CharField()
    requestedBy = PersonSerializer(allow_null=True)
    apiKeyPrefix = serializers.CharField(allow_null=True)
    channel = serializers.ChoiceField(
        choices=ToolCallChannel.values, help_text="How the call came: the REST API (API) or the MCP endpoint (MCP)"
    )
    createdAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField(allow_null=True, help_text="Until when a call awaiting approval may run")
    decidedBy = PersonSerializer(allow_null=True)
    decidedAt = serializers.DateTimeField(allow_null=True)
    startedAt = serializers.DateTimeField(allow_null=True)
    finishedAt = serializers.DateTimeField(allow_null=True)
    durationMs = serializers.IntegerField(allow_null=True)
    progress = JsonObjectField(allow_null=True, help_text="The last progress notification of a running call")
    error = CallErrorDetailSerializer(allow_null=True)
    requiresAuth = serializers.BooleanField()
    authUrl = serializers.CharField(allow_null=True)
    arguments = JsonObjectField(required=False)
    result = ToolResultSerializer(required=False, allow_null=True)


ToolCallResponseSerializer = _envelope("ToolCallResponseSerializer", ToolCallSerializer())
ToolCallListResponseSerializer = _envelope(
    "ToolCallListResponseSerializer",
    ToolCallSerializer(many=True, help_text="Calls, newest first"),
    pagination=PaginationSerializer(),
)


# --- Operations: one decorator per view method ----------------------------------------------------------------

_NOT_GIVEN: Any = object()


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    *,
    ok: tuple[int, Any, str],
    parameters: tuple[OpenApiParameter, ...] = (),
    request: Any = _NOT_GIVEN,
    bad_request: bool = False,
    not_found: str | None = None,
    examples: tuple[OpenApiExample, ...] = (),
    extra_errors: tuple[int, ...] = (),
    tag: str = TAG,
    more: dict[int, OpenApiResponse] | None = None,
) -> Any:
    """`extend_schema` for one operation under `/organizations/{orgId}`: its success response (and `more`), and the
    errors every operation has (401, 404, 429, 500), plus 400 when `bad_request` and `extra_errors`."""
    status, body, what = ok
    errors = (*((400,) if bad_request else ()), *extra_errors)
    options: dict[str, Any] = {
        "operation_id": operation_id,
        "summary": summary,
        "description": description,
        "tags": [tag],
        "parameters": [ORG_ID, *parameters],
        "responses": {
            status: OpenApiResponse(body, description=what),
            **(more or {}),
            **error_responses(*errors, not_found=not_found),
        },
    }
    if request is not _NOT_GIVEN:
        options["request"] = request
    if examples:
        options["examples"] = list(examples)
    return extend_schema(**options)


_SERVER_NOT_FOUND = "Organization or MCP server not found, or no admin access"

LIST_SERVERS = _operation(
    "listMcpServers",
    "List MCP servers",
    "The organization's MCP servers, newest first, `limit` at a time. Requires admin access.",
    parameters=(LIMIT, CURSOR),
    ok=(200, McpServerListResponseSerializer, "A page of MCP servers"),
    bad_request=True,
)
CREATE_SERVER = _operation(
    "createMcpServer",
    "Create an MCP server",
    "Creates a new MCP server for an organization. Requires admin access to the organization. The server "
    "URL is validated, static headers are encrypted, and tools are synced after creation.",
    request=McpServerCreateRequestSerializer,
    examples=(CREATE_EXAMPLE,),
    ok=(201, McpServerResponseSerializer, "MCP server created successfully"),
    bad_request=True,
)
GET_SERVER = _operation(
    "getMcpServer",
    "Get an MCP server",
    "The server as it stands; poll it while `lastSyncStatus` is `PENDING`.",
    parameters=(SERVER_ID,),
    ok=(200, McpServerResponseSerializer, "The MCP server"),
    not_found=_SERVER_NOT_FOUND,
)
UPDATE_SERVER = _operation(
    "updateMcpServer",
    "Update an MCP server",
    "Changes what is sent; `serverLabel` never changes. Header values stay write-only: replace them all "
    "(`headers`) or set and remove some by key (`setHeaders`, `removeHeaders`). A new URL or new headers "
    "re-sync the tools, with the same wait as a create.",
    parameters=(SERVER_ID,),
    request=McpServerUpdateRequestSerializer,
    ok=(200, McpServerResponseSerializer, "The updated MCP server"),
    bad_request=True,
    not_found=_SERVER_NOT_FOUND,
)
DELETE_SERVER = _operation(
    "deleteMcpServer",
    "Delete an MCP server",
    "Deletes the server with its tools, headers and credentials; its OAuth tokens are revoked.",
    parameters=(SERVER_ID,),
    request=None,
    ok=(204, None, "MCP server deleted"),
    not_found=_SERVER_NOT_FOUND,
)
SYNC_SERVER = _operation(
    "syncMcpServer",
    "Re-sync an MCP server's tools",
    "Syncs the tools now and answers once the sync settled (or after the same wait as a create).",
    parameters=(SERVER_ID,),
    request=None,
    ok=(200, McpServerResponseSerializer, "The MCP server after the sync"),
    not_found=_SERVER_NOT_FOUND,
)
REAUTHORIZE_SERVER = _operation(
    "reauthorizeMcpServer",
    "Re-authorize an MCP server",
    "Hands out a fresh OAuth authorization URL (`authUrl`) for a server that uses OAuth; its current "
    "tokens keep working until new ones arrive. A server that never asked for OAuth is a 400.",
    parameters=(SERVER_ID,),
    request=None,
    ok=(200, McpServerResponseSerializer, "The MCP server with its new authUrl"),
    bad_request=True,
    not_found=_SERVER_NOT_FOUND,
)
LIST_SERVER_TOOLS = _operation(
    "listMcpServerTools",
    "List an MCP server's tools",
    "Every tool the server listed, with what an admin needs to review it, by name.",
    parameters=(SERVER_ID,),
    ok=(200, McpToolListResponseSerializer, "The server's tools"),
    not_found=_SERVER_NOT_FOUND,
)
UPDATE_TOOL = _operation(
    "updateMcpTool",
    "Set a tool's access mode",
    "An admin's decision on a tool; the tool's current definition counts as reviewed.",
    parameters=(SERVER_ID, TOOL_ID),
    request=McpToolUpdateRequestSerializer,
    ok=(200, McpToolDetailResponseSerializer, "The updated tool"),
    bad_request=True,
    not_found="Organization, MCP server or tool not found, or no admin access",
)
GET_ACCESS = _operation(
    "getMcpServerAccess",
    "List who may use an MCP server",
    "Members granted access to a server that not everyone in the organization can use (`members`), and groups "
    "granted it (`groups`): a member may use the server when granted it directly or through any of their groups.",
    parameters=(SERVER_ID,),
    ok=(200, McpServerAccessResponseSerializer, "The server's access list"),
    not_found=_SERVER_NOT_FOUND,
)
GRANT_ACCESS = _operation(
    "grantMcpServerAccess",
    "Grant a member or groups access to an MCP server",
    "Grants a member of the organization (by `email`) and/or groups of the organization (`groupIds`, at most 100) "
    "access to the server, all or nothing (idempotent).",
    parameters=(SERVER_ID,),
    request=McpServerAccessGrantRequestSerializer,
    ok=(201, McpServerAccessResponseSerializer, "The server's access list"),
    bad_request=True,
    not_found=_SERVER_NOT_FOUND,
)
REVOKE_ACCESS = _operation(
    "revokeMcpServerAccess",
    "Revoke a member's access to an MCP server",
    "Removes one member's direct grant (they may still use the server through a group); a `userId` that is not "
    "a whole number is a 400.",
    parameters=(SERVER_ID, USER_ID),
    request=None,
    ok=(204, None, "Access revoked"),
    bad_request=True,
    not_found="Organization, MCP server or access grant not found, or no admin access",
)
REVOKE_GROUP_ACCESS = _operation(
    "revokeMcpServerGroupAccess",
    "Revoke a group's access to an MCP server",
    "Removes one group's grant; its members lose the server on their next catalog read or call, unless granted "
    "it otherwise.",
    parameters=(SERVER_ID, GROUP_ID),
    request=None,
    ok=(204, None, "Access revoked"),
    not_found="Organization, MCP server or group access grant not found, or no admin access",
)
TOOL_CATALOG = _operation(
    "listMcpToolCatalog",
    "The tools an AI model may use",
    "The tools this caller's AI models may use (connected servers the caller may access, tools the server "
    "still lists, nothing BLOCKED), with unique model-facing names, in the shape `format` asks for. Any "
    "member's key.",
    parameters=(FORMAT,),
    ok=(200, McpToolCatalogResponseSerializer, "The tool catalog"),
    bad_request=True,
    not_found="Organization not found, or not a member",
)


CALL_TOOL = _operation(
    "callTool",
    "Call a tool",
    "Calls a tool through the service, with its server's stored headers or OAuth tokens (any member's key, on the "
    "servers they may use). `ALWAYS_ALLOW`: it runs now; the answer is its result as the server sent it (200; a tool "
    "error, `isError`, is a result), or 202 when it takes longer than the service waits (poll the call). "
    "`NEEDS_APPROVAL`: nothing reaches the server; 202 with the call awaiting approval until `expiresAt`. A blocked "
    "tool is a 403; arguments that do not fit the tool's input schema are a 400.",
    request=ToolCallRequestSerializer,
    examples=(CALL_EXAMPLE,),
    ok=(200, ToolCallResponseSerializer, "The call, with its result (202: the call, still to come)"),
    bad_request=True,
    extra_errors=(403, 409, 502, 504),
    not_found="Organization or tool not found, or not usable by you",
    tag=CALLS_TAG,
    more={202: OpenApiResponse(ToolCallResponseSerializer, description="Awaiting approval, or still running")},
)
LIST_TOOL_CALLS = _operation(
    "listToolCalls",
    "List tool calls",
    "The audit trail, newest first: every call for an admin, your own otherwise.",
    parameters=(CALL_STATUS, CALL_SERVER_ID, LIMIT, CURSOR),
    ok=(200, ToolCallListResponseSerializer, "A page of tool calls"),
    bad_request=True,
    not_found="Organization not found, or not a member",
    tag=CALLS_TAG,
)
GET_TOOL_CALL = _operation(
    "getToolCall",
    "Get a tool call",
    "One call with its arguments and result; poll it while it is `RUNNING`.",
    parameters=(CALL_ID,),
    ok=(200, ToolCallResponseSerializer, "The tool call"),
    not_found="Organization or tool call not found, or not yours",
    tag=CALLS_TAG,
)
APPROVE_TOOL_CALL = _operation(
    "approveToolCall",
    "Approve a tool call",
    "Runs a call awaiting approval, exactly as requested (the member it was made for, or an admin). A call whose "
    "tool changed, was blocked or may no longer be used is refused (409).",
    parameters=(CALL_ID,),
    request=None,
    ok=(200, ToolCallResponseSerializer, "The call, with its result (202: still running)"),
    extra_errors=(403, 409, 502, 504),
    not_found="Organization or tool call not found, or not yours",
    tag=CALLS_TAG,
    more={202: OpenApiResponse(ToolCallResponseSerializer, description="Still running")},
)
DENY_TOOL_CALL = _operation(
    "denyToolCall",
    "Deny a tool call",
    "Refuses a call awaiting approval; nothing reaches the server.",
    parameters=(CALL_ID,),
    request=None,
    ok=(200, ToolCallResponseSerializer, "The denied call"),
    extra_errors=(409,),
    not_found="Organization or tool call not found, or not yours",
    tag=CALLS_TAG,
)


_GROUP_NOT_FOUND = "Organization or group not found, or no admin access"

LIST_GROUPS = _operation(
    "listGroups",
    "List groups",
    "The organization's groups, newest first, `limit` at a time, with their member counts. Requires admin access "
    "(reads too: who is in which group is for the organization's admins).",
    parameters=(LIMIT, CURSOR),
    ok=(200, GroupListResponseSerializer, "A page of groups"),
    bad_request=True,
    tag=GROUPS_TAG,
)
CREATE_GROUP = _operation(
    "createGroup",
    "Create a group",
    "A group of the organization's members, to grant MCP servers to all of them at once. The name is unique in the "
    "organization, case-insensitively (a taken name is a 400). Requires admin access.",
    request=GroupCreateRequestSerializer,
    examples=(GROUP_EXAMPLE,),
    ok=(201, GroupResponseSerializer, "Group created"),
    bad_request=True,
    tag=GROUPS_TAG,
)
GET_GROUP = _operation(
    "getGroup",
    "Get a group",
    "One group with its member count. Requires admin access.",
    parameters=(GROUP_ID,),
    ok=(200, GroupResponseSerializer, "The group"),
    not_found=_GROUP_NOT_FOUND,
    tag=GROUPS_TAG,
)
UPDATE_GROUP = _operation(
    "updateGroup",
    "Update a group",
    "Renames a group or changes its description. Requires admin access.",
    parameters=(GROUP_ID,),
    request=GroupUpdateRequestSerializer,
    ok=(200, GroupResponseSerializer, "The updated group"),
    bad_request=True,
    not_found=_GROUP_NOT_FOUND,
    tag=GROUPS_TAG,
)
DELETE_GROUP = _operation(
    "deleteGroup",
    "Delete a group",
    "Deletes the group, its memberships and its access grants (not the members, nor the servers): its members "
    "lose what only the group gave them on their next catalog read or call. Requires admin access.",
    parameters=(GROUP_ID,),
    request=None,
    ok=(204, None, "Group deleted"),
    not_found=_GROUP_NOT_FOUND,
    tag=GROUPS_TAG,
)
LIST_GROUP_MEMBERS = _operation(
    "listGroupMembers",
    "List a group's members",
    "The group's members, the latest added first, `limit` at a time. Requires admin access.",
    parameters=(GROUP_ID, LIMIT, CURSOR),
    ok=(200, GroupMemberListResponseSerializer, "A page of the group's members"),
    bad_request=True,
    not_found=_GROUP_NOT_FOUND,
    tag=GROUPS_TAG,
)
ADD_GROUP_MEMBER = _operation(
    "addGroupMember",
    "Add a member to a group",
    "Adds a member of the organization, by `userId` or by `email`, to the group (idempotent); anyone who is not a "
    "member of the organization is a 400. Requires admin access.",
    parameters=(GROUP_ID,),
    request=GroupMemberAddRequestSerializer,
    examples=(GROUP_MEMBER_EXAMPLE,),
    ok=(201, GroupMemberResponseSerializer, "The group's member"),
    bad_request=True,
    not_found=_GROUP_NOT_FOUND,
    tag=GROUPS_TAG,
)
REMOVE_GROUP_MEMBER = _operation(
    "removeGroupMember",
    "Remove a member from a group",
    "Removes one member from the group: what only the group gave them is gone on their next catalog read or call. "
    "A `userId` that is not a whole number is a 400. Requires admin access.",
    parameters=(GROUP_ID, MEMBER_USER_ID),
    request=None,
    ok=(204, None, "Member removed"),
    bad_request=True,
    not_found="Organization, group or group member not found, or no admin access",
    tag=GROUPS_TAG,
)


# --- Post-processing ----------------------------------------------------------------------------------------

_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def openapi_path(route: str) -> str:
    """`organizations/<str:org_id>/...` (a Django route) as the document's `/api/public/organizations/{orgId}/...`."""
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + PATH_PARAMETER_NAMES.get(m[1], m[1]) + "}", route)
    return f"/api/public/{path}"


def _drop_enum_ids(node: Any) -> None:
    """drf-spectacular marks enums with `x-spec-enum-id` for its enum hook, which is not used here."""
    if isinstance(node, dict):
        node.pop("x-spec-enum-id", None)
        for value in node.values():
            _drop_enum_ids(value)
    elif isinstance(node, list):
        for value in node:
            _drop_enum_ids(value)


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular's POSTPROCESSING_HOOKS: camelCase path parameters, Retry-After on 429, and the contract's
    raw components."""
    _drop_enum_ids(result)
    paths: dict[str, Any] = {}
    for path, item in result.get("paths", {}).items():
        renamed = _PATH_PARAMETER.sub(lambda m: "{" + PATH_PARAMETER_NAMES.get(m[1], m[1]) + "}", path)
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path":
                    parameter["name"] = PATH_PARAMETER_NAMES.get(parameter["name"], parameter["name"])
            too_many = operation.get("responses", {}).get("429")
            if too_many is not None:
                too_many["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
        paths[renamed] = item
    result["paths"] = paths
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(CONTRACT_COMPONENTS)
    result["components"]["schemas"] = dict(sorted(schemas.items()))
    return result
