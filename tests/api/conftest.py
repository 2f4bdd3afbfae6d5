"""API tests run tasks eagerly (in-process), whatever broker the settings name, and hash passwords quickly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integrations.opening.builders import eager_celery


@pytest.fixture(autouse=True)
def _eager_celery() -> Iterator[None]:
    with eager_celery():
        yield


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    # The users of these tests authenticate by token or force_authenticate, in this process: a password hash that
    # takes half a second (PBKDF2's production cost) only slows every test that creates one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
