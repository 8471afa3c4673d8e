"""Re-encrypt every encrypted column with the first key of FERNET_KEYS (the key-rotation step).

Rotation: put the new key first in FERNET_KEYS and keep the old ones after it (all of them decrypt, the
first encrypts), deploy, run this command, then drop the old keys. Rows are re-saved one by one with
`save(update_fields=...)`: bulk_update would corrupt encrypted columns.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import models, transaction
from fernet_fields import EncryptedField


def encrypted_fields(model: type[models.Model]) -> list[str]:
    return [field.name for field in model._meta.concrete_fields if isinstance(field, EncryptedField)]


class Command(BaseCommand):
    help = "Re-encrypt every secret with the first key in FERNET_KEYS (after adding a key, before dropping old ones)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            names = encrypted_fields(model)
            if not names:
                continue
            count = 0
            pks = list(model._default_manager.values_list("pk", flat=True))
            for start in range(0, len(pks), options["batch_size"]):
                with transaction.atomic():
                    for row in model._default_manager.select_for_update().filter(
                        pk__in=pks[start : start + options["batch_size"]]
                    ):
                        row.save(update_fields=names)  # decrypted with any key, encrypted with the first
                        count += 1
            total += count
            self.stdout.write(f"{model._meta.label}: {count} rows ({', '.join(names)})")
        self.stdout.write(f"Re-encrypted {total} rows.")
