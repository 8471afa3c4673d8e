"""API key format: `mcpk_<prefix>_<secret>`; the prefix finds the row, the SHA-256 of the whole key matches it.

Keys carry 256 bits of randomness, so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "mcpk"
_KEY_RE = re.compile(r"^mcpk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class GeneratedKey:
    prefix: str
    plaintext: str
    hashed: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key() -> GeneratedKey:
    prefix = secrets.token_hex(6)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return GeneratedKey(prefix=prefix, plaintext=plaintext, hashed=hash_key(plaintext))


def parse_prefix(plaintext: str) -> str | None:
    match = _KEY_RE.match(plaintext)
    return match.group(1) if match else None


def matches(plaintext: str, hashed: str) -> bool:
    return hmac.compare_digest(hash_key(plaintext), hashed)
