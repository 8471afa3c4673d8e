"""Validation of MCP server fields, shared by the API and the admin form (same rules, same messages).

Each function raises `core.exceptions.ValidationError` naming the contract's field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.errors import ValidationError
from integrations.oauth import private_key_problem
from integrations.outbound import CheckedUrl, DestinationRefused, InvalidUrl, check_url
from mcp_servers.limits import outbound_policy

DISPLAY_NAME_MAX = 120
SERVER_URL_MAX = 2000
MAX_HEADERS = 32
HEADER_KEY_MAX = 256
HEADER_VALUE_MAX = 8192
HEADERS_TOTAL_MAX = 32 * 1024

# RFC 9110 section 5.6.2: token = 1*tchar
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Header values: visible ASCII, space, tab and obs-text; no CR, LF, NUL or other control characters.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Hop-by-hop headers and the ones the HTTP client and the MCP transports own.
FORBIDDEN_HEADER_NAMES = frozenset(
    name.lower()
    for name in (
        "Host", "Content-Length", "Connection", "Transfer-Encoding", "Keep-Alive", "Proxy-Connection",
        "Proxy-Authorization", "Proxy-Authenticate", "TE", "Trailer", "Upgrade", "Expect",
        "Content-Type", "Accept", "Accept-Encoding", "Content-Encoding", "Last-Event-ID",
        "Mcp-Session-Id", "MCP-Protocol-Version",
    )
)  # fmt: skip


@dataclass(frozen=True)
class HeaderInput:
    key: str
    value: str


def validate_display_name(value: str) -> str:
    name = value.strip()
    if not 1 <= len(name) <= DISPLAY_NAME_MAX:
        raise ValidationError("displayName", f"must be 1 to {DISPLAY_NAME_MAX} characters (after trimming spaces).")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValidationError("displayName", "must not contain control characters.")
    return name


def validate_server_url(value: str) -> CheckedUrl:
    url = value.strip()
    if not 1 <= len(url) <= SERVER_URL_MAX:
        raise ValidationError("serverUrl", f"must be 1 to {SERVER_URL_MAX} characters.")
    try:
        return check_url(url, rules=outbound_policy().rules)
    except InvalidUrl as exc:
        raise ValidationError("serverUrl", f"{exc}.") from None
    except DestinationRefused as exc:
        raise ValidationError("serverUrl", f"{exc}.") from None


def validate_headers(headers: Sequence[HeaderInput], *, field_name: str = "headers") -> list[HeaderInput]:
    if len(headers) > MAX_HEADERS:
        raise ValidationError(field_name, f"at most {MAX_HEADERS} headers are allowed.")
    seen: set[str] = set()
    total = 0
    cleaned: list[HeaderInput] = []
    for index, header in enumerate(headers):
        field = f"{field_name}[{index}]"
        key = header.key.strip()
        if not key:
            raise ValidationError(f"{field}.key", "must not be empty.")
        if len(key) > HEADER_KEY_MAX or not _TOKEN.match(key):
            raise ValidationError(f"{field}.key", "must be a valid HTTP header name (RFC 9110 token characters).")
        if key.lower() in FORBIDDEN_HEADER_NAMES:
            raise ValidationError(f"{field}.key", f"'{key}' is managed by the connection and cannot be set.")
        if key.lower() in seen:
            raise ValidationError(f"{field}.key", f"duplicate header '{key}' (header names are case-insensitive).")
        seen.add(key.lower())
        # The value is a secret: messages about it never repeat it.
        if len(header.value) > HEADER_VALUE_MAX:
            raise ValidationError(f"{field}.value", f"must be at most {HEADER_VALUE_MAX} characters.")
        if _BAD_VALUE_CHAR.search(header.value):
            raise ValidationError(f"{field}.value", "must not contain CR, LF, NUL or other control characters.")
        total += len(key) + len(header.value)
        cleaned.append(HeaderInput(key=key, value=header.value.strip(" \t")))
    if total > HEADERS_TOTAL_MAX:
        raise ValidationError(field_name, f"all headers together must be at most {HEADERS_TOTAL_MAX} characters.")
    return cleaned


# --- OAuth client credentials (the client-credentials extension) ---------------------------------------------------

SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_MAX_CLIENT_ID = 2000
_MAX_SECRET = 4096
_MAX_PRIVATE_KEY = 16384


@dataclass(frozen=True)
class ClientCredentialsInput:
    """A machine-to-machine OAuth client for one server: its id and either a secret or a private key (PEM) with the
    algorithm it signs private_key_jwt assertions with."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    signing_algorithm: str | None = None


def validate_client_credentials(
    credentials: ClientCredentialsInput, *, field_name: str = "clientCredentials"
) -> ClientCredentialsInput:
    """The credentials as stored, or a ValidationError naming the field (never quoting a secret or a key)."""
    client_id = credentials.client_id.strip()
    if not client_id or len(client_id) > _MAX_CLIENT_ID or any(c in client_id for c in "\r\n\0"):
        raise ValidationError(f"{field_name}.clientId", f"must be 1-{_MAX_CLIENT_ID} characters on one line.")
    secret, key = credentials.client_secret or None, credentials.private_key or None
    if (secret is None) == (key is None):
        raise ValidationError(field_name, "needs exactly one of clientSecret and privateKey.")
    if secret is not None:
        if len(secret) > _MAX_SECRET or any(c in secret for c in "\r\n\0"):
            raise ValidationError(
                f"{field_name}.clientSecret", f"must be at most {_MAX_SECRET} characters on one line."
            )
        if credentials.signing_algorithm:
            raise ValidationError(f"{field_name}.signingAlgorithm", "applies only with privateKey.")
        return ClientCredentialsInput(client_id=client_id, client_secret=secret)
    assert key is not None
    algorithm = credentials.signing_algorithm or "RS256"
    if algorithm not in SIGNING_ALGORITHMS:
        raise ValidationError(f"{field_name}.signingAlgorithm", f"must be one of {', '.join(SIGNING_ALGORITHMS)}.")
    if len(key) > _MAX_PRIVATE_KEY:
        raise ValidationError(f"{field_name}.privateKey", f"must be at most {_MAX_PRIVATE_KEY} characters.")
    problem = private_key_problem(key, algorithm)
    if problem is not None:
        raise ValidationError(f"{field_name}.privateKey", f"{problem}.")
    return ClientCredentialsInput(client_id=client_id, private_key=key, signing_algorithm=algorithm)
