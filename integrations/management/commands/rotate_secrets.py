"""Re-encrypt every stored secret under the newest FIELD_ENCRYPTION_KEYS key.

Rotation: put the new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it), deploy, run
this command, then drop the old keys. Rows are rewritten with UPDATE of the ciphertext only, so no
plaintext is handled beyond the Fernet call and no history row or signal fires for a non-change.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from integrations.encryption import DecryptionError, rotate
from integrations.models import SECRET_FIELDS, Integration


class Command(BaseCommand):
    help = "Re-encrypt all secret fields (password, IQ secret, current pin) under the newest encryption key."

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = 0
        with transaction.atomic():
            # Lock the rows so a concurrent save cannot write under the old key between read and update.
            list(Integration.objects.select_for_update().values_list("pk", flat=True))
            # Raw ciphertext straight from the table: the model field would decrypt on load.
            for pk, *ciphertexts in _raw():
                updates: dict[str, str] = {}
                for name, ciphertext in zip(SECRET_FIELDS, ciphertexts, strict=True):
                    if not ciphertext:
                        continue
                    try:
                        updates[name] = rotate(ciphertext)
                    except DecryptionError as exc:
                        raise CommandError(f"Integration {pk}: {name} cannot be decrypted with any key") from exc
                if updates:
                    _write_raw(pk, updates)
                    rotated += len(updates)
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} secret value(s) under the newest key."))


def _column(name: str) -> str:
    from django.db import connection

    return connection.ops.quote_name(Integration._meta.get_field(name).column)  # type: ignore[union-attr,arg-type]


def _raw() -> list[tuple[Any, ...]]:
    from django.db import connection

    table = Integration._meta.db_table
    columns = ", ".join(_column(name) for name in ("id", *SECRET_FIELDS))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {connection.ops.quote_name(table)} ORDER BY id")  # noqa: S608
        return list(cursor.fetchall())


def _write_raw(pk: int, updates: dict[str, str]) -> None:
    from django.db import connection

    table = connection.ops.quote_name(Integration._meta.db_table)
    assignments = ", ".join(f"{_column(name)} = %s" for name in updates)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {assignments} WHERE id = %s", [*updates.values(), pk])  # noqa: S608
