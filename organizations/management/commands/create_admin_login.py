from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from organizations.services import organization_admin_login_create


class Command(BaseCommand):
    help = (
        "Let a person into the admin as an admin of an organization (created if missing): an ADMIN membership, "
        "staff status and a new generated password, printed once. Run it again to issue a new password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The person's email address, also their username")
        parser.add_argument("--organization", required=True, help="Organization name")
        parser.add_argument("--json", action="store_true", help="Print {organizationId, username, password, url}")

    def handle(self, *args: Any, **options: Any) -> None:
        login = organization_admin_login_create(email=options["email"], organization_name=options["organization"])
        url = f"{settings.PUBLIC_BASE_URL}/admin/"
        if options["json"]:
            payload = {
                "organizationId": str(login.organization.pk),
                "username": login.user.get_username(),
                "password": login.password,
                "url": url,
            }
            self.stdout.write(json.dumps(payload))
        else:
            self.stdout.write(f"Admin of {login.organization.name} ({login.organization.pk}): {url}")
            self.stdout.write(f"  username: {login.user.get_username()}")
            self.stdout.write(f"  password (shown once): {login.password}")
