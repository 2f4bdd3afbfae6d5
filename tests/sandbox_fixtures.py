"""Pytest fixtures for the Salto KS sandbox. Register as a plugin: `pytest_plugins = ["tests.sandbox_fixtures"]`.

- `salto_sandbox_server` (session): one sandbox served on 127.0.0.1 (ephemeral port) for the whole run.
- `salto_sandbox`: that sandbox with fresh demo state, and settings pointing the "acceptance" environment and the
  platform client at it, so `SaltoClient(environment="acceptance", ...)` talks to the sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from locks.sandbox import RunningSandbox, start_sandbox_in_thread
from locks.sandbox.demo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET


@pytest.fixture(scope="session")
def salto_sandbox_server() -> Iterator[RunningSandbox]:
    with start_sandbox_in_thread() as sandbox:
        yield sandbox


@pytest.fixture
def salto_sandbox(salto_sandbox_server: RunningSandbox, settings: Any) -> Iterator[RunningSandbox]:
    sandbox = salto_sandbox_server
    clock = sandbox.state.clock
    sandbox.state.reset()
    settings.SALTO_KS_ACCEPTANCE_IDENTITY_URL = sandbox.url
    settings.SALTO_KS_ACCEPTANCE_API_URL = sandbox.url
    settings.SALTO_KS_CLIENT_ID = DEMO_CLIENT_ID
    settings.SALTO_KS_CLIENT_SECRET = DEMO_CLIENT_SECRET
    yield sandbox
    sandbox.state.clock = clock
    sandbox.state.reset()
