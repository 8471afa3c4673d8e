"""Input parsing and output rendering for the public API; the camelCase contract is spelled out here."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rest_framework import serializers

from core.errors import ValidationError
from mcp_servers.models import AccessMode, McpServer, McpTool, ToolCall, ToolCallStatus
from organizations.models import Group, GroupMembership


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else (DRF's CharField would turn 42 into "42")."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean and nothing else (DRF's BooleanField would accept "yes" and 1)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class HeaderInputSerializer(serializers.Serializer):
    key = StrictCharField()
    value = StrictCharField()


class ClientCredentialsInputSerializer(serializers.Serializer):
    clientId = StrictCharField()
    clientSecret = StrictCharField(required=False)
    privateKey = StrictCharField(required=False)
    signingAlgorithm = StrictCharField(required=False)


class McpServerCreateInputSerializer(serializers.Serializer):
    displayName = StrictCharField()
    serverUrl = StrictCharField()
    headers = HeaderInputSerializer(many=True, required=False, default=list)
    everyoneInOrganizationCanAccess = StrictBooleanField(required=False, default=True)
    clientCredentials = ClientCredentialsInputSerializer(required=False, allow_null=True)


def _first_error(errors: Any, path: str = "") -> tuple[str, str]:
    if isinstance(errors, dict):
        key, value = next(iter(errors.items()))
        if key in ("non_field_errors", "__all__"):
            return _first_error(value, path)
        return _first_error(value, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
    if isinstance(errors, list):
        for index, item in enumerate(errors):
            if item:
                nested = isinstance(item, dict) or (isinstance(item, list) and item and not isinstance(item[0], str))
                return _first_error(item, f"{path}[{index}]" if nested else path)
    return path, str(errors)


def validated_input(serializer: serializers.Serializer) -> dict[str, Any]:
    """The serializer's validated data, or a ValidationError naming the first bad field."""
    if not isinstance(serializer.initial_data, dict):
        raise ValidationError("body", "must be a JSON object.")
    if serializer.is_valid():
        return dict(serializer.validated_data)
    field, message = _first_error(serializer.errors)
    raise ValidationError(field or "body", message)


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tool_output(tool: McpTool) -> dict[str, Any]:
    return {
        "id": str(tool.id),
        "name": tool.name,
        "description": tool.description,
        "readOnlyHint": tool.read_only_hint,
        "accessMode": tool.access_mode,
        "foundInServer": tool.found_in_server,
    }


def mcp_server_output(server: McpServer, tools: Iterable[McpTool] | None = None) -> dict[str, Any]:
    """The contract's server object, with `tools` or else the server's prefetched tools (see selectors)."""
    return {
        "id": str(server.id),
        "displayName": server.display_name,
        "serverUrl": server.server_url,
        "serverLabel": server.server_label,
        "transportType": server.transport_type,
        "setupState": server.setup_state,
        "lastSyncStatus": server.last_sync_status,
        "lastSyncAttemptAt": _timestamp(server.last_sync_attempt_at),
        "lastSuccessfulSyncAt": _timestamp(server.last_successful_sync_at),
        "hasCompletedFirstSync": server.has_completed_first_sync,
        "syncErrorMessage": server.sync_error_message,
        "tools": [tool_output(tool) for tool in (server.tools.all() if tools is None else tools)],
        "createdAt": _timestamp(server.created_at),
        "updatedAt": _timestamp(server.updated_at),
        "authUrl": server.auth_url,
        "requiresAuth": server.requires_auth,
    }


class McpServerUpdateInputSerializer(serializers.Serializer):
    displayName = StrictCharField(required=False)
    serverUrl = StrictCharField(required=False)
    headers = HeaderInputSerializer(many=True, required=False)
    setHeaders = HeaderInputSerializer(many=True, required=False)
    removeHeaders = serializers.ListField(child=StrictCharField(), required=False)
    everyoneInOrganizationCanAccess = StrictBooleanField(required=False)
    clientCredentials = ClientCredentialsInputSerializer(required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and "serverLabel" in data:
            raise ValidationError("serverLabel", "cannot be changed; it is derived once, at creation.")
        return super().to_internal_value(data)


class ToolUpdateInputSerializer(serializers.Serializer):
    accessMode = serializers.ChoiceField(choices=AccessMode.choices)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("accessMode", ""), str):
            raise ValidationError("accessMode", "must be one of ALWAYS_ALLOW, NEEDS_APPROVAL, BLOCKED.")
        return super().to_internal_value(data)


