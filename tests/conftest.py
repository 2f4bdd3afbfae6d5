"""Suite-wide fixtures. Tests run against DATABASE_URL (PostgreSQL in CI) and REDIS_URL when set."""

from __future__ import annotations

import pytest
from django.core.cache import cache

pytest_plugins = ["tests.sandbox_fixtures"]


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()
