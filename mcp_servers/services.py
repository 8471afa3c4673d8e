"""Writes to MCP servers and their tools. The API, the admin, commands and tasks all come through here."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from core import logging as log_context
from core.exceptions import NotFound, ValidationError
from core.ids import new_id_hex
from mcp_servers import client, oauth, oauth_services, outbound
from mcp_servers.labels import first_free_label, label_base, label_candidates
from mcp_servers.models import (
    AccessMode,
    McpServer,
    McpServerAccess,
    McpServerHeader,
    McpTool,
    SetupState,
    SyncStatus,
)
from mcp_servers.validation import HeaderInput, validate_display_name, validate_headers, validate_server_url
from organizations.models import Organization
from organizations.services import organization_start_trial

logger = logging.getLogger(__name__)

# Concurrent creates with one display name race for the same label; each round at least one wins.
_LABEL_ATTEMPTS = 20
# How many candidate labels a create checks exactly before falling back to a prefix scan.
_LABEL_PROBE = 32
# A lease outlives the longest sync it covers, and stays well under the broker's visibility timeout
# so that a redelivered message (after a worker died holding the lease) finds it expired.
_LEASE_MARGIN = timedelta(seconds=15)
AUTH_REQUIRED_MESSAGE = "The server requires OAuth authorization: open the authorization URL to connect it."
AUTH_EXPIRED_MESSAGE = (
    "The OAuth authorization expired or was revoked, and refreshing it failed: open the new authorization URL."
)
REAUTHORIZE_MESSAGE = "Re-authorization requested: open the authorization URL."
INTERNAL_ERROR_MESSAGE = "The sync stopped on an internal error; it will be retried on the next sync."


def mcp_server_create(
    *,
    organization: Organization,
    created_by: User | None,
    display_name: str,
    server_url: str,
    headers: Sequence[HeaderInput] = (),
    everyone_in_organization_can_access: bool = True,
) -> McpServer:
    """Validate, insert the server and its encrypted headers, start the trial, and queue the first sync.

    All or nothing: a failure leaves no row behind. The sync is queued after commit with the id only.
    """
    name = validate_display_name(display_name)
    checked = validate_server_url(server_url)
    clean_headers = validate_headers(headers)

    # Optimistic: most names are new in their organization, so the first attempt takes the plain label without
    # reading the taken ones; the unique constraint catches a clash, and only then are they read.
    taken: set[str] = set()
    for _ in range(_LABEL_ATTEMPTS):
        label = first_free_label(name, taken)
        try:
            with transaction.atomic():
                server = McpServer.objects.create(
                    organization=organization,
                    created_by=created_by,
                    display_name=name,
                    server_url=checked.url,
                    server_label=label,
                    everyone_in_organization_can_access=everyone_in_organization_can_access,
                    setup_state=SetupState.INCOMPLETE,
                    last_sync_status=SyncStatus.PENDING,
                    sync_requested_seq=1,
                )
                McpServerHeader.objects.bulk_create(
                    McpServerHeader(server=server, key=h.key, key_normalized=h.key.lower(), value=h.value, position=i)
                    for i, h in enumerate(clean_headers)
                )
                if organization.trial_started_at is None:  # the UPDATE itself stays conditional (races)
                    organization_start_trial(organization_id=organization.pk)
                _queue_sync_on_commit(server.pk, request_seq=1)
        except IntegrityError:
            # The label is taken, by an earlier server or by a concurrent create: read the taken ones, try the next.
            if not McpServer.objects.filter(organization=organization, server_label=label).exists():
                raise
            taken = _labels_taken(organization, name) | {label}
            continue
        logger.info("mcp server created", extra={"server_id": str(server.pk), "organization_id": str(organization.pk)})
        return server
    raise IntegrityError("Could not allocate a unique server label.")


def _labels_taken(organization: Organization, display_name: str) -> set[str]:
    """The taken labels among the first candidates for this name (an exact lookup); only when all of those are
    taken, every label sharing the name's prefix (a scan that grows with such servers, so kept off the usual path)."""
    probe = label_candidates(display_name, count=_LABEL_PROBE)
    servers = McpServer.objects.filter(organization=organization)
    taken = set(servers.filter(server_label__in=probe).values_list("server_label", flat=True))
    if len(taken) < len(probe):
        return taken
    prefix = label_base(display_name)[:16]
    return set(servers.filter(server_label__startswith=prefix).values_list("server_label", flat=True))


