from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from organizations.models import Membership
from organizations.services import demo_access_ensure


class Command(BaseCommand):
    help = "Create (as needed) a user, an organization and a membership, and print a new API key for them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--organization", required=True, help="Organization name")
        parser.add_argument("--role", choices=["admin", "member"], default="admin")
        parser.add_argument("--json", action="store_true", help="Print {organizationId, apiKey} as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        role = Membership.Role.ADMIN if options["role"] == "admin" else Membership.Role.MEMBER
        organization, created = demo_access_ensure(
            email=options["email"], organization_name=options["organization"], role=role
        )
        if options["json"]:
            self.stdout.write(json.dumps({"organizationId": str(organization.id), "apiKey": created.plaintext}))
        else:
            self.stdout.write(f"Organization: {organization.name} ({organization.id})")
            self.stdout.write(f"API key (shown once): {created.plaintext}")
