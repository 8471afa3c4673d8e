"""The OAuth client-credentials extension end to end: a server configured with a machine-to-machine client (a secret,
or a private key for private_key_jwt) connects with no person involved, and its tokens are got again as they
expire. Against the SDK-built OAuth test server, which grants client_credentials with --client-credentials."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcp_servers.models import McpServerClientCredentials, McpServerOAuth, OAuthClientSource
from mcp_servers.services import SyncOutcome, mcp_server_sync
from tests.conftest import Caller
from tests.contract import assert_matches_contract
from tests.test_secrets import database_dump

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "m2m-s3cret-never-shown"


def ec_key_pair(directory: Path) -> tuple[str, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = directory / "client.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def create(admin: Caller, url: str, **body: Any) -> Any:
    payload = {"displayName": "Machine", "serverUrl": url, **body}
    return admin.client.post(admin.create_url(), payload, format="json")


def test_a_client_secret_connects_without_a_person_and_gets_new_tokens_as_they_expire(
    admin: Caller, oauth_mcp_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    remote = oauth_mcp_server_factory(
        client_credentials=True, client_id="m2m-client", client_secret=SECRET, no_registration=True
    )

    response = create(admin, remote.url, clientCredentials={"clientId": "m2m-client", "clientSecret": SECRET})

    assert response.status_code == 201, response.json()
    assert_matches_contract(201, response.json())
    data = response.json()["data"]
    assert (data["setupState"], data["lastSyncStatus"]) == ("CONNECTED", "SUCCESS"), data["syncErrorMessage"]
    assert (data["requiresAuth"], data["authUrl"]) == (False, None)
    assert len(data["tools"]) == 3
    stats = remote.stats()
    assert stats["token_requests"]["client_credentials"] == 1
    assert stats["authorizations"] == 0
    assert stats["last_token_request"]["auth_method"] == "client_secret_basic"
    assert stats["last_token_request"]["resource"] == remote.url
    row = McpServerOAuth.objects.get()
    assert row.client_source == OAuthClientSource.CLIENT_CREDENTIALS
    assert row.refresh_token is None

    remote.control({"expire": True})
    assert mcp_server_sync(server_id=data["id"]) is SyncOutcome.SUCCESS
    assert remote.stats()["token_requests"]["client_credentials"] == 2

    assert SECRET not in response.content.decode()
    assert SECRET not in database_dump()
    assert SECRET not in caplog.text


def test_a_private_key_signs_a_private_key_jwt_assertion(
    admin: Caller, oauth_mcp_server_factory: Any, tmp_path: Path
) -> None:
    private, public = ec_key_pair(tmp_path)
    remote = oauth_mcp_server_factory(
        client_credentials=True, client_id="m2m-jwt", client_public_key=str(public), no_registration=True
    )

    response = create(
        admin,
        remote.url,
        clientCredentials={"clientId": "m2m-jwt", "privateKey": private, "signingAlgorithm": "ES256"},
    )

    data = response.json()["data"]
    assert (data["setupState"], data["lastSyncStatus"]) == ("CONNECTED", "SUCCESS"), data["syncErrorMessage"]
    assert remote.stats()["last_token_request"]["auth_method"] == "private_key_jwt"
    assert "PRIVATE KEY" not in response.content.decode()
    assert private.splitlines()[1] not in database_dump()


def test_credentials_the_server_refuses_are_a_broken_server_and_no_authorization_url(
    admin: Caller, oauth_mcp_server_factory: Any
) -> None:
    remote = oauth_mcp_server_factory(
        client_credentials=True, client_id="m2m-client", client_secret=SECRET, no_registration=True
    )

    response = create(admin, remote.url, clientCredentials={"clientId": "m2m-client", "clientSecret": "wrong-one"})

    data = response.json()["data"]
    assert (data["setupState"], data["lastSyncStatus"]) == ("BROKEN", "FAILED")
    assert data["authUrl"] is None
    assert "client credentials" in data["syncErrorMessage"]
    assert "wrong-one" not in response.content.decode()


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ({"clientId": "x"}, "clientCredentials"),
        ({"clientId": "x", "clientSecret": "s", "privateKey": "k"}, "clientCredentials"),
        ({"clientId": " ", "clientSecret": "s"}, "clientCredentials.clientId"),
        ({"clientId": "x", "privateKey": "-----BEGIN PRIVATE KEY-----\nnot a key\n"}, "clientCredentials.privateKey"),
        ({"clientId": "x", "clientSecret": "s", "signingAlgorithm": "ES256"}, "clientCredentials.signingAlgorithm"),
        ({"clientId": "x", "privateKey": "k", "signingAlgorithm": "none"}, "clientCredentials.signingAlgorithm"),
        ({"clientId": 1, "clientSecret": "s"}, "clientCredentials.clientId"),
    ],
)
def test_invalid_client_credentials_are_a_400_naming_the_field(
    admin: Caller, mcp_server: Any, credentials: dict[str, Any], field: str
) -> None:
    response = create(admin, mcp_server.url, clientCredentials=credentials)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["title"] == "ValidationError"
    assert error["detail"].startswith(field), error
    assert "not a key" not in error["detail"]
    assert not McpServerClientCredentials.objects.exists()


def test_patch_sets_and_removes_client_credentials(admin: Caller, oauth_mcp_server_factory: Any) -> None:
    remote = oauth_mcp_server_factory(client_credentials=True, client_id="m2m-client", client_secret=SECRET)
    created = create(admin, remote.url).json()["data"]
    assert (created["setupState"], created["requiresAuth"]) == ("INCOMPLETE", True)  # a person would authorize
    url = f"{admin.create_url()}/{created['id']}"

    patched = admin.client.patch(
        url, {"clientCredentials": {"clientId": "m2m-client", "clientSecret": SECRET}}, format="json"
    )

    assert patched.status_code == 200
    data = patched.json()["data"]
    assert (data["setupState"], data["requiresAuth"], data["authUrl"]) == ("CONNECTED", False, None)
    assert McpServerOAuth.objects.get().client_source == OAuthClientSource.CLIENT_CREDENTIALS

    removed = admin.client.patch(url, {"clientCredentials": None}, format="json").json()["data"]

    assert not McpServerClientCredentials.objects.exists()
    assert (removed["setupState"], removed["requiresAuth"]) == ("INCOMPLETE", True)
    assert removed["authUrl"]
