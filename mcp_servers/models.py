from __future__ import annotations

from django.conf import settings
from django.db import models
from fernet_fields import EncryptedTextField

from core.ids import new_id
from mcp_servers.labels import SERVER_LABEL_MAX_LENGTH
from organizations.models import Organization


class TransportType(models.TextChoices):
    STREAMABLE_HTTP = "STREAMABLE_HTTP"
    SSE = "SSE"


class SetupState(models.TextChoices):
    INCOMPLETE = "INCOMPLETE"
    CONNECTED = "CONNECTED"
    BROKEN = "BROKEN"


class SyncStatus(models.TextChoices):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    NEVER_SYNCED = "NEVER_SYNCED"


class AccessMode(models.TextChoices):
    ALWAYS_ALLOW = "ALWAYS_ALLOW"
    NEEDS_APPROVAL = "NEEDS_APPROVAL"
    BLOCKED = "BLOCKED"


class McpServer(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="mcp_servers")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    display_name = models.CharField(max_length=120)
    server_url = models.CharField(max_length=2000)
    # Derived from the display name at create and never changed: model-facing tool names start with it.
    server_label = models.CharField(max_length=SERVER_LABEL_MAX_LENGTH, editable=False)
    everyone_in_organization_can_access = models.BooleanField(default=True)
    transport_type = models.CharField(max_length=16, choices=TransportType.choices, null=True, blank=True)
    setup_state = models.CharField(max_length=16, choices=SetupState.choices, default=SetupState.INCOMPLETE)
    last_sync_status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.NEVER_SYNCED)
    last_sync_attempt_at = models.DateTimeField(null=True, blank=True)
    last_successful_sync_at = models.DateTimeField(null=True, blank=True)
    has_completed_first_sync = models.BooleanField(default=False)
    sync_error_message = models.TextField(null=True, blank=True)
    auth_url = models.TextField(null=True, blank=True)
    requires_auth = models.BooleanField(default=False)
    # A sync holds a lease (token + expiry) on its server; the final write is fenced by the token,
    # so two deliveries of one sync never both write, and a crashed worker's lease simply expires.
    sync_lease_token = models.UUIDField(null=True, blank=True, editable=False)
    sync_lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Every sync request takes the next number, and its task carries it; a sync records the number it serves
    # (the latest request when it took the lease). A delivery whose number is already served is a duplicate
    # (a redelivered or retried message) and does nothing: a sync is never run twice for one request.
    sync_requested_seq = models.PositiveIntegerField(default=0, editable=False)
    sync_running_seq = models.PositiveIntegerField(default=0, editable=False)
    sync_served_seq = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "MCP server"
        constraints = [
            models.UniqueConstraint(fields=["organization", "server_label"], name="unique_server_label_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.server_label})"


class McpServerHeader(models.Model):
    """One static header sent on every request to the server. The value is encrypted and write-only."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="headers")
    key = models.CharField(max_length=256)
    key_normalized = models.CharField(max_length=256, editable=False)
    value = EncryptedTextField()
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["server", "key_normalized"], name="unique_header_key_per_server"),
        ]

    def __str__(self) -> str:
        return self.key


class McpTool(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    # No index of its own: the unique (server, name) constraint below leads with it and serves every lookup by
    # server, so a second index would only cost writes (a sync upserts every tool of a server).
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools", db_index=False)
    name = models.CharField(max_length=512)
    title = models.TextField(null=True, blank=True)
    description = models.TextField(null=True, blank=True)
    input_schema = models.JSONField(default=dict)
    output_schema = models.JSONField(null=True, blank=True)
    annotations = models.JSONField(default=dict)
    read_only_hint = models.BooleanField(null=True, blank=True)
    access_mode = models.CharField(max_length=16, choices=AccessMode.choices, default=AccessMode.NEEDS_APPROVAL)
    found_in_server = models.BooleanField(default=True)
    # SHA-256 of the tool's definition as last synced, and as it stood when its access mode was last
    # decided (by default at first sight, or by an admin). They differ when the server changed it since.
    definition_hash = models.CharField(max_length=64)
    reviewed_definition_hash = models.CharField(max_length=64)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP tool"
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="unique_tool_name_per_server")]

    def __str__(self) -> str:
        return self.name

    @property
    def definition_changed_since_review(self) -> bool:
        return self.definition_hash != self.reviewed_definition_hash


class OAuthClientSource(models.TextChoices):
    PREREGISTERED = "PREREGISTERED"
    CLIENT_METADATA_DOCUMENT = "CLIENT_METADATA_DOCUMENT"
    DYNAMIC_REGISTRATION = "DYNAMIC_REGISTRATION"
    CLIENT_CREDENTIALS = "CLIENT_CREDENTIALS"  # the server's own McpServerClientCredentials (no person involved)


class McpServerClientCredentials(models.Model):
    """A machine-to-machine OAuth client an admin configured for one server (the MCP OAuth client-credentials
    extension): its tokens come from the client_credentials grant, without a person in the loop. Either a client
    secret (client_secret_basic, or client_secret_post where that is all the server takes) or a private key that
    signs a private_key_jwt assertion (RFC 7523). The secret and the key are encrypted and write-only."""

    server = models.OneToOneField(McpServer, on_delete=models.CASCADE, related_name="client_credentials")
    client_id = models.CharField(max_length=2000)
    client_secret = EncryptedTextField(null=True, blank=True)
    private_key = EncryptedTextField(null=True, blank=True)  # PEM (PKCS#8)
    signing_algorithm = models.CharField(max_length=8, blank=True, default="")  # with private_key: ES256, RS256 ...
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OAuth client credentials"
        verbose_name_plural = "OAuth client credentials"

    def __str__(self) -> str:
        return f"Client credentials for {self.server_id}"

    @property
    def auth_method(self) -> str:
        return "private_key_jwt" if self.private_key else "client_secret_basic"


class McpServerOAuth(models.Model):
    """How this service authorizes against one server: endpoints, its client identity, and its tokens.

    The client secret and the tokens are encrypted and never leave the worker. The row is also the lock
    that makes refreshes one at a time per server (a refresh token may be single-use).
    """

    server = models.OneToOneField(McpServer, on_delete=models.CASCADE, related_name="oauth")
    issuer = models.CharField(max_length=2000)
    authorization_endpoint = models.CharField(max_length=2000)
    token_endpoint = models.CharField(max_length=2000)
    revocation_endpoint = models.CharField(max_length=2000, null=True, blank=True)
    iss_parameter_supported = models.BooleanField(default=False)
    resource = models.CharField(max_length=2000)
    scope = models.TextField(null=True, blank=True)
    # What the last challenge said, so a re-authorization can discover again without a new 401.
    resource_metadata_url = models.CharField(max_length=2000, null=True, blank=True)
    challenge_scope = models.TextField(null=True, blank=True)
    client_source = models.CharField(max_length=32, choices=OAuthClientSource.choices)
    client_id = models.TextField()
    client_secret = EncryptedTextField(null=True, blank=True)
    token_endpoint_auth_method = models.CharField(max_length=32, default="none")
    access_token = EncryptedTextField(null=True, blank=True)
    refresh_token = EncryptedTextField(null=True, blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"OAuth for {self.server_id}"


class OAuthAuthorizationRequest(models.Model):
    """One authorization URL handed out: its `state` (stored hashed), PKCE verifier, and single use."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="authorization_requests")
    state_hash = models.CharField(max_length=64, unique=True)
    code_verifier = EncryptedTextField()
    redirect_uri = models.CharField(max_length=2000)
    # Set when the callback claims the request; the code waits here (encrypted) for the worker to exchange it.
    code = EncryptedTextField(null=True, blank=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Authorization request for {self.server_id}"


class McpServerAccess(models.Model):
    """A member allowed to use a server that not everyone in the organization can access."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="access_grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mcp_server_grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "user"], name="unique_access_grant")]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.server_id}"


class McpServerGroupAccess(models.Model):
    """A group whose members may use a server that not everyone in the organization can access."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="group_access_grants")
    group = models.ForeignKey(
        "organizations.Group", on_delete=models.CASCADE, related_name="mcp_server_grants", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "group access grant"
        # Led by the group: the access rule looks grants up by the caller's groups (the server FK has its own index).
        constraints = [models.UniqueConstraint(fields=["group", "server"], name="unique_group_access_grant")]

    def __str__(self) -> str:
        return f"group {self.group_id} on {self.server_id}"


class OAuthRevocation(models.Model):
    """Tokens of a deleted (or re-pointed) server, waiting for the worker to revoke them at the server.

    The server row is gone by then, so what the revocation needs is kept here, encrypted, and only this
    row's id crosses the broker. The row is deleted once the revocation was attempted.
    """

    revocation_endpoint = models.CharField(max_length=2000)
    client_id = models.TextField()
    client_secret = EncryptedTextField(null=True, blank=True)
    token_endpoint_auth_method = models.CharField(max_length=32, default="none")
    token = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Revocation {self.pk}"


class ToolCallStatus(models.TextChoices):
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # NEEDS_APPROVAL: nothing reached the server yet
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"  # the server answered (its result may be a tool error: isError)
    FAILED = "FAILED"  # the server failed, timed out or could not be reached; error_message says which
    AUTH_REQUIRED = "AUTH_REQUIRED"  # the server wants a person to authorize (again, or with more scope)
    DENIED = "DENIED"
    EXPIRED = "EXPIRED"  # not approved in time
    REFUSED = "REFUSED"  # blocked, or refused at approval (the tool changed, or may no longer be used)
    CANCELLED = "CANCELLED"  # the caller cancelled it while it ran (an MCP client's cancellation or disconnect)


class ToolCallError(models.TextChoices):
    """Why a call did not complete (the API's `error.code`)."""

    BLOCKED = "BLOCKED"  # an admin blocked the tool
    DEFINITION_CHANGED = "DEFINITION_CHANGED"  # the server changed the tool between request and approval
    ACCESS_REVOKED = "ACCESS_REVOKED"  # the tool or server may no longer be used by the caller
    TIMEOUT = "TIMEOUT"  # the server did not answer in time
    UNREACHABLE = "UNREACHABLE"  # connection refused or broken, 429, 502-504
    HEADERS_REJECTED = "HEADERS_REJECTED"  # the server refused the static headers
    DESTINATION_REFUSED = "DESTINATION_REFUSED"  # the outbound policy refused the server's address
    RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
    PROTOCOL_ERROR = "PROTOCOL_ERROR"  # anything else the server did wrong (a JSON-RPC error, a malformed answer)
    OAUTH_FAILED = "OAUTH_FAILED"  # the authorization server could not refresh or start an authorization
    INTERRUPTED = "INTERRUPTED"  # the process running it stopped before it finished
    CANCELLED = "CANCELLED"  # its caller cancelled it while it ran


class ToolCallChannel(models.TextChoices):
    """How the call came in: the REST API, or the organization's MCP endpoint."""

    API = "API"
    MCP = "MCP"


class ToolCall(models.Model):
    """One tool call made through the service, from request to result: the audit trail.

    The arguments and the result may hold personal data: both are encrypted, never logged, and every record is
    purged after MCP_CALL_RETENTION_DAYS. The server and tool are kept by name too, so the trail outlives them.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tool_calls")
    server = models.ForeignKey(McpServer, on_delete=models.SET_NULL, null=True, blank=True, related_name="tool_calls")
    server_label = models.CharField(max_length=SERVER_LABEL_MAX_LENGTH)
    tool = models.ForeignKey(McpTool, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls")
    tool_name = models.CharField(max_length=512)
    # On whose behalf, and with which key; an admin's approval is recorded as the decision.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="tool_calls"
    )
    api_key = models.ForeignKey(
        "organizations.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="tool_calls"
    )
    channel = models.CharField(max_length=8, choices=ToolCallChannel.choices, default=ToolCallChannel.API)
    status = models.CharField(max_length=20, choices=ToolCallStatus.choices)
    arguments = EncryptedTextField()  # JSON
    # A keyed digest of the arguments (never the arguments themselves): an MCP client that asks again for a call
    # awaiting approval finds it, without the arguments being readable or searchable in the clear.
    arguments_digest = models.CharField(max_length=64, default="")
    # The tool's definition when the call was requested: an approval after it changed is refused.
    definition_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField(null=True, blank=True)  # until when it may be approved
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(null=True, blank=True)  # the last progress notification: progress, total, message
    result = EncryptedTextField(null=True, blank=True)  # JSON: content, structuredContent, isError, as sent
    is_error = models.BooleanField(null=True, blank=True)  # the result's isError (a tool error is still a result)
    error_code = models.CharField(max_length=32, null=True, blank=True)  # ToolCallError: why, for machines
    error_message = models.TextField(null=True, blank=True)  # why it failed or was refused, for people; never a secret
    auth_url = models.TextField(null=True, blank=True)  # AUTH_REQUIRED: where a person authorizes
    # When an MCP client that asked again got the outcome of this (approved) call: it is handed out once.
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The trail, newest first, by status, by server; expiry and purge sweeps.
            models.Index(fields=["organization", "-id"], name="tool_call_org_newest"),
            models.Index(fields=["organization", "status", "-id"], name="tool_call_org_status"),
            models.Index(fields=["status", "expires_at"], name="tool_call_status_expiry"),
            models.Index(fields=["created_at"], name="tool_call_created"),
            models.Index(fields=["requested_by", "tool", "arguments_digest"], name="tool_call_same_request"),
        ]

    def __str__(self) -> str:
        return f"{self.server_label}__{self.tool_name} ({self.status})"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds() * 1000)


class McpSession(models.Model):
    """A session of an MCP client with the organization's MCP endpoint (the handshake era's `Mcp-Session-Id`).

    Kept in the database, not in a process: any web process serves any request of a session. It holds what the
    handshake settled (protocol version, the client's capabilities and identity) and the log level the client set.
    Only the API key that opened it may use it; it ends on DELETE, when the key or its membership goes, or after
    MCP_ENDPOINT_SESSION_IDLE_SECONDS without a request.
    """

    id = models.CharField(primary_key=True, max_length=64, editable=False)  # random, unguessable
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="mcp_sessions")
    api_key = models.ForeignKey("organizations.ApiKey", on_delete=models.CASCADE, related_name="mcp_sessions")
    # The per-server endpoint's server; null for the organization's endpoint (every usable server's tools).
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, null=True, blank=True, related_name="sessions")
    protocol_version = models.CharField(max_length=32)
    client_params = models.JSONField(default=dict)  # the initialize request's params: capabilities, clientInfo
    log_level = models.CharField(max_length=16, null=True, blank=True)  # logging/setLevel; None: the default
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["last_seen_at"], name="mcp_session_last_seen")]

    def __str__(self) -> str:
        return f"MCP session {self.id[:8]}…"
