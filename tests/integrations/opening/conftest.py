"""Opening tests run tasks eagerly (in-process), whatever broker the settings name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integrations.opening.builders import eager_celery


@pytest.fixture(autouse=True)
def _eager_celery() -> Iterator[None]:
    with eager_celery():
        yield
