"""`manage.py create_database`: create the PostgreSQL database DATABASE_URL names, when it does not exist yet.

For local runs (`make run-services`): production databases are provisioned beforehand. With SQLite it does
nothing (the file is made on first use).
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from psycopg import sql


class Command(BaseCommand):
    help = "Create the PostgreSQL database DATABASE_URL names, if it does not exist (local runs)."

    def handle(self, *args: Any, **options: Any) -> None:
        settings = connections["default"].settings_dict
        if connections["default"].vendor != "postgresql":
            self.stdout.write(f"{connections['default'].vendor}: nothing to create")
            return
        name = settings["NAME"]
        params: dict[str, Any] = {
            key: settings[name] for key, name in (("host", "HOST"), ("port", "PORT"), ("user", "USER"),
                                                  ("password", "PASSWORD")) if settings[name]
        }  # fmt: skip
        try:
            # The server's maintenance database: the target may not exist yet.
            with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **params) as maintenance:
                exists = maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                if exists:
                    self.stdout.write(f"database {name} exists")
                    return
                maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise CommandError(f"could not create database {name}: {exc}") from exc
        self.stdout.write(f"database {name} created")
