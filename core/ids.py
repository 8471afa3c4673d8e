"""Primary keys: UUIDv7, so ordering by id is ordering by creation time (cursor pagination)."""

import uuid

import uuid6


def new_id() -> uuid.UUID:
    return uuid.UUID(int=uuid6.uuid7().int)


def new_id_hex() -> str:
    """A new id as 32 hex digits, for ids written in bulk (one UUID object fewer per id)."""
    return uuid6.uuid7().hex
