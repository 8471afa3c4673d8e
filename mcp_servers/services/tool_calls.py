"""Tool calls: where a model's call is authorized, approved when the tool's mode says so, run against its server
with the stored headers or OAuth tokens, and recorded.

- `tool_call_request` governs a call: a tool the server no longer lists is not found, a BLOCKED one is refused (and
  the refusal recorded), arguments must fit the tool's input schema; a NEEDS_APPROVAL call waits for an approval
  (`tool_call_decide`), an ALWAYS_ALLOW one runs at once (`tool_call_run`). Nothing reaches the server before that.
- `tool_call_run` runs a call in the process's background event loop, over a session with the server kept open
  between calls (`integrations.mcp.SessionPool`), and waits for it up to `wait` seconds: a call that takes longer
  goes on there and records its result when it has one (poll the record). A 401 refreshes the OAuth token once (one
  refresh per server at a time, across processes) and retries; a 403 `insufficient_scope` asks a person for the
  wider scope (step-up); any other challenge asks for authorization again. Every outcome is written once, by the
  call itself, on the record's RUNNING row.
- `tool_calls_upkeep` (every beat tick) expires unapproved calls, fails calls whose process stopped mid-call, and
  purges records older than MCP_CALL_RETENTION_DAYS.

Secrets (headers, tokens) and the arguments and results never leave the service's processes, never cross the broker,
and are never logged; the arguments and results are stored encrypted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import jsonschema
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from core import logging as log_context
from core.errors import Conflict, NotFound, ValidationError
from integrations.loop import background_loop
from integrations.mcp import (
    McpClientError,
    McpDestinationRefused,
    McpHeadersRejected,
    McpLimitExceeded,
    McpTimeout,
    McpUnreachable,
    ProgressCallback,
    Relay,
    ToolResult,
)
from mcp_servers.models import (
    AccessMode,
    McpServer,
    McpTool,
    ToolCall,
    ToolCallChannel,
    ToolCallError,
    ToolCallStatus,
)
from mcp_servers.selectors import servers_usable_by
from mcp_servers.services.upstream import Unreached, Upstream, in_db_thread, pool, upstream_of, with_credentials
from organizations.models import ApiKey, Membership, Organization

logger = logging.getLogger(__name__)

# A RUNNING call older than its bound by this much lost the process that ran it.
_INTERRUPTED_MARGIN = timedelta(minutes=5)
_PROGRESS_EVERY_SECONDS = 1.0
_EXPIRED_MESSAGE = "Nobody approved the call in time."


@dataclass(frozen=True)
class Caller:
    """Who asks: the member, the key they used (None in the admin), whether they administer the organization, and
    through which channel (the REST API or the MCP endpoint)."""

    organization: Organization
    user: User
    api_key: ApiKey | None
    is_admin: bool
    channel: ToolCallChannel = ToolCallChannel.API


# --- Governing a call ---------------------------------------------------------------------------------------------


def tool_call_request(*, caller: Caller, tool: McpTool, arguments: Any) -> ToolCall:
    """Record a call of `tool` (found by `selectors.tool_call_target`, so on a server the caller may use) and decide
    what happens to it: RUNNING (ALWAYS_ALLOW: run it with `tool_call_run`), AWAITING_APPROVAL, or a refusal.

    Raises NotFound for a tool the server no longer lists and ValidationError for arguments that do not fit its input
    schema; a BLOCKED tool's call is recorded REFUSED (and returned so). Nothing is sent to the server here.
    """
    if not tool.found_in_server:
        raise NotFound(f"The MCP server no longer lists the tool '{tool.name}'.")
    if not isinstance(arguments, dict):
        raise ValidationError("arguments", "must be a JSON object.")
    now = timezone.now()
    fields: dict[str, Any] = {
        "organization": caller.organization,
        "server": tool.server,
        "server_label": tool.server.server_label,
        "tool": tool,
        "tool_name": tool.name,
        "requested_by": caller.user,
        "api_key": caller.api_key,
        "arguments": json.dumps(arguments, ensure_ascii=False, separators=(",", ":")),
        "arguments_digest": arguments_digest(arguments),
        "definition_hash": tool.definition_hash,
        "channel": caller.channel,
    }
    if tool.access_mode == AccessMode.BLOCKED:
        call = ToolCall.objects.create(
            **fields,
            status=ToolCallStatus.REFUSED,
            error_code=ToolCallError.BLOCKED,
            error_message=f"An organization admin blocked the tool '{tool.name}'.",
            finished_at=now,
        )
        return call
    _validate_arguments(tool, arguments)
    if tool.access_mode == AccessMode.NEEDS_APPROVAL:
        expires = now + timedelta(seconds=settings.MCP_CALL_APPROVAL_SECONDS)
        return ToolCall.objects.create(**fields, status=ToolCallStatus.AWAITING_APPROVAL, expires_at=expires)
    return ToolCall.objects.create(**fields, status=ToolCallStatus.RUNNING, started_at=now)


def arguments_digest(arguments: dict[str, Any]) -> str:
    """A keyed digest of a call's arguments (in canonical JSON): equal arguments, equal digest; unreadable without
    the service's secret key, so the arguments stay as private as their encrypted copy."""
    canonical = json.dumps(arguments, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return salted_hmac("mcp_servers.tool_call.arguments", canonical, algorithm="sha256").hexdigest()


def tool_call_repeat(*, caller: Caller, tool: McpTool, arguments: dict[str, Any]) -> ToolCall | None:
    """The call an MCP client makes again, if it made it before and it still has something to say: awaiting approval
    (not expired), or decided since and its outcome not yet handed to the client. The newest such call, or None.

    An MCP client without elicitation cannot wait for an approval; it is told how to approve the call and calls
    again, with the same arguments, once it was approved (or denied).
    """
    window = timezone.now() - timedelta(seconds=settings.MCP_CALL_APPROVAL_SECONDS + settings.MCP_CALL_TIMEOUT_SECONDS)
    candidates = ToolCall.objects.filter(
        organization=caller.organization,
        requested_by=caller.user,
        tool=tool,
        arguments_digest=arguments_digest(arguments),
        channel=ToolCallChannel.MCP,
        created_at__gte=window,
        delivered_at__isnull=True,
    ).filter(Q(status=ToolCallStatus.AWAITING_APPROVAL, expires_at__gt=timezone.now()) | Q(decided_at__isnull=False))
    return candidates.select_related("server").order_by("-id").first()


def tool_call_delivered(*, call: ToolCall) -> None:
    """The outcome of an approved call reached the MCP client that asked again: it is not handed out twice."""
    now = timezone.now()
    ToolCall.objects.filter(pk=call.pk, delivered_at__isnull=True).update(delivered_at=now, updated_at=now)
    call.delivered_at = now


def _validate_arguments(tool: McpTool, arguments: dict[str, Any]) -> None:
    """The tool's input schema, as its server declared it (JSON Schema 2020-12 unless it says otherwise). A schema
    that is itself invalid cannot judge anything: the server will."""
    validator = _validator(tool)
    if validator is None:
        return
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is not None:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
        raise ValidationError(f"arguments{where}", f"{error.message} (the tool's input schema)")


_VALIDATORS: OrderedDict[str, Any] = OrderedDict()  # by definition hash, the most recently used last
_VALIDATORS_LOCK = threading.Lock()
_VALIDATORS_KEPT = 1024


def _validator(tool: McpTool) -> Any:
    """The tool's input-schema validator (checking a schema costs more than a call's other checks together), kept by
    its definition's hash, which covers the input schema; None for a schema that is not valid JSON Schema."""
    with _VALIDATORS_LOCK:
        if tool.definition_hash in _VALIDATORS:
            _VALIDATORS.move_to_end(tool.definition_hash)
            return _VALIDATORS[tool.definition_hash]
    schema = tool.input_schema if isinstance(tool.input_schema, dict) else {"type": "object"}
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
        validator: Any = validator_class(schema)
    except jsonschema.SchemaError:
        logger.info("tool call: the tool's input schema is not valid JSON Schema; the server validates alone")
        validator = None
    with _VALIDATORS_LOCK:
        _VALIDATORS[tool.definition_hash] = validator
        while len(_VALIDATORS) > _VALIDATORS_KEPT:
            _VALIDATORS.popitem(last=False)
    return validator


def tool_call_decide(*, call: ToolCall, user: User, is_admin: bool, approve: bool) -> ToolCall:
    """Approve (the call becomes RUNNING: run it with `tool_call_run`) or deny a call awaiting approval. The member
    it was made for and the organization's admins may decide; anyone else gets NotFound, as for another's call.

    Exactly the recorded arguments run. A call whose tool changed its definition since, was blocked, is no longer
    listed, or may no longer be used by its requester, is refused instead; so is an expired or decided one
    (Conflict, naming why; the refusal is recorded).
    """
    if not is_admin and call.requested_by_id != user.pk:
        raise NotFound("Tool call not found.")
    refusal: Conflict | None = None
    with transaction.atomic():
        locked = ToolCall.objects.select_for_update().get(pk=call.pk)
        now = timezone.now()
        if locked.status == ToolCallStatus.AWAITING_APPROVAL and locked.expires_at and locked.expires_at <= now:
            _expire(locked, now)
        if locked.status != ToolCallStatus.AWAITING_APPROVAL:
            refusal = Conflict(
                f"The call can no longer be decided: it is {locked.status}.",
                callId=str(locked.pk),
                status=locked.status,
            )
        else:
            locked.decided_by, locked.decided_at = user, now
            reason = _still_allowed(locked) if approve else None
            if not approve:
                locked.status, locked.finished_at = ToolCallStatus.DENIED, now
            elif reason is not None:
                code, message = reason
                locked.status, locked.error_code, locked.error_message, locked.finished_at = (
                    ToolCallStatus.REFUSED,
                    code,
                    message,
                    now,
                )
                refusal = Conflict(message, callId=str(locked.pk), status=ToolCallStatus.REFUSED, code=code)
            else:
                locked.status, locked.started_at = ToolCallStatus.RUNNING, now
            locked.save()
    if refusal is not None:
        raise refusal
    return locked


def _still_allowed(call: ToolCall) -> tuple[str, str] | None:
    """Why the approved call may not run now, or None: the approval was for the tool as it stood, for its requester."""
    if call.tool_id is None or call.server_id is None or call.requested_by_id is None:
        return ToolCallError.ACCESS_REVOKED, "The tool, its MCP server or the member the call was made for is gone."
    tool = McpTool.objects.filter(pk=call.tool_id).only("access_mode", "found_in_server", "definition_hash").first()
    if tool is None or not tool.found_in_server:
        return ToolCallError.ACCESS_REVOKED, f"The MCP server no longer lists the tool '{call.tool_name}'."
    if tool.access_mode == AccessMode.BLOCKED:
        return ToolCallError.BLOCKED, f"An organization admin blocked the tool '{call.tool_name}' meanwhile."
    if tool.definition_hash != call.definition_hash:
        return ToolCallError.DEFINITION_CHANGED, (
            f"The server changed the tool '{call.tool_name}' after the call was requested: what was approved is "
            "not what would run. Request the call again."
        )
    requester_is_admin = Membership.objects.filter(
        organization_id=call.organization_id, user_id=call.requested_by_id, role=Membership.Role.ADMIN
    ).exists()
    usable = servers_usable_by(
        organization=call.organization, user_id=call.requested_by_id, is_admin=requester_is_admin
    )
    if not usable.filter(pk=call.server_id).exists():
        return ToolCallError.ACCESS_REVOKED, "The member the call was made for may no longer use this MCP server."
    return None


def _expire(call: ToolCall, now: Any) -> None:
    call.status, call.finished_at = ToolCallStatus.EXPIRED, now
    call.error_message = _EXPIRED_MESSAGE
    call.save(update_fields=["status", "finished_at", "error_message", "updated_at"])


def tool_call_expire_if_due(call: ToolCall) -> ToolCall:
    """A call read after its approval deadline reads as EXPIRED (the upkeep task records it too, in bulk)."""
    if call.status == ToolCallStatus.AWAITING_APPROVAL and call.expires_at and call.expires_at <= timezone.now():
        expired = ToolCall.objects.filter(pk=call.pk, status=ToolCallStatus.AWAITING_APPROVAL).update(
            status=ToolCallStatus.EXPIRED,
            finished_at=timezone.now(),
            error_message=_EXPIRED_MESSAGE,
            updated_at=timezone.now(),
        )
        if expired:
            call.refresh_from_db()
    return call


# --- Running a call -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    status: ToolCallStatus
    result: ToolResult | None = None
    error_code: str | None = None
    error_message: str | None = None
    auth_url: str | None = None


@dataclass(frozen=True)
class _Spec:
    """What a running call needs, read before it leaves the request's thread (the loop's thread reads no rows)."""

    call_id: uuid.UUID
    server_id: uuid.UUID
    tool_name: str
    arguments: dict[str, Any]
    upstream: Upstream
    relay: Relay | None = None  # the MCP client the call came from, for what the server asks it meanwhile
    progress: ProgressCallback | None = None  # the MCP client's progress, beside the record's


def tool_call_run(*, call: ToolCall, wait: float) -> ToolCall:
    """Run a RUNNING call and wait up to `wait` seconds for its outcome; returns the call as it then stands (still
    RUNNING when the call takes longer: it goes on in the background loop and records its outcome itself)."""
    log_context.bind(server_id=call.server_id, organization_id=call.organization_id)
    spec_or_outcome = _prepare(call)
    if isinstance(spec_or_outcome, _Outcome):
        outcome: _Outcome | None = spec_or_outcome
    else:
        handoff = _Handoff()
        background_loop.submit(_execute(spec_or_outcome, log_context.current(), handoff))
        outcome = handoff.wait(max(0.0, wait))
    if outcome is not None:
        written = _record(call.pk, outcome)
        if written is None:  # decided elsewhere meanwhile (the upkeep): the record says how
            call.refresh_from_db()
        for name, value in (written or {}).items():
            setattr(call, name, value)
    return call


async def tool_call_execute(
    *, call: ToolCall, relay: Relay | None = None, progress: ProgressCallback | None = None
) -> ToolCall:
    """`tool_call_run` for a caller that is itself in the background loop (the MCP endpoint): run a RUNNING call to
    its end, with what the server asks meanwhile going to `relay` and its progress to `progress` too, and return it
    as recorded. Cancelling the caller cancels the call at the server and records it CANCELLED."""
    log_context.bind(server_id=call.server_id, organization_id=call.organization_id)
    spec_or_outcome = await in_db_thread(_prepare, call)
    if isinstance(spec_or_outcome, _Outcome):
        outcome = spec_or_outcome
    else:
        try:
            outcome = await _call(replace(spec_or_outcome, relay=relay, progress=progress))
        except asyncio.CancelledError:
            cancelled = _Outcome(
                ToolCallStatus.CANCELLED,
                error_code=ToolCallError.CANCELLED,
                error_message="The caller cancelled the call while it ran; it may or may not have run at the server.",
            )
            await asyncio.shield(in_db_thread(_record, call.pk, cancelled))
            raise
    written = await in_db_thread(_record, call.pk, outcome)
    if written is None:
        await in_db_thread(call.refresh_from_db)
    for name, value in (written or {}).items():
        setattr(call, name, value)
    return call


class _Handoff:
    """Who records a call's outcome: the request, while it still waits for it (no hop to another thread on the way
    back), or else the call itself, once the request stopped waiting. Exactly one of them does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._outcome: _Outcome | None = None
        self._abandoned = False

    def deliver(self, outcome: _Outcome) -> bool:
        """The call is done: True when nobody waits any more (the call records the outcome itself)."""
        with self._lock:
            if self._abandoned:
                return True
            self._outcome = outcome
            self._ready.set()
            return False

    def wait(self, timeout: float) -> _Outcome | None:
        """The outcome to record, or None: the request stops waiting, and the call will record it."""
        self._ready.wait(timeout)
        with self._lock:
            if self._outcome is None:
                self._abandoned = True
            return self._outcome


def _prepare(call: ToolCall) -> _Spec | _Outcome:
    if ToolCall.server.is_cached(call) and call.server is not None and McpServer.oauth.is_cached(call.server):
        server: McpServer | None = call.server  # as the request found it (selectors.tool_call_target)
    else:
        server = McpServer.objects.select_related("oauth").filter(pk=call.server_id).first() if call.server_id else None
    try:
        upstream = upstream_of(server)
    except Unreached as unreached:
        return _unreached(unreached)
    return _Spec(
        call_id=call.pk,
        server_id=upstream.server_id,
        tool_name=call.tool_name,
        arguments=json.loads(call.arguments),
        upstream=upstream,
    )


def _unreached(unreached: Unreached) -> _Outcome:
    return _Outcome(
        unreached.status, error_code=unreached.code, error_message=unreached.message, auth_url=unreached.auth_url
    )


async def _execute(spec: _Spec, context: dict[str, str], handoff: _Handoff) -> None:
    """The call, in the background loop; its outcome goes to the request waiting for it, or is recorded here."""
    with log_context.scope(**context):
        try:
            outcome = await _call(spec)
        except Exception:
            logger.exception("tool call failed unexpectedly")
            outcome = _Outcome(
                ToolCallStatus.FAILED,
                error_code=ToolCallError.PROTOCOL_ERROR,
                error_message="The call stopped on an internal error.",
            )
        if handoff.deliver(outcome):
            await in_db_thread(_record, spec.call_id, outcome)


async def _call(spec: _Spec) -> _Outcome:
    progress = _ProgressRecorder(spec.call_id, also=spec.progress)

    async def attempt(upstream: Upstream) -> ToolResult:
        return await pool().call_tool(
            upstream.endpoint,
            spec.tool_name,
            spec.arguments,
            factory=upstream.factory,
            bounds=upstream.bounds,
            progress=progress,
            relay=spec.relay,
        )

    try:
        result = await with_credentials(spec.upstream, attempt)
    except Unreached as unreached:
        return _unreached(unreached)
    except McpClientError as exc:
        return _failure(exc)
    return _Outcome(ToolCallStatus.COMPLETED, result=result)


def _failure(exc: McpClientError) -> _Outcome:
    code = {
        McpTimeout: ToolCallError.TIMEOUT,
        McpUnreachable: ToolCallError.UNREACHABLE,
        McpHeadersRejected: ToolCallError.HEADERS_REJECTED,
        McpDestinationRefused: ToolCallError.DESTINATION_REFUSED,
        McpLimitExceeded: ToolCallError.RESPONSE_TOO_LARGE,
    }.get(type(exc), ToolCallError.PROTOCOL_ERROR)
    return _Outcome(ToolCallStatus.FAILED, error_code=code, error_message=str(exc))


def _record(call_id: uuid.UUID, outcome: _Outcome) -> dict[str, Any] | None:
    """The call's outcome, written once: only while the record still says RUNNING. Returns the fields written, or
    None when the record no longer said RUNNING."""
    fields: dict[str, Any] = {
        "status": outcome.status,
        "finished_at": timezone.now(),
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "auth_url": outcome.auth_url,
        "updated_at": timezone.now(),
    }
    if outcome.result is not None:
        fields["result"] = json.dumps(outcome.result.as_json(), ensure_ascii=False, separators=(",", ":"))
        fields["is_error"] = outcome.result.is_error
    written = ToolCall.objects.filter(pk=call_id, status=ToolCallStatus.RUNNING).update(**fields)
    level = logging.INFO if outcome.status == ToolCallStatus.COMPLETED else logging.WARNING
    logger.log(
        level, "tool call %s: %s", outcome.status, outcome.error_code or "ok", extra={"tool_call_id": str(call_id)}
    )
    if not written:
        logger.warning(
            "tool call outcome dropped: the record was no longer RUNNING", extra={"tool_call_id": str(call_id)}
        )
        return None
    return fields


class _ProgressRecorder:
    """Progress notifications of a running call, on its record (at most one write a second) for whoever polls it."""

    def __init__(self, call_id: uuid.UUID, also: ProgressCallback | None = None) -> None:
        self._call_id = call_id
        self._also = also
        self._last = 0.0

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        if self._also is not None:
            await self._also(progress, total, message)
        now = time.monotonic()
        if now - self._last < _PROGRESS_EVERY_SECONDS:
            return
        self._last = now
        document = {"progress": progress, "total": total, "message": (message or "")[:500] or None}
        await in_db_thread(
            lambda: ToolCall.objects.filter(pk=self._call_id, status=ToolCallStatus.RUNNING).update(progress=document)
        )


# --- Upkeep -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpkeepCounts:
    expired: int
    interrupted: int
    purged: int


def tool_calls_upkeep() -> UpkeepCounts:
    """Expire calls nobody approved in time, fail calls whose process stopped running them, and purge records older
    than MCP_CALL_RETENTION_DAYS (the trail keeps what the organization may need, not more). Safe to run twice."""
    now = timezone.now()
    expired = ToolCall.objects.filter(status=ToolCallStatus.AWAITING_APPROVAL, expires_at__lte=now).update(
        status=ToolCallStatus.EXPIRED,
        finished_at=now,
        error_message=_EXPIRED_MESSAGE,
        updated_at=now,
    )
    stale = now - timedelta(seconds=settings.MCP_CALL_TIMEOUT_SECONDS) - _INTERRUPTED_MARGIN
    interrupted = ToolCall.objects.filter(status=ToolCallStatus.RUNNING, started_at__lt=stale).update(
        status=ToolCallStatus.FAILED,
        finished_at=now,
        error_code=ToolCallError.INTERRUPTED,
        error_message="The process running the call stopped before it finished; it may or may not have run.",
        updated_at=now,
    )
    purged, _ = ToolCall.objects.filter(created_at__lt=now - timedelta(days=settings.MCP_CALL_RETENTION_DAYS)).delete()
    if expired or interrupted or purged:
        logger.info("tool call upkeep: %d expired, %d interrupted, %d purged", expired, interrupted, purged)
    return UpkeepCounts(expired=expired, interrupted=interrupted, purged=purged)
