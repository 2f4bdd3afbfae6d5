"""PostgreSQL: concurrent workers claiming one open request, and concurrent requests for one booking."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import respx
from django.db import connection

from integrations.models import OpenRequest
from integrations.services import opening
from integrations.services.opening import open_request_create, open_request_perform
from tests.concurrency import run_together
from tests.fake_salto import OPEN_URL, token_route, use_fake_salto
from tests.integrations.opening.builders import make_booking, make_world

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = 8


@pytest.fixture(autouse=True)
def _postgres_only(settings: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (row locks and real concurrent connections)")
    use_fake_salto(settings)


@pytest.fixture
def salto() -> Iterator[respx.Router]:
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        token_route(router)
        yield router


def test_concurrent_workers_send_exactly_one_open(salto: respx.Router, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a pending request, and a slow Salto so every worker is in flight at once
    monkeypatch.setattr(opening, "open_request_enqueue", lambda **_: None)
    world = make_world()
    booking = make_booking(world, status=world.paid)
    open_request = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request

    def slow_ok(request: Any) -> respx.MockResponse:
        time.sleep(0.2)
        return respx.MockResponse(200, json={})

    route = salto.patch(OPEN_URL).mock(side_effect=slow_ok)

    # when: eight workers get the same message
    outcomes = run_together(WORKERS, lambda: open_request_perform(open_request_id=open_request.pk).state)

    # then
    assert route.call_count == 1
    assert outcomes.count(OpenRequest.State.OPENED) >= 1
    open_request.refresh_from_db()
    assert (open_request.state, open_request.attempts) == (OpenRequest.State.OPENED, 1)


def test_concurrent_identical_requests_collapse_into_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opening, "open_request_enqueue", lambda **_: None)
    world = make_world()
    booking = make_booking(world, status=world.paid)

    results = run_together(WORKERS, lambda: open_request_create(booking=booking, trigger=OpenRequest.Trigger.API))

    assert OpenRequest.objects.count() == 1
    assert sum(result.created for result in results) == 1
    assert {result.open_request.pk for result in results} == {OpenRequest.objects.get().pk}