def _queue_sync_on_commit(server_id: uuid.UUID, *, request_seq: int) -> None:
    from mcp_servers.tasks import sync_server_tools  # tasks import services

    transaction.on_commit(lambda: sync_server_tools.delay(str(server_id), request_seq))


def sync_request_on_commit(server_ids: list[uuid.UUID]) -> None:
    """Mark servers PENDING under a new request number each, and queue their syncs after commit.

    Call inside a transaction."""
    McpServer.objects.filter(pk__in=server_ids).update(
        sync_requested_seq=F("sync_requested_seq") + 1, last_sync_status=SyncStatus.PENDING, updated_at=timezone.now()
    )
    for server_id, seq in McpServer.objects.filter(pk__in=server_ids).values_list("pk", "sync_requested_seq"):
        _queue_sync_on_commit(server_id, request_seq=seq)


# --- Tool sync ---------------------------------------------------------------------------------------


class SyncOutcome(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    AUTH_REQUIRED = "AUTH_REQUIRED"
    SKIPPED = "SKIPPED"  # the server is gone
    BUSY = "BUSY"  # another sync of it holds the lease (maybe a worker that died): see lease_wait_seconds


class SyncRetryable(Exception):
    """A transient failure on an attempt that is not the last one: the task retries with backoff."""


@dataclass(frozen=True)
class _Lease:
    server_id: uuid.UUID
    token: uuid.UUID


def sync_limits() -> client.SyncLimits:
    return client.SyncLimits(
        total_seconds=settings.MCP_SYNC_TOTAL_SECONDS,
        connect_seconds=settings.MCP_SYNC_CONNECT_SECONDS,
        read_seconds=settings.MCP_SYNC_READ_SECONDS,
        max_pages=settings.MCP_SYNC_MAX_PAGES,
        max_tools=settings.MCP_SYNC_MAX_TOOLS,
        max_response_bytes=settings.MCP_SYNC_MAX_RESPONSE_BYTES,
    )


def _lease_acquire(server_id: uuid.UUID, limits: client.SyncLimits, now: datetime) -> _Lease | None:
    token = uuid.uuid4()
    acquired = McpServer.objects.filter(
        Q(sync_lease_expires_at__isnull=True) | Q(sync_lease_expires_at__lt=now), pk=server_id
    ).update(
        sync_lease_token=token,
        sync_lease_expires_at=now + timedelta(seconds=limits.total_seconds) + _LEASE_MARGIN,
        last_sync_attempt_at=now,
        updated_at=now,
        sync_running_seq=F("sync_requested_seq"),
    )
    return _Lease(server_id=server_id, token=token) if acquired else None


def lease_wait_seconds(*, server_id: uuid.UUID | str, request_seq: int | None) -> float | None:
    """Seconds until the server's sync lease expires, or None when the request was served meanwhile."""
    row = McpServer.objects.filter(pk=server_id).values_list("sync_served_seq", "sync_lease_expires_at").first()
    if row is None or (request_seq is not None and row[0] >= request_seq):
        return None
    expires = row[1]
    return max(0.0, (expires - timezone.now()).total_seconds()) if expires else 0.0


def _lease_release(lease: _Lease) -> None:
    McpServer.objects.filter(pk=lease.server_id, sync_lease_token=lease.token).update(
        sync_lease_token=None, sync_lease_expires_at=None
    )


def _fenced_update(lease: _Lease, **fields: Any) -> bool:
    """Write the sync's outcome only while this sync still holds the lease, and release it."""
    return bool(
        McpServer.objects.filter(pk=lease.server_id, sync_lease_token=lease.token).update(
            sync_lease_token=None,
            sync_lease_expires_at=None,
            sync_served_seq=F("sync_running_seq"),
            updated_at=timezone.now(),
            **fields,
        )
    )


def mcp_server_sync(
    *, server_id: uuid.UUID | str, final_attempt: bool = True, request_seq: int | None = None
) -> SyncOutcome:
    """Connect to the server, list its tools and record the outcome on the row. Safe to run twice.

    A transient failure on an attempt that is not the last raises SyncRetryable (the row stays PENDING);
    every other outcome is written to the row.
    """
    limits = sync_limits()
    server = McpServer.objects.select_related("oauth").filter(pk=server_id).first()
    if server is None:
        return SyncOutcome.SKIPPED
    log_context.bind(server_id=server.pk, organization_id=server.organization_id)
    if request_seq is not None and server.sync_served_seq >= request_seq:
        logger.info("mcp sync skipped: request %s was already served", request_seq)
        return SyncOutcome.SKIPPED
    lease = _lease_acquire(server.pk, limits, timezone.now())
    if lease is None:
        logger.info("mcp sync deferred: another sync holds the lease")
        return SyncOutcome.BUSY
    try:
        # The policy on the URL as written, with today's allowlist (the guarded client then checks every
        # address it connects to).
        outbound.check_url(server.server_url)
    except (outbound.DestinationRefused, outbound.InvalidUrl) as exc:
        _record_failure(lease, f"The server URL was refused: {exc}.")
        return SyncOutcome.FAILED
    try:
        headers = dict(McpServerHeader.objects.filter(server_id=server.pk).values_list("key", "value"))
        listing = _list_tools_authorized(server, headers, limits)
    except client.McpAuthRequired as exc:
        return _record_auth_required(lease, server, exc.challenge, limits, final_attempt, AUTH_REQUIRED_MESSAGE)
    except oauth.OAuthGrantRejected:
        challenge = oauth_services.stored_challenge(server.oauth)
        return _record_auth_required(lease, server, challenge, limits, final_attempt, AUTH_EXPIRED_MESSAGE)
    except (oauth.OAuthError, client.McpClientError) as exc:
        if exc.transient and not final_attempt:
            _lease_release(lease)
            raise SyncRetryable(str(exc)) from None
        prefix = "Refreshing the OAuth access token failed: " if isinstance(exc, oauth.OAuthError) else ""
        _record_failure(lease, f"{prefix}{exc}")
        return SyncOutcome.FAILED
    except BaseException:
        # A bug or a time limit: record it plainly (the traceback goes to the log, not the row).
        logger.exception("mcp sync failed unexpectedly")
        _record_failure(lease, INTERNAL_ERROR_MESSAGE)
        raise
    try:
        _record_success(lease, listing)
    except Exception:
        logger.exception("mcp sync could not record its result")
        _record_failure(lease, INTERNAL_ERROR_MESSAGE)
        raise
    return SyncOutcome.SUCCESS


def _list_tools_authorized(server: McpServer, headers: dict[str, str], limits: client.SyncLimits) -> client.ToolListing:
    """List tools, sending the OAuth access token when the server has one (refreshed first if it is expiring).

    A token refused before its expiry (revoked, or rotated by another party) is refreshed once and retried.
    """
    has_oauth = hasattr(server, "oauth")
    token = oauth_services.oauth_access_token(server_id=server.pk, limits=limits) if has_oauth else None
    for attempt in range(2):
        request_headers = headers
        if token is not None:
            request_headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            request_headers["Authorization"] = f"Bearer {token}"
        try:
            return client.list_remote_tools(
                server.server_url,
                request_headers,
                preferred_transport=server.transport_type,  # type: ignore[arg-type]
                limits=limits,
            )
        except client.McpAuthRequired:
            if token is None or attempt == 1:
                raise
            token = oauth_services.oauth_access_token(server_id=server.pk, limits=limits, refused_token=token)
            if token is None:
                raise
    raise AssertionError("unreachable")


def _record_auth_required(
    lease: _Lease,
    server: McpServer,
    challenge: client.AuthChallenge,
    limits: client.SyncLimits,
    final_attempt: bool,
    message: str,
    *,
    keep_state: bool = False,
) -> SyncOutcome:
    """Start an authorization (every URL the server hands out is untrusted) and record its URL on the row."""
    try:
        auth_url = oauth_services.oauth_authorization_start(server=server, challenge=challenge, limits=limits)
    except outbound.DestinationRefused as exc:
        _record_failure(lease, f"The server's OAuth metadata points to a destination that is not allowed: {exc}")
        return SyncOutcome.FAILED
    except oauth.OAuthError as exc:
        if exc.transient and not final_attempt:
            _lease_release(lease)
            raise SyncRetryable(str(exc)) from None
        _record_failure(lease, f"The server requires OAuth authorization, but it cannot be started: {exc}")
        return SyncOutcome.FAILED
    fields: dict[str, Any] = {"requires_auth": True, "auth_url": auth_url, "sync_error_message": message}
    if not keep_state:
        fields.update(setup_state=SetupState.INCOMPLETE, last_sync_status=SyncStatus.FAILED)
    _fenced_update(lease, **fields)
    return SyncOutcome.AUTH_REQUIRED


def mcp_server_authorize_again(
    *, server_id: uuid.UUID | str, message: str, final_attempt: bool = True, keep_state: bool = False
) -> SyncOutcome:
    """A fresh authorization URL for a server that uses OAuth (a re-authorization, or after a failed exchange)."""
    limits = sync_limits()
    server = McpServer.objects.select_related("oauth").filter(pk=server_id).first()
    if server is None or not hasattr(server, "oauth"):
        return SyncOutcome.SKIPPED
    lease = _lease_acquire(server.pk, limits, timezone.now())
    if lease is None:
        return SyncOutcome.BUSY
    challenge = oauth_services.stored_challenge(server.oauth)
    return _record_auth_required(lease, server, challenge, limits, final_attempt, message, keep_state=keep_state)


def _record_failure(lease: _Lease, message: str) -> None:
    _fenced_update(lease, setup_state=SetupState.BROKEN, last_sync_status=SyncStatus.FAILED, sync_error_message=message)


def _record_success(lease: _Lease, listing: client.ToolListing) -> None:
    now = timezone.now()
    with transaction.atomic():
        written = _fenced_update(
            lease,
            transport_type=listing.transport,
            setup_state=SetupState.CONNECTED,
            last_sync_status=SyncStatus.SUCCESS,
            last_successful_sync_at=now,
            has_completed_first_sync=True,
            sync_error_message=None,
            requires_auth=False,
            auth_url=None,
        )
        if not written:
            logger.warning("mcp sync lost its lease; its result is dropped")
            return
        _tools_upsert(lease.server_id, listing.tools, now)


def _canonical_definition(tool: client.RemoteTool) -> bytes:
    """What the tool means to a model, as canonical JSON (UTF-8, sorted keys, no spaces).

    orjson's form, or the standard library's compact sorted form for what orjson cannot encode (integers beyond
    64 bits): either way a given definition always gets the same bytes.
    """
    definition = {
        "title": tool.title,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "outputSchema": tool.output_schema,
        "annotations": tool.annotations,
    }
    try:
        return orjson.dumps(definition, default=str, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return canonical.encode()


def definition_hash(tool: client.RemoteTool) -> str:
    """SHA-256 of what the tool means to a model; a change after review withdraws ALWAYS_ALLOW."""
    return hashlib.sha256(_canonical_definition(tool)).hexdigest()


def default_access_mode(read_only_hint: bool | None) -> AccessMode:
    return AccessMode.ALWAYS_ALLOW if read_only_hint is True else AccessMode.NEEDS_APPROVAL


_TOOL_TABLE = McpTool._meta.db_table

# One statement upserts every listed tool from a JSON array parameter, whatever their number (Django's
# bulk_create would split it into batches of 999 variables on SQLite). On conflict, the access mode is
# governed against the row as it stands: BLOCKED and NEEDS_APPROVAL are kept, and ALWAYS_ALLOW falls
# back to NEEDS_APPROVAL when the definition is not the one that was reviewed.
_UPSERT_CONFLICT = f"""
ON CONFLICT (server_id, name) DO UPDATE SET
    title = excluded.title,
    description = excluded.description,
    input_schema = excluded.input_schema,
    output_schema = excluded.output_schema,
    annotations = excluded.annotations,
    read_only_hint = excluded.read_only_hint,
    access_mode = CASE
        WHEN {_TOOL_TABLE}.access_mode = 'ALWAYS_ALLOW'
             AND {_TOOL_TABLE}.reviewed_definition_hash <> excluded.definition_hash THEN 'NEEDS_APPROVAL'
        ELSE {_TOOL_TABLE}.access_mode
    END,
    found_in_server = excluded.found_in_server,
    definition_hash = excluded.definition_hash,
    last_seen_at = excluded.last_seen_at,
    updated_at = excluded.updated_at
"""
_UPSERT_COLUMNS = (
    "id, server_id, name, title, description, input_schema, output_schema, annotations, read_only_hint, "
    "access_mode, found_in_server, definition_hash, reviewed_definition_hash, last_seen_at, created_at, updated_at"
)
# Built from constants only (the table name and column list); every value is a query parameter.
_UPSERT_SQL = {
    "sqlite": f"""
INSERT INTO {_TOOL_TABLE} ({_UPSERT_COLUMNS})
SELECT json_extract(t.value, '$.id'), %s, json_extract(t.value, '$.name'),
       json_extract(t.value, '$.definition.title'), json_extract(t.value, '$.definition.description'),
       json_extract(t.value, '$.definition.inputSchema'), json_extract(t.value, '$.definition.outputSchema'),
       json_extract(t.value, '$.definition.annotations'), json_extract(t.value, '$.read_only_hint'),
       json_extract(t.value, '$.access_mode'), 1,
       json_extract(t.value, '$.definition_hash'), json_extract(t.value, '$.definition_hash'), %s, %s, %s
FROM json_each(%s) AS t WHERE true
{_UPSERT_CONFLICT}""",  # noqa: S608
    "postgresql": f"""
INSERT INTO {_TOOL_TABLE} ({_UPSERT_COLUMNS})
SELECT (t->>'id')::uuid, %s, t->>'name', t->'definition'->>'title', t->'definition'->>'description',
       t->'definition'->'inputSchema', NULLIF(t->'definition'->'outputSchema', 'null'::jsonb),
       t->'definition'->'annotations', (t->>'read_only_hint')::boolean,
       t->>'access_mode', true, t->>'definition_hash', t->>'definition_hash', %s, %s, %s
FROM jsonb_array_elements(%s::jsonb) AS t
{_UPSERT_CONFLICT}""",  # noqa: S608
}


def _upsert_document(tools: Sequence[client.RemoteTool]) -> str:
    """Every listed tool as one JSON array, the upsert's single parameter.

    Each canonical definition is serialized once: those bytes are both hashed and embedded as they are.
    """
    entries = []
    for tool in tools:
        definition = _canonical_definition(tool)
        entries.append(
            {
                "id": new_id_hex(),
                "name": tool.name,
                "read_only_hint": tool.read_only_hint,
                "access_mode": default_access_mode(tool.read_only_hint).value,
                "definition_hash": hashlib.sha256(definition).hexdigest(),
                "definition": orjson.Fragment(definition),
            }
        )
    return orjson.dumps(entries).decode()


def _tools_upsert(server_id: uuid.UUID, tools: Sequence[client.RemoteTool], now: datetime) -> None:
    """Insert or update every listed tool in one statement, then mark the unlisted ones as not found.

    Two queries whatever the tool count. A new tool's access mode follows its readOnlyHint and its
    definition counts as reviewed; an existing tool's mode is governed inside the statement.
    """
    if tools:
        document = _upsert_document(tools)
        server_param = models.UUIDField().get_db_prep_value(server_id, connection)  # hex on SQLite, uuid on PG
        stamp = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cursor:
            cursor.execute(
                _UPSERT_SQL[connection.vendor],
                [server_param, stamp, stamp, stamp, document],
            )
    McpTool.objects.filter(server_id=server_id, found_in_server=True).exclude(last_seen_at=now).update(
        found_in_server=False, updated_at=now
    )


def mcp_tool_set_access_mode(*, tool: McpTool, access_mode: AccessMode | str) -> McpTool:
    """An admin's decision on a tool: sets the mode and marks the current definition as reviewed."""
    mode = AccessMode(access_mode)
    with transaction.atomic():
        locked = McpTool.objects.select_for_update().get(pk=tool.pk)
        locked.access_mode = mode
        locked.reviewed_definition_hash = locked.definition_hash
        locked.save(update_fields=["access_mode", "reviewed_definition_hash", "updated_at"])
    return locked


def mcp_server_authorization_failed(*, request_id: uuid.UUID | str, message: str) -> None:
    """The code could not be exchanged: say so and hand out a new authorization URL (the old one is used up)."""
    from mcp_servers.models import OAuthAuthorizationRequest

    server_id = OAuthAuthorizationRequest.objects.filter(pk=request_id).values_list("server_id", flat=True).first()
    if server_id is not None:
        mcp_server_authorize_again(server_id=server_id, message=message)


# --- Managing a server ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateResult:
    server: McpServer
    resync_queued: bool


def mcp_server_update(
    *,
    server: McpServer,
    display_name: str | None = None,
    server_url: str | None = None,
    headers: Sequence[HeaderInput] | None = None,
    set_headers: Sequence[HeaderInput] = (),
    remove_headers: Sequence[str] = (),
    everyone_in_organization_can_access: bool | None = None,
) -> UpdateResult:
    """Change what a caller may change; `serverLabel` never changes. Header values stay write-only: replace
    them all (`headers`), or set and remove some by key without sending the others again. A new URL or new
    headers queue a re-sync; a new URL also discards the OAuth credentials (they belong to the old server)."""
    if headers is not None and (set_headers or remove_headers):
        raise ValidationError("headers", "send either headers (to replace them all) or setHeaders/removeHeaders.")
    changes: dict[str, Any] = {}
    if display_name is not None:
        changes["display_name"] = validate_display_name(display_name)
    url_changed = False
    if server_url is not None:
        checked = validate_server_url(server_url)
        url_changed = checked.url != server.server_url
        changes["server_url"] = checked.url
    if everyone_in_organization_can_access is not None:
        changes["everyone_in_organization_can_access"] = everyone_in_organization_can_access

    current = [HeaderInput(key=h.key, value=h.value) for h in McpServerHeader.objects.filter(server=server)]
    final: list[HeaderInput] | None = None
    if headers is not None:
        final = validate_headers(headers)
    elif set_headers or remove_headers:
        upserts = validate_headers(set_headers, field_name="setHeaders")
        by_key = {h.key.lower(): h for h in current}
        for index, key in enumerate(remove_headers):
            if by_key.pop(key.strip().lower(), None) is None:
                raise ValidationError(f"removeHeaders[{index}]", f"there is no header named '{key}'.")
        for header in upserts:
            by_key[header.key.lower()] = header
        final = validate_headers(list(by_key.values()))
    headers_changed = final is not None and [(h.key, h.value) for h in final] != [(h.key, h.value) for h in current]
    resync = url_changed or headers_changed

    with transaction.atomic():
        locked = McpServer.objects.select_for_update().get(pk=server.pk)
        for name, value in changes.items():
            setattr(locked, name, value)
        if url_changed:
            oauth_services.oauth_credentials_discard(server=locked)
            locked.transport_type = None
            locked.requires_auth = False
            locked.auth_url = None
        if resync:
            locked.last_sync_status = SyncStatus.PENDING
            locked.sync_requested_seq += 1
            _queue_sync_on_commit(locked.pk, request_seq=locked.sync_requested_seq)
        locked.save()
        if headers_changed and final is not None:
            McpServerHeader.objects.filter(server=locked).delete()
            McpServerHeader.objects.bulk_create(
                McpServerHeader(server=locked, key=h.key, key_normalized=h.key.lower(), value=h.value, position=i)
                for i, h in enumerate(final)
            )
    return UpdateResult(server=locked, resync_queued=resync)


def mcp_server_delete(*, server: McpServer) -> None:
    """Delete the server with its tools, headers and credentials; its OAuth tokens are revoked by the worker."""
    with transaction.atomic():
        oauth_services.oauth_credentials_discard(server=server)
        server.delete()


def mcp_server_sync_request(*, server: McpServer) -> None:
    """Queue a re-sync now. A sync already running is not run twice: the queued one finds the lease held,
    and the running one's outcome is what the caller sees."""
    with transaction.atomic():
        sync_request_on_commit([server.pk])


def mcp_server_access_grant(*, server: McpServer, user_id: int) -> McpServerAccess:
    from organizations.models import Membership

    if not Membership.objects.filter(organization_id=server.organization_id, user_id=user_id).exists():
        raise ValidationError("userId", "is not a member of this organization.")
    grant, _ = McpServerAccess.objects.get_or_create(server=server, user_id=user_id)
    return grant


def mcp_server_access_revoke(*, server: McpServer, user_id: int) -> None:
    if not McpServerAccess.objects.filter(server=server, user_id=user_id).delete()[0]:
        raise NotFound("No such access grant.")
