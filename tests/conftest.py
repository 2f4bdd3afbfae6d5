"""Suite-wide fixtures. Tests run against DATABASE_URL (PostgreSQL in CI) and REDIS_URL when set."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from locks import clock

pytest_plugins = ["tests.sandbox_fixtures"]


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()
    # what this process last wrote of Salto's clock went with the cache
    clock._last_written.clear()
