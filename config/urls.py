from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView

from core import health
from core.exceptions import json_not_found, json_server_error

admin.site.site_url = None  # the service has no site of its own to link to (its root is the API's 404)

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    # The OpenAPI document, without auth: YAML, or JSON with `Accept: application/json` (openapi/openapi.yaml).
    path("api/public/openapi", SpectacularAPIView.as_view(), name="openapi"),
    path("api/public/", include("mcp_servers.api.urls")),
    path("api/public/", include("mcp_servers.endpoint.urls")),
    path("", include("mcp_servers.endpoint.metadata")),
    path("", include("mcp_servers.pages")),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_server_error(request)
    return defaults.server_error(request)
