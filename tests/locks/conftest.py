"""Fixtures for the Salto KS client tests: the fake hosts (tests.fake_salto), a client, a mocked token endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import respx

from locks.client import SaltoClient
from tests import fake_salto
from tests.fake_salto import PASSWORD, USERNAME, use_fake_salto


@pytest.fixture(autouse=True)
def salto_hosts(settings: Any) -> None:
    use_fake_salto(settings)


@pytest.fixture
def client() -> Iterator[SaltoClient]:
    with SaltoClient(environment="acceptance", username=USERNAME, password=PASSWORD, timeout=5) as c:
        yield c


@pytest.fixture
def token_route(httpx2_mock: respx.Router) -> respx.Route:
    return fake_salto.token_route(httpx2_mock)
