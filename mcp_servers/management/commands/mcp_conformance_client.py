"""The adapter the official MCP conformance suite drives (`.ci/conformance`): this service as an MCP client.

It runs the project's own code end to end: create a server (the sync discovers, registers and hands out
an authorization URL), complete the redirect headlessly (GET the authorization URL through the guarded
client, read `Location`), run the callback logic (the code exchange and the next sync run in process),
and report the tools. The suite passes the server URL as the only argument, the scenario name in
MCP_CONFORMANCE_SCENARIO, and pre-registered credentials in MCP_CONFORMANCE_CONTEXT.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import oauth
from integrations.mcp import McpAuthRequired, list_remote_tools
from mcp_servers.limits import mcp_client_factory, oauth_client, outbound_policy, sync_limits
from mcp_servers.models import McpServer, McpTool, SyncStatus
from mcp_servers.services import callback_url, mcp_server_create, oauth_callback_accept
from organizations.services import organization_create


class Command(BaseCommand):
    help = "Connect to one MCP server as this service does, completing OAuth headlessly (for the conformance suite)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("server_url")
        parser.add_argument("--max-authorizations", type=int, default=3)
        parser.add_argument(
            "--client-metadata-url",
            default=os.environ.get(
                "CONFORMANCE_CLIENT_METADATA_URL", "https://conformance-test.local/client-metadata.json"
            ),
            help="client_id to use where the authorization server supports client ID metadata documents",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.REDIS_URL:
            raise CommandError("Run with REDIS_URL unset: the adapter needs the sync to run in process.")
        server_url: str = options["server_url"]
        settings.MCP_OAUTH_CLIENT_METADATA_URL = options["client_metadata_url"]
        context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
        if context.get("client_id"):
            self._preregister(server_url, context)

        organization = organization_create(name="Conformance")
        server = mcp_server_create(
            organization=organization, created_by=None, display_name="Conformance", server_url=server_url
        )
        server.refresh_from_db()
        authorizations = 0
        while server.auth_url and server.last_sync_status != SyncStatus.SUCCESS:
            if authorizations >= options["max_authorizations"]:
                self._finish(server, authorizations, "too many authorization rounds")
            authorizations += 1
            self._step(f"authorization URL: {server.auth_url}")
            query = self._approve(server.auth_url)
            result = oauth_callback_accept(
                state=query.get("state"), code=query.get("code"), error=query.get("error"), iss=query.get("iss")
            )
            self._step(f"callback: {result.message}")
            if not result.accepted:
                self._finish(server, authorizations, result.message)
            server.refresh_from_db()
            self._step(f"sync: {server.setup_state} / {server.last_sync_status}")
        self._finish(server, authorizations, None)

    def _preregister(self, server_url: str, context: dict[str, Any]) -> None:
        """MCP_OAUTH_CLIENTS is keyed by issuer, which only discovery tells: learn it, then configure the client."""
        limits = sync_limits()
        try:
            list_remote_tools(server_url, {}, http_client_factory=mcp_client_factory(), limits=limits)
        except McpAuthRequired as exc:
            challenge = exc.challenge
        else:
            return
        discovery = oauth.discover(
            server_url, challenge, oauth_client(limits), policy=outbound_policy(), total_seconds=limits.total_seconds
        )
        settings.MCP_OAUTH_CLIENTS = {
            discovery.authorization_server.issuer: {
                "client_id": context["client_id"],
                "client_secret": context.get("client_secret"),
                "token_endpoint_auth_method": context.get("token_endpoint_auth_method", "client_secret_basic"),
            }
        }
        self._step(f"pre-registered client for {discovery.authorization_server.issuer}")

    def _approve(self, auth_url: str) -> dict[str, str]:
        """What a browser does at an authorization server that approves at once: follow nothing, read Location."""

        async def get() -> str:
            async with oauth_client(sync_limits()) as http:
                response = await http.get(auth_url, follow_redirects=False)
                if not response.is_redirect:
                    raise CommandError(
                        f"The authorization endpoint answered HTTP {response.status_code}, not a redirect."
                    )
                return response.headers["location"]

        location = anyio.run(get)
        self._step(f"location: {location}")
        if not location.startswith(f"{callback_url()}?"):
            raise CommandError("The authorization server redirected somewhere other than the callback.")
        return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}

    def _step(self, line: str) -> None:
        self.stdout.write(line)

    def _finish(self, server: McpServer, authorizations: int, error: str | None) -> None:
        tools = list(McpTool.objects.filter(server=server, found_in_server=True).values_list("name", flat=True))
        ok = error is None and server.last_sync_status == SyncStatus.SUCCESS and bool(tools)
        reason = error or ("" if ok else server.sync_error_message or "the sync did not succeed")
        summary = {"status": "ok" if ok else "failed", "tools": tools, "authorizations": authorizations}
        if not ok:
            summary["error"] = reason
        self.stdout.write(json.dumps(summary))
        if not ok:
            raise CommandError(reason)
        raise SystemExit(0)
