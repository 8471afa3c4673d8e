"""Writes to MCP servers themselves: create, update, delete, ask for a sync, and who may use one. The API, the admin
and commands all come through here."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from core.errors import NotFound, ValidationError
from mcp_servers import dispatch
from mcp_servers.labels import first_free_label, label_base, label_candidates
from mcp_servers.models import (
    McpServer,
    McpServerAccess,
    McpServerClientCredentials,
    McpServerGroupAccess,
    McpServerHeader,
    SetupState,
    SyncStatus,
)
from mcp_servers.services.oauth_tokens import oauth_credentials_discard
from mcp_servers.services.sync import sync_request_on_commit
from mcp_servers.validation import (
    ClientCredentialsInput,
    HeaderInput,
    validate_client_credentials,
    validate_display_name,
    validate_headers,
    validate_server_url,
)
from organizations.models import Membership, Organization
from organizations.selectors import groups_of_organization
from organizations.services import organization_start_trial

logger = logging.getLogger(__name__)

# Concurrent creates with one display name race for the same label; each round at least one wins.
_LABEL_ATTEMPTS = 20
# How many candidate labels a create checks exactly before falling back to a prefix scan.
_LABEL_PROBE = 32


def mcp_server_create(
    *,
    organization: Organization,
    created_by: User | None,
    display_name: str,
    server_url: str,
    headers: Sequence[HeaderInput] = (),
    everyone_in_organization_can_access: bool = True,
    client_credentials: ClientCredentialsInput | None = None,
) -> McpServer:
    """Validate, insert the server and its encrypted headers, start the trial, and queue the first sync.

    All or nothing: a failure leaves no row behind. The sync is queued after commit with the id only.
    """
    name = validate_display_name(display_name)
    checked = validate_server_url(server_url)
    clean_headers = validate_headers(headers)
    clean_credentials = validate_client_credentials(client_credentials) if client_credentials is not None else None

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
                if clean_credentials is not None:
                    _store_client_credentials(server, clean_credentials)
                if organization.trial_started_at is None:  # the UPDATE itself stays conditional (races)
                    organization_start_trial(organization_id=organization.pk)
                dispatch.sync_server(server.pk, request_seq=1)
        except IntegrityError:
            # The label is taken, by an earlier server or by a concurrent create: read the taken ones, try the next.
            if not McpServer.objects.filter(organization=organization, server_label=label).exists():
                raise
            taken = _labels_taken(organization, name) | {label}
            continue
        logger.info("mcp server created", extra={"server_id": str(server.pk), "organization_id": str(organization.pk)})
        return server
    raise IntegrityError("Could not allocate a unique server label.")


def _store_client_credentials(server: McpServer, credentials: ClientCredentialsInput) -> None:
    # update_or_create saves (encrypting the secret and the key); bulk_update would corrupt them.
    McpServerClientCredentials.objects.update_or_create(
        server=server,
        defaults={
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
            "private_key": credentials.private_key,
            "signing_algorithm": credentials.signing_algorithm or "",
        },
    )


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
    client_credentials: ClientCredentialsInput | None = None,
    remove_client_credentials: bool = False,
) -> UpdateResult:
    """Change what a caller may change; `serverLabel` never changes. Header values stay write-only: replace
    them all (`headers`), or set and remove some by key without sending the others again. A new URL or new
    headers queue a re-sync; a new URL also discards the OAuth credentials (they belong to the old server).
    New client credentials (or their removal) discard the OAuth tokens got so far and queue a re-sync."""
    if client_credentials is not None and remove_client_credentials:
        raise ValidationError("clientCredentials", "send either new client credentials or null, not both.")
    clean_credentials = validate_client_credentials(client_credentials) if client_credentials is not None else None
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
    credentials_changed = clean_credentials is not None or (
        remove_client_credentials and McpServerClientCredentials.objects.filter(server=server).exists()
    )
    resync = url_changed or headers_changed or credentials_changed

    with transaction.atomic():
        locked = McpServer.objects.select_for_update().get(pk=server.pk)
        for name, value in changes.items():
            setattr(locked, name, value)
        if url_changed or credentials_changed:
            oauth_credentials_discard(server=locked)
            locked.transport_type = None
            locked.requires_auth = False
            locked.auth_url = None
        if resync:
            locked.last_sync_status = SyncStatus.PENDING
            locked.sync_requested_seq += 1
            dispatch.sync_server(locked.pk, request_seq=locked.sync_requested_seq)
        locked.save()
        if headers_changed and final is not None:
            McpServerHeader.objects.filter(server=locked).delete()
            McpServerHeader.objects.bulk_create(
                McpServerHeader(server=locked, key=h.key, key_normalized=h.key.lower(), value=h.value, position=i)
                for i, h in enumerate(final)
            )
        if clean_credentials is not None:
            _store_client_credentials(locked, clean_credentials)
        elif remove_client_credentials:
            McpServerClientCredentials.objects.filter(server=locked).delete()
    return UpdateResult(server=locked, resync_queued=resync)


def mcp_server_delete(*, server: McpServer) -> None:
    """Delete the server with its tools, headers and credentials; its OAuth tokens are revoked by the worker."""
    with transaction.atomic():
        oauth_credentials_discard(server=server)
        server.delete()


def mcp_server_sync_request(*, server: McpServer) -> None:
    """Queue a re-sync now. A sync already running is not run twice: the queued one finds the lease held,
    and the running one's outcome is what the caller sees."""
    with transaction.atomic():
        sync_request_on_commit([server.pk])


