"""Settings, read from the environment in this one place.

With nothing set, the service runs on its embedded defaults: a SQLite file and Celery tasks run in
process, eagerly, after commit. `DJANGO_ENV=production` turns every default secret off, so a
production process without its secrets refuses to start.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("DJANGO_ENV must be 'development' or 'production'.")
PRODUCTION = DJANGO_ENV == "production"


def _required(name: str, dev_default: str) -> str:
    """A secret that production must be given and development may default."""
    if PRODUCTION:
        value = env.str(name, default="")
        if not value:
            raise ImproperlyConfigured(f"{name} must be set when DJANGO_ENV=production.")
        return value
    return env.str(name, default=dev_default)


SECRET_KEY = _required("DJANGO_SECRET_KEY", "dev-insecure-secret-key-do-not-use-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if not PRODUCTION:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles: `runserver` leaves static files to WhiteNoise, as gunicorn does.
    "whitenoise.runserver_nostatic",
    "core.apps.StaticFiles",
    "rest_framework",
    "drf_spectacular",
    "core",
    "organizations",
    "mcp_servers",
]

MIDDLEWARE = [
    "core.logging.RequestIdMiddleware",
    "core.ratelimit.RateLimitHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS and JavaScript) in every way the service runs: runserver and gunicorn alike.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if PRODUCTION and not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured("DATABASE_URL must be set when DJANGO_ENV=production.")
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    # A waiting writer beats "database is locked" when the eager sync and a request overlap.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions
# Persistent connections in production: opening one per request costs ~1.5 ms of CPU (BENCHMARKS.md).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60 if PRODUCTION else 0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files are collected (`manage.py collectstatic`, which `make run` and the release step run) into
# STATIC_ROOT, compressed (gzip, Brotli) and fingerprinted, and WhiteNoise serves them with far-future caching.
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Encrypted columns (header values, later OAuth secrets): the first key encrypts, all keys decrypt.
FERNET_KEYS = env.list("FERNET_KEYS", default=[]) or [_required("FERNET_KEYS", "dev-insecure-fernet-key")]

PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

# OAuth toward MCP servers. Pre-registered clients, by issuer: a JSON object such as
# {"https://auth.example.com": {"client_id": "...", "client_secret": "...", "token_endpoint_auth_method": "..."}}.
MCP_OAUTH_CLIENTS = env.json("MCP_OAUTH_CLIENTS", default={})
MCP_OAUTH_CLIENT_NAME = env.str("MCP_OAUTH_CLIENT_NAME", default="MCP connectors")
# The client ID metadata document's URL (it is the client_id); empty means PUBLIC_BASE_URL/oauth/client-metadata.json,
# which this service serves. Set it when the document is published elsewhere (it must be https).
MCP_OAUTH_CLIENT_METADATA_URL = env.str("MCP_OAUTH_CLIENT_METADATA_URL", default="")
# How long an authorization URL stays usable, and how early an access token is refreshed before it expires.
MCP_OAUTH_STATE_TTL_SECONDS = env.int("MCP_OAUTH_STATE_TTL_SECONDS", default=900)
MCP_OAUTH_REFRESH_SKEW_SECONDS = env.int("MCP_OAUTH_REFRESH_SKEW_SECONDS", default=60)

# Outbound calls: destinations exempt from the address policy (host[:port] or CIDR[:port], comma separated).
MCP_OUTBOUND_ALLOWLIST = env.str("MCP_OUTBOUND_ALLOWLIST", default="")
# How long a create waits for the first tool sync before it answers with the server as it stands.
MCP_SYNC_WAIT_SECONDS = env.float("MCP_SYNC_WAIT_SECONDS", default=10.0)
# Bounds on one sync (see integrations.mcp.SyncLimits).
MCP_SYNC_TOTAL_SECONDS = env.float("MCP_SYNC_TOTAL_SECONDS", default=30.0)
MCP_SYNC_CONNECT_SECONDS = env.float("MCP_SYNC_CONNECT_SECONDS", default=5.0)
MCP_SYNC_READ_SECONDS = env.float("MCP_SYNC_READ_SECONDS", default=15.0)
MCP_SYNC_MAX_PAGES = env.int("MCP_SYNC_MAX_PAGES", default=100)
MCP_SYNC_MAX_TOOLS = env.int("MCP_SYNC_MAX_TOOLS", default=10_000)
MCP_SYNC_MAX_RESPONSE_BYTES = env.int("MCP_SYNC_MAX_RESPONSE_BYTES", default=16 * 1024 * 1024)
# Tool calls (POST .../tool-calls). A request waits up to MCP_CALL_WAIT_SECONDS for the result, then answers 202 and
# the call goes on in the web process (poll GET .../tool-calls/{id}), bounded by MCP_CALL_TIMEOUT_SECONDS in all. The
# wait stays under gunicorn's request timeout (GUNICORN_TIMEOUT, 60 s) so a slow tool never costs a worker restart.
MCP_CALL_WAIT_SECONDS = env.float("MCP_CALL_WAIT_SECONDS", default=25.0)
MCP_CALL_TIMEOUT_SECONDS = env.float("MCP_CALL_TIMEOUT_SECONDS", default=120.0)
MCP_CALL_CONNECT_SECONDS = env.float("MCP_CALL_CONNECT_SECONDS", default=5.0)
MCP_CALL_READ_SECONDS = env.float("MCP_CALL_READ_SECONDS", default=60.0)
MCP_CALL_MAX_RESPONSE_BYTES = env.int("MCP_CALL_MAX_RESPONSE_BYTES", default=4 * 1024 * 1024)
# How long a call that needs approval may wait for it; how long call records (with their encrypted arguments and
# results) are kept; how long an open session with a server is kept for the next call.
MCP_CALL_APPROVAL_SECONDS = env.int("MCP_CALL_APPROVAL_SECONDS", default=15 * 60)
MCP_CALL_RETENTION_DAYS = env.int("MCP_CALL_RETENTION_DAYS", default=30)
MCP_CALL_SESSION_IDLE_SECONDS = env.float("MCP_CALL_SESSION_IDLE_SECONDS", default=60.0)

# The organization's MCP endpoint (.../mcp, and .../mcp-servers/{id}/mcp). Sessions (the handshake era's
# Mcp-Session-Id) end after this long without a request; tools/list pages hold this many tools; an MCP client has this
# long to answer what the endpoint asks it (an approval, a server's elicitation or sampling request). A browser page
# may call the endpoint only from the service's own origin or one listed here (DNS-rebinding protection).
MCP_ENDPOINT_SESSION_IDLE_SECONDS = env.int("MCP_ENDPOINT_SESSION_IDLE_SECONDS", default=24 * 3600)
MCP_ENDPOINT_PAGE_SIZE = env.int("MCP_ENDPOINT_PAGE_SIZE", default=1000)
MCP_ENDPOINT_ANSWER_SECONDS = env.float("MCP_ENDPOINT_ANSWER_SECONDS", default=300.0)
MCP_ENDPOINT_ALLOWED_ORIGINS = env.list("MCP_ENDPOINT_ALLOWED_ORIGINS", default=[])
# Periodic work, run by Celery beat (`celery -A config beat`, see CELERY_BEAT_SCHEDULE): every CONNECTED or BROKEN
# server that does not wait for authorization is synced again about once per interval (one cycle spread over
# half of it), and an OAuth access token is refreshed this long before it expires (or at half its lifetime).
MCP_RESYNC_INTERVAL_SECONDS = env.int("MCP_RESYNC_INTERVAL_SECONDS", default=3600)
MCP_TOKEN_REFRESH_AHEAD_SECONDS = env.int("MCP_TOKEN_REFRESH_AHEAD_SECONDS", default=300)

# Rate limits ("N/second|minute|hour", empty turns one off): per API key, and per client address for failed
# authentication (past it, every request from that address is refused until the window moves on).
MCP_RATE_LIMIT = env.str("MCP_RATE_LIMIT", default="600/minute")
MCP_AUTH_FAILURE_RATE_LIMIT = env.str("MCP_AUTH_FAILURE_RATE_LIMIT", default="30/minute")
# How many reverse proxies append to X-Forwarded-For in front of the web processes (0: use the peer address).
MCP_TRUSTED_PROXIES = env.int("MCP_TRUSTED_PROXIES", default=0)

# Celery. Without REDIS_URL, tasks run in process, eagerly; `delay()` is only ever called from
# `transaction.on_commit`, so "eagerly" still means "after commit".
REDIS_URL = env.str("REDIS_URL", default="")
if PRODUCTION and not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set when DJANGO_ENV=production.")
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A message is acknowledged only after its task ran, and a worker that dies mid-task gets its message
# redelivered: at once when a pool child dies (reject on worker loss), and within the visibility timeout
# plus one restore sweep when the whole worker dies. The time limits stay below the visibility timeout, so
# a task that is still running is never handed to a second worker; a sync's lease (MCP_SYNC_TOTAL_SECONDS
# + 15 s) expires before a redelivered message arrives.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=40)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=45)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=50),
    "unacked_restore_interval": 5,  # sweep for unacknowledged messages every 5 s ...
    "unacked_restore_throttle": 1,  # ... and really scan each time, so redelivery takes under a minute
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# What `celery -A config beat` sends, every tick (mcp_servers.services.scheduling decides what is due and spreads a
# re-sync cycle by the tick). A tick no worker started before the next one is dropped, so ticks do not pile up
# while the workers are down.
MCP_PERIODIC_TICK_SECONDS = 60
CELERY_BEAT_SCHEDULE = {
    name: {
        "task": task,
        "schedule": float(MCP_PERIODIC_TICK_SECONDS),
        "options": {"expires": MCP_PERIODIC_TICK_SECONDS - 5},
    }
    for name, task in (
        ("mcp-resync-all", "mcp_servers.resync_all"),
        ("mcp-refresh-expiring-tokens", "mcp_servers.refresh_expiring_tokens"),
        ("mcp-tool-call-upkeep", "mcp_servers.tool_call_upkeep"),
        ("mcp-session-purge", "mcp_servers.mcp_session_purge"),
    )
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["organizations.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["organizations.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # `?format=` belongs to the API (the tool catalog's format), not to DRF's renderer selection.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI document (`GET /api/public/openapi`, committed as openapi/openapi.yaml); the response shapes and
# the camelCase path parameters are spelled out in mcp_servers/api/schema.py.
SPECTACULAR_SETTINGS = {
    "OAS_VERSION": "3.1.0",
    "TITLE": "MCP connectors API",
    "DESCRIPTION": (
        "Connect remote MCP servers to an organization, sync their tools and govern how each tool may be used. "
        "Create implements the `Create an MCP server` contract field for field. Authenticate with an API key "
        '(`Authorization: Bearer <api key>`). Every error is `{"error": {"title", "detail"}}` with a stable '
        "title: ValidationError (400), Unauthorized (401), NotFound (404, also for an organization you may not "
        "manage), MethodNotAllowed (405, with an `Allow` header, for a method a path does not offer), "
        "RateLimitExceeded (429, with `retryAfterMs` and `Retry-After`), InternalServerError (500)."
    ),
    "VERSION": "0.1.0",
    "SCHEMA_PATH_PREFIX": "/api/public",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "TAGS": [
        {"name": "MCP servers", "description": "Manage MCP server data sources"},
        {"name": "Tool calls", "description": "Call the tools the servers offer, approve calls, and the audit trail"},
    ],
    "COMPONENT_SPLIT_PATCH": False,  # every field of an update is optional anyway
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    # The enum hook is left out: enums stay inline, as in the contract.
    "POSTPROCESSING_HOOKS": ["mcp_servers.api.schema.postprocess"],
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "json": one JSON object per line (the default in production); "plain": for reading in a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logging.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # The HTTP client logs one line per request (method, URL, status); keep that at WARNING.
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
        # The SDK logs session ids at INFO and whole tool listings at DEBUG.
        "mcp": {"level": "WARNING"},
    },
}

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
