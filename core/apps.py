from django.apps import AppConfig
from django.contrib.staticfiles.apps import StaticFilesConfig


class CoreConfig(AppConfig):
    name = "core"


class StaticFiles(StaticFilesConfig):
    """Django's staticfiles, without REST framework's files: its browsable API is off (the API renders JSON only),
    so collecting them would only double what `collectstatic` compresses."""

    ignore_patterns = [*StaticFilesConfig.ignore_patterns, "rest_framework"]
