"""A sync's write of the tools a server listed: one statement upserts them all, whatever their number, and
governs each existing tool's access mode inside it; tools no longer listed are kept, marked as not found."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime

import orjson
from django.db import connection, models

from core.ids import new_id_hex
from integrations.mcp import RemoteTool
from mcp_servers.models import McpTool
from mcp_servers.services.tool_modes import default_access_mode


def _canonical_definition(tool: RemoteTool) -> bytes:
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


def definition_hash(tool: RemoteTool) -> str:
    """SHA-256 of what the tool means to a model; a change after review withdraws ALWAYS_ALLOW."""
    return hashlib.sha256(_canonical_definition(tool)).hexdigest()


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


def _upsert_document(tools: Sequence[RemoteTool]) -> str:
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


def tools_upsert(server_id: uuid.UUID, tools: Sequence[RemoteTool], now: datetime) -> None:
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