MAX_GROUPS_PER_GRANT = 100


@transaction.atomic
def mcp_server_access_grant(*, server: McpServer, user_id: int | None = None, group_ids: Sequence[str] = ()) -> None:
    """Grant the server to a member of its organization and/or to some of its groups, all or nothing (idempotent:
    a grant that exists stays as it was). A constant number of queries whatever the number of groups."""
    if user_id is not None:
        if not Membership.objects.filter(organization_id=server.organization_id, user_id=user_id).exists():
            raise ValidationError("userId", "is not a member of this organization.")
        McpServerAccess.objects.get_or_create(server=server, user_id=user_id)
    if not group_ids:
        return
    if len(group_ids) > MAX_GROUPS_PER_GRANT:
        raise ValidationError("groupIds", f"must list at most {MAX_GROUPS_PER_GRANT} groups.")
    wanted: list[uuid.UUID] = []
    for index, raw in enumerate(group_ids):
        try:
            wanted.append(uuid.UUID(raw))
        except ValueError:
            raise ValidationError(f"groupIds[{index}]", "is not a valid group id.") from None
    groups = groups_of_organization(organization_id=server.organization_id, group_ids=wanted)
    for index, group_id in enumerate(wanted):
        if group_id not in groups:
            raise ValidationError(f"groupIds[{index}]", "is not a group of this organization.")
    McpServerGroupAccess.objects.bulk_create(
        [McpServerGroupAccess(server=server, group_id=group_id) for group_id in dict.fromkeys(wanted)],
        ignore_conflicts=True,
    )


def mcp_server_access_revoke(*, server: McpServer, user_id: int) -> None:
    if not McpServerAccess.objects.filter(server=server, user_id=user_id).delete()[0]:
        raise NotFound("No such access grant.")


def mcp_server_group_access_revoke(*, server: McpServer, group_id: str | uuid.UUID) -> None:
    """Take the server from a group: its members who have no other way to it lose it on their next read or call."""
    try:
        group_uuid = group_id if isinstance(group_id, uuid.UUID) else uuid.UUID(group_id)
    except ValueError:
        raise NotFound("No such group access grant.") from None
    if not McpServerGroupAccess.objects.filter(server=server, group_id=group_uuid).delete()[0]:
        raise NotFound("No such group access grant.")
