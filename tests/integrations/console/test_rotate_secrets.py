"""rotate_secrets re-encrypts every secret under the newest key, tested with two keys."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from integrations.encryption import _fernet_for
from integrations.models import Integration
from tests.fake_salto import PASSWORD, PIN, SECRET
from tests.integrations.console.conftest import make_integration

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def raw_secrets(integration: Integration) -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT password, iq_secret, current_pin FROM integrations_integration WHERE id = %s", [integration.pk]
        )
        return cursor.fetchone()


def readable_with(key: str, ciphertext: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(ciphertext.encode())
    except Exception:
        return False
    return True


def test_it_re_encrypts_every_secret_under_the_newest_key(settings: Any) -> None:
    # given secrets written under the old key
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    _fernet_for.cache_clear()
    integration = make_integration(iq_secret=SECRET, current_pin=PIN)
    empty = make_integration(name="No secrets yet", password="")
    before = raw_secrets(integration)
    assert all(readable_with(OLD_KEY, value) for value in before)
    # when a new key is put first and the command runs
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    out = StringIO()
    call_command("rotate_secrets", stdout=out)
    # then every secret is readable with the new key alone, and unchanged in value
    after = raw_secrets(integration)
    assert all(readable_with(NEW_KEY, value) for value in after)
    assert not any(readable_with(OLD_KEY, value) for value in after)
    assert "Re-encrypted 3 secret value(s)" in out.getvalue()
    assert raw_secrets(empty) == ("", "", "")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    reloaded = Integration.objects.get(pk=integration.pk)
    assert (reloaded.password, reloaded.iq_secret, reloaded.current_pin) == (PASSWORD, SECRET, PIN)
    # no history row for a re-encryption (the values did not change)
    assert integration.history.count() == 1  # type: ignore[attr-defined]


def test_it_refuses_when_a_secret_cannot_be_decrypted(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    make_integration()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    with pytest.raises(CommandError, match="password cannot be decrypted with any key"):
        call_command("rotate_secrets", stdout=StringIO())
