"""FERNET_KEYS rotation: add a key, re-encrypt, drop the old key, and every secret still decrypts."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from fernet_fields import EncryptedField, hkdf

from core.management.commands.reencrypt_secrets import encrypted_fields
from mcp_servers.models import (
    McpServer,
    McpServerClientCredentials,
    McpServerHeader,
    McpServerOAuth,
    OAuthAuthorizationRequest,
    OAuthClientSource,
    OAuthRevocation,
    ToolCall,
)
from organizations.models import Organization

pytestmark = pytest.mark.django_db


def use_keys(settings: Any, keys: list[str]) -> None:
    """Set FERNET_KEYS for this process; the fields cache their Fernet objects, so clear those too."""
    settings.FERNET_KEYS = keys
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedField):
                for cached in ("keys", "fernet_keys", "fernet"):
                    field.__dict__.pop(cached, None)


def raw(table: str, column: str) -> list[bytes]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")  # noqa: S608 - test constants
        return [bytes(row[0]) for row in cursor.fetchall()]


def test_rotation_keeps_every_secret(organization: Organization, settings: Any) -> None:
    use_keys(settings, ["old-key"])
    server = McpServer.objects.create(
        organization=organization, display_name="S", server_url="https://x.example/mcp", server_label="s"
    )
    McpServerHeader.objects.create(server=server, key="X-Api-Key", key_normalized="x-api-key", value="header-secret")
    McpServerOAuth.objects.create(
        server=server, issuer="https://as.example", authorization_endpoint="https://as.example/a",
        token_endpoint="https://as.example/t", resource="https://x.example/mcp",
        client_source=OAuthClientSource.DYNAMIC_REGISTRATION, client_id="c", client_secret="client-secret",
        access_token="access-token", refresh_token="refresh-token",
    )  # fmt: skip
    OAuthAuthorizationRequest.objects.create(
        server=server, state_hash="h", code_verifier="verifier", redirect_uri="https://x/cb", code="the-code",
        expires_at="2030-01-01T00:00:00Z",
    )  # fmt: skip
    OAuthRevocation.objects.create(revocation_endpoint="https://as.example/r", client_id="c", token="old-token")
    McpServerClientCredentials.objects.create(
        server=server, client_id="m2m", client_secret="m2m-secret", private_key="m2m-key"
    )
    ToolCall.objects.create(
        organization=organization, server=server, server_label="s", tool_name="t", status="COMPLETED",
        arguments='{"who": "someone"}', result='{"content": []}', definition_hash="h",
    )  # fmt: skip
    expected = {
        "header": "header-secret",
        "client_secret": "client-secret",
        "access": "access-token",
        "refresh": "refresh-token",
        "verifier": "verifier",
        "code": "the-code",
        "revocation": "old-token",
        "arguments": '{"who": "someone"}',
        "result": '{"content": []}',
        "m2m_secret": "m2m-secret",
        "m2m_key": "m2m-key",
    }
    before = raw("mcp_servers_mcpserverheader", "value")

    use_keys(settings, ["new-key", "old-key"])
    out = StringIO()
    call_command("reencrypt_secrets", stdout=out)
    assert "Re-encrypted 6 rows." in out.getvalue()
    after = raw("mcp_servers_mcpserverheader", "value")
    assert after != before
    new_fernet = Fernet(hkdf.derive_fernet_key("new-key"))
    assert new_fernet.decrypt(after[0]) == b"header-secret"  # now under the new key
    with pytest.raises(InvalidToken):
        Fernet(hkdf.derive_fernet_key("old-key")).decrypt(after[0])

    use_keys(settings, ["new-key"])  # the old key is gone
    oauth = McpServerOAuth.objects.get()
    request = OAuthAuthorizationRequest.objects.get()
    assert {
        "header": McpServerHeader.objects.get().value,
        "client_secret": oauth.client_secret,
        "access": oauth.access_token,
        "refresh": oauth.refresh_token,
        "verifier": request.code_verifier,
        "code": request.code,
        "revocation": OAuthRevocation.objects.get().token,
        "arguments": ToolCall.objects.get().arguments,
        "result": ToolCall.objects.get().result,
        "m2m_secret": McpServerClientCredentials.objects.get().client_secret,
        "m2m_key": McpServerClientCredentials.objects.get().private_key,
    } == expected
    use_keys(settings, settings.FERNET_KEYS)


def test_every_encrypted_column_is_covered() -> None:
    covered = {model._meta.label: encrypted_fields(model) for model in apps.get_models() if encrypted_fields(model)}
    assert covered == {
        "mcp_servers.McpServerClientCredentials": ["client_secret", "private_key"],
        "mcp_servers.McpServerHeader": ["value"],
        "mcp_servers.McpServerOAuth": ["client_secret", "access_token", "refresh_token"],
        "mcp_servers.OAuthAuthorizationRequest": ["code_verifier", "code"],
        "mcp_servers.OAuthRevocation": ["client_secret", "token"],
        "mcp_servers.ToolCall": ["arguments", "result"],
    }