class AccessGrantInputSerializer(serializers.Serializer):
    """A member by `email`, and/or groups by `groupIds`: at least one."""

    email = StrictCharField(required=False)
    groupIds = serializers.ListField(child=StrictCharField(), required=False, allow_empty=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "email" not in attrs and not attrs.get("groupIds"):
            raise ValidationError("email", "send a member's email, or groupIds (a list of group ids), or both.")
        return attrs


def list_params(query: Any) -> tuple[int, str | None]:
    """`limit` (1-100, default 50) and `cursor` from the query string."""
    raw = query.get("limit")
    limit = 50
    if raw is not None:
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 100:  # "²".isdigit(), int("²") fails
            raise ValidationError("limit", "must be a whole number from 1 to 100.")
        limit = int(raw)
    return limit, query.get("cursor") or None


def tool_detail_output(tool: McpTool) -> dict[str, Any]:
    """A tool with what an admin needs to review it (beyond the contract's tool object)."""
    return {
        **tool_output(tool),
        "title": tool.title,
        "inputSchema": tool.input_schema,
        "annotations": tool.annotations,
        "definitionChangedSinceReview": tool.definition_changed_since_review,
        "createdAt": _timestamp(tool.created_at),
        "updatedAt": _timestamp(tool.updated_at),
    }


def access_output(server: McpServer, grants: Any, group_grants: Any) -> dict[str, Any]:
    """Who was granted a server: members directly (`members`) and groups (`groups`, each member of which may use
    it)."""
    return {
        "everyoneInOrganizationCanAccess": server.everyone_in_organization_can_access,
        "members": [
            {"userId": str(grant.user_id), "email": grant.user.email, "grantedAt": _timestamp(grant.created_at)}
            for grant in grants
        ],
        "groups": [
            {
                "groupId": str(grant.group_id),
                "name": grant.group.name,
                "memberCount": int(getattr(grant, "member_count", 0)),
                "grantedAt": _timestamp(grant.created_at),
            }
            for grant in group_grants
        ],
    }


# --- Groups ---------------------------------------------------------------------------------------------------------


class UserIdField(serializers.Field):
    """A user id as the API renders it (a string of digits), or as a JSON integer."""

    default_error_messages = {"invalid": "is not a valid user id."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, str) and not (data.isascii() and data.isdigit()):  # "²".isdigit(), but int("²") fails
            self.fail("invalid")
        if isinstance(data, str) and len(data) > 20:  # no one's id, and past Python's int() limit if much longer
            return 2**64
        value = int(data)
        if value < 0:
            self.fail("invalid")
        return value

    def to_representation(self, value: Any) -> str:
        return str(value)


class GroupCreateInputSerializer(serializers.Serializer):
    name = StrictCharField()
    description = StrictCharField(required=False, default="")


class GroupUpdateInputSerializer(serializers.Serializer):
    name = StrictCharField(required=False)
    description = StrictCharField(required=False)


class GroupMemberInputSerializer(serializers.Serializer):
    """A member of the organization, by `userId` or by `email`: exactly one."""

    userId = UserIdField(required=False)
    email = StrictCharField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("userId" in attrs) == ("email" in attrs):
            raise ValidationError("userId", "send either userId or email (of a member of this organization).")
        return attrs


def group_output(group: Group) -> dict[str, Any]:
    """A group (with `member_count`, as the group selectors read it)."""
    return {
        "id": str(group.pk),
        "name": group.name,
        "description": group.description,
        "memberCount": int(getattr(group, "member_count", 0)),
        "createdAt": _timestamp(group.created_at),
        "updatedAt": _timestamp(group.updated_at),
    }


def group_member_output(member: GroupMembership) -> dict[str, Any]:
    return {
        "userId": str(member.membership.user_id),
        "email": member.membership.user.email,
        "role": member.membership.role,
        "addedAt": _timestamp(member.created_at),
    }


# --- Tool calls -----------------------------------------------------------------------------------------------------


class ToolCallInputSerializer(serializers.Serializer):
    tool = StrictCharField(required=False)
    serverId = StrictCharField(required=False)
    toolName = StrictCharField(required=False)
    arguments = serializers.JSONField(required=False, default=dict)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        by_name = "tool" in attrs
        by_server = "serverId" in attrs or "toolName" in attrs
        if by_name == by_server or (by_server and not ("serverId" in attrs and "toolName" in attrs)):
            raise ValidationError(
                "tool", "send either tool (the name GET /mcp-tools exports), or serverId and toolName."
            )
        if not isinstance(attrs.get("arguments"), dict):
            raise ValidationError("arguments", "must be a JSON object.")
        return attrs


def _person(user: Any) -> dict[str, str] | None:
    return None if user is None else {"userId": str(user.pk), "email": user.email}


def tool_call_output(call: ToolCall, *, detail: bool = True) -> dict[str, Any]:
    """A call as the audit trail shows it; `detail` adds its arguments and result (they may hold personal data, so
    only the member it was made for and the organization's admins ever read them)."""
    output: dict[str, Any] = {
        "id": str(call.id),
        "status": call.status,
        "serverId": str(call.server_id) if call.server_id else None,
        "serverLabel": call.server_label,
        "toolName": call.tool_name,
        "requestedBy": _person(call.requested_by),
        "apiKeyPrefix": call.api_key.prefix if call.api_key else None,
        "channel": call.channel,
        "createdAt": _timestamp(call.created_at),
        "expiresAt": _timestamp(call.expires_at),
        "decidedBy": _person(call.decided_by),
        "decidedAt": _timestamp(call.decided_at),
        "startedAt": _timestamp(call.started_at),
        "finishedAt": _timestamp(call.finished_at),
        "durationMs": call.duration_ms,
        "progress": call.progress,
        "error": {"code": call.error_code, "message": call.error_message} if call.error_message else None,
        "requiresAuth": call.status == ToolCallStatus.AUTH_REQUIRED,
        "authUrl": call.auth_url,
    }
    if detail:
        output["arguments"] = json.loads(call.arguments)
        output["result"] = json.loads(call.result) if call.result else None
    return output
