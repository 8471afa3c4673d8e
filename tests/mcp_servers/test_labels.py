from __future__ import annotations

from typing import Any

import pytest

from mcp_servers.labels import label_candidates
from mcp_servers.models import McpServer
from mcp_servers.services import mcp_server_create
from organizations.models import Organization

pytestmark = pytest.mark.django_db


def create(organization: Organization, name: str, capture: Any) -> McpServer:
    with capture(execute=False):
        return mcp_server_create(
            organization=organization, created_by=None, display_name=name, server_url="https://x.example/mcp"
        )


def test_labels_past_the_exact_probe_fall_back_to_the_prefix_scan(
    organization: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    McpServer.objects.bulk_create(
        McpServer(organization=organization, display_name="Same", server_url="https://x/", server_label=label)
        for label in label_candidates("Same", count=40)
        if label != "same_35"
    )
    assert create(organization, "Same", django_capture_on_commit_callbacks).server_label == "same_35"
    assert create(organization, "Same", django_capture_on_commit_callbacks).server_label == "same_41"


def test_numbered_names_do_not_collide(organization: Organization, django_capture_on_commit_callbacks: Any) -> None:
    labels = [create(organization, f"Server {i}", django_capture_on_commit_callbacks).server_label for i in (1, 10, 1)]
    assert labels == ["server_1", "server_10", "server_1_2"]
