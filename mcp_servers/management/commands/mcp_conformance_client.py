"""The adapter the official MCP conformance suite drives (`.ci/conformance`): this service as an MCP client.

It runs the project's own code end to end: create a server (the sync discovers, registers and hands out
an authorization URL), complete the redirect headlessly (GET the authorization URL through the guarded
client, read `Location`), run the callback logic (the code exchange and the next sync run in process),
then call every tool the server lists through the service's tool calls (as an admin, approving what needs
approval, with arguments made from each tool's input schema), authorizing again when a call asks for more
scope (step-up), and report the tools and the calls. The calls run as the MCP endpoint runs them, with a relay
for what the server asks meanwhile: the adapter is the person at that MCP client, and accepts an elicitation's
form as a client pre-fills it, with the defaults of the requested schema (SEP-1034), as it approves at /authorize.
The suite passes the server URL as the only argument, the scenario name in MCP_CONFORMANCE_SCENARIO, and
pre-registered credentials in MCP_CONFORMANCE_CONTEXT.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import oauth
from integrations.loop import background_loop
from integrations.mcp import McpAuthRequired, RelayRefused, list_remote_tools
from mcp_servers.limits import mcp_client_factory, oauth_client, outbound_policy, sync_limits
from mcp_servers.models import AccessMode, McpServer, McpTool, SyncStatus, ToolCallStatus
from mcp_servers.services import callback_url, mcp_server_create, oauth_callback_accept
from mcp_servers.services.tool_calls import Caller, tool_call_decide, tool_call_execute, tool_call_request
from mcp_servers.validation import ClientCredentialsInput
from organizations.models import Membership
from organizations.services import membership_set, organization_create


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
        scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
        client_credentials: ClientCredentialsInput | None = None
        if scenario.startswith("auth/client-credentials"):
            # A machine-to-machine client, configured on the server as an admin would (the API's clientCredentials).
            client_credentials = ClientCredentialsInput(
                client_id=context["client_id"],
                client_secret=context.get("client_secret"),
                private_key=context.get("private_key_pem"),
                signing_algorithm=context.get("signing_algorithm"),
            )
        elif context.get("client_id"):
            self._preregister(server_url, context)

        organization = organization_create(name="Conformance")
        server = mcp_server_create(
            organization=organization,
            created_by=None,
            display_name="Conformance",
            server_url=server_url,
            client_credentials=client_credentials,
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
        if server.last_sync_status != SyncStatus.SUCCESS:
            self._finish(server, authorizations, None)
        calls, authorizations = self._call_tools(server, authorizations, options["max_authorizations"])
        self._finish(server, authorizations, None, calls)

    def _call_tools(
        self, server: McpServer, authorizations: int, max_authorizations: int
    ) -> tuple[list[dict[str, Any]], int]:
        user = get_user_model().objects.create(username="conformance@example.com", email="conformance@example.com")
        membership_set(user=user, organization=server.organization, role=Membership.Role.ADMIN)
        caller = Caller(organization=server.organization, user=user, api_key=None, is_admin=True)
        calls: list[dict[str, Any]] = []
        for tool in McpTool.objects.filter(server=server, found_in_server=True).exclude(access_mode=AccessMode.BLOCKED):
            tool.server = server
            while True:
                call = tool_call_request(caller=caller, tool=tool, arguments=example_arguments(tool.input_schema))
                if call.status == ToolCallStatus.AWAITING_APPROVAL:
                    call = tool_call_decide(call=call, user=user, is_admin=True, approve=True)
                running = background_loop.submit(tool_call_execute(call=call, relay=PersonAtTheClient()))
                call = running.result(timeout=settings.MCP_CALL_TIMEOUT_SECONDS + 10)
                self._step(f"call {tool.name}: {call.status} {call.error_message or ''}".rstrip())
                if call.status != ToolCallStatus.AUTH_REQUIRED or not call.auth_url:
                    break
                if authorizations >= max_authorizations:
                    break
                authorizations += 1
                query = self._approve(call.auth_url)
                result = oauth_callback_accept(
                    state=query.get("state"), code=query.get("code"), error=query.get("error"), iss=query.get("iss")
                )
                self._step(f"callback: {result.message}")
                if not result.accepted:
                    break
            calls.append({"tool": tool.name, "status": call.status, "isError": call.is_error})
        return calls, authorizations

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

    def _finish(
        self, server: McpServer, authorizations: int, error: str | None, calls: list[dict[str, Any]] | None = None
    ) -> None:
        tools = list(McpTool.objects.filter(server=server, found_in_server=True).values_list("name", flat=True))
        ok = error is None and server.last_sync_status == SyncStatus.SUCCESS
        reason = error or ("" if ok else server.sync_error_message or "the sync did not succeed")
        failed_calls = [call["tool"] for call in calls or [] if call["status"] != ToolCallStatus.COMPLETED]
        if ok and failed_calls:
            ok, reason = False, f"tool calls did not complete: {', '.join(failed_calls)}"
        summary = {
            "status": "ok" if ok else "failed",
            "tools": tools,
            "calls": calls or [],
            "authorizations": authorizations,
        }
        if not ok:
            summary["error"] = reason
        self.stdout.write(json.dumps(summary))
        if not ok:
            raise CommandError(reason)
        raise SystemExit(0)


class PersonAtTheClient:
    """The relay of the adapter's calls: a person at an MCP client who accepts every form the server asks them to
    fill in as the client pre-fills it, with each field's default (SEP-1034), and has nothing else to offer."""

    handshake_era = False  # no client era to follow: the session negotiates as the SDK does
    log_level = None  # and wants no log messages

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method != "elicitation/create":
            raise RelayRefused(-32601, f"This client does not answer {method}.")
        schema = params.get("requestedSchema")
        declared = schema.get("properties") if isinstance(schema, dict) else None
        fields: dict[str, Any] = declared if isinstance(declared, dict) else {}
        content = {
            name: spec["default"] for name, spec in fields.items() if isinstance(spec, dict) and "default" in spec
        }
        return {"action": "accept", "content": content}

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        return None


def example_arguments(schema: Any) -> dict[str, Any]:
    """Arguments that fit a tool's input schema as simply as possible: each required property's default, first enum
    value, or a plain value of its type (what a conformance scenario's tools need)."""
    if not isinstance(schema, dict):
        return {}
    declared = schema.get("properties")
    properties: dict[str, Any] = declared if isinstance(declared, dict) else {}
    plain: dict[str, Any] = {"string": "test", "number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}
    arguments: dict[str, Any] = {}
    for name in schema.get("required") or []:
        found = properties.get(name)
        spec: dict[str, Any] = found if isinstance(found, dict) else {}
        if "default" in spec:
            arguments[name] = spec["default"]
        elif spec.get("enum"):
            arguments[name] = spec["enum"][0]
        else:
            kind = spec.get("type")
            kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
            arguments[name] = example_arguments(spec) if kind == "object" else plain.get(kind or "string", "test")
    return arguments
