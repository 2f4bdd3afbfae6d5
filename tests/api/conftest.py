"""Opening tests run tasks eagerly (in-process), whatever broker the settings name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ireserve_salto.celery import app


@pytest.fixture(autouse=True)
def _eager_celery() -> Iterator[None]:
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
