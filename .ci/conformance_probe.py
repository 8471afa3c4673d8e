"""Reference client for `.ci/conformance`: the MCP SDK's own OAuthClientProvider, completed headlessly.

Not part of the service. It shows, with the SDK doing every OAuth step, what the conformance suite's
client auth scenarios expect from `manage.py mcp_conformance_client`, and lets `.ci/conformance` be
checked without our adapter:

    CONFORMANCE_CLIENT="$PY .ci/conformance_probe.py" .ci/conformance [SCENARIO...]

The suite calls it as `<command> <server-url>`, with MCP_CONFORMANCE_SCENARIO (scenario name) and, for
auth/pre-registration only, MCP_CONFORMANCE_CONTEXT (JSON: name, client_id, client_secret) in the
environment. The suite's authorization server approves at once: GET /authorize answers 302 to the
given redirect_uri (any absolute URL; nothing ever connects to it) with `code` and `state` (no `iss`).
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

REDIRECT_URI = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/") + "/oauth/callback"
# auth/basic-cimd passes only when the client_id is exactly this URL (the suite never fetches it).
CIMD_URL = "https://conformance-test.local/client-metadata.json"


class MemoryStorage:
    def __init__(self, client_info: OAuthClientInformationFull | None = None) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info = client_info

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class HeadlessBrowser:
    """Plays the user agent: GET the authorization URL, do not follow the redirect, read Location."""

    def __init__(self) -> None:
        self.result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        print(f"authorize: {authorization_url}", file=sys.stderr)
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            response = await http.get(authorization_url)
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            raise RuntimeError(f"authorization endpoint answered {response.status_code} without a redirect")
        if not location.startswith(REDIRECT_URI + "?"):
            raise RuntimeError(f"redirected to {location!r}, not to our redirect_uri")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        if "error" in query:
            raise RuntimeError(f"authorization failed: {query['error']}")
        self.result = AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        result, self.result = self.result, None
        return result


async def main(server_url: str) -> None:
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    print(f"scenario={scenario!r} context_keys={sorted(context)}", file=sys.stderr)

    metadata = OAuthClientMetadata(
        client_name="mcp-conformance-probe",
        redirect_uris=[AnyUrl(REDIRECT_URI)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )
    pre_registered = None
    if "client_id" in context:  # auth/pre-registration: the AS has no registration endpoint
        pre_registered = OAuthClientInformationFull(
            client_id=context["client_id"],
            client_secret=context.get("client_secret"),
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name, not a secret)
            redirect_uris=[AnyUrl(REDIRECT_URI)],
        )
    browser = HeadlessBrowser()
    auth = OAuthClientProvider(
        server_url=server_url,
        client_metadata=metadata,
        storage=MemoryStorage(pre_registered),
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
        client_metadata_url=CIMD_URL,  # used only when the AS advertises client_id_metadata_document_supported
    )
    async with (
        httpx2.AsyncClient(auth=auth, timeout=20) as http,
        Client(streamable_http_client(server_url, http_client=http), mode="legacy") as client,
    ):
        tools = (await client.list_tools()).tools
        print(f"tools: {[t.name for t in tools]}")
        if tools:  # auth/scope-step-up asks for more scope on tools/call only
            result = await client.call_tool(tools[0].name, {})
            print(f"call {tools[0].name}: is_error={result.is_error}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
