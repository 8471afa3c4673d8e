"""Primary keys: UUIDv7, so ordering by id is ordering by creation time (cursor pagination)."""

import uuid

import uuid6


def new_id() -> uuid.UUID:
    return uuid.UUID(int=uuid6.uuid7().int)
