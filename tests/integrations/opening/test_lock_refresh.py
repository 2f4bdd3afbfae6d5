"""Beat keeps the lock list fresh, so an offline lock is refused before anything is sent to Salto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import respx

from integrations.models import CachedLock, OpenRequest
from integrations.services.opening import open_request_create
from integrations.tasks import refresh_lock_lists
from tests.fake_salto import FRONT_DOOR, IQ_ID, LOCKS_URL, salto_that_opens_the_front_door
from tests.integrations.opening.builders import make_booking, make_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def salto(settings: Any) -> Iterator[respx.Router]:
    with salto_that_opens_the_front_door(settings) as router:
        yield router


def _lock_page(*, online: bool) -> dict[str, Any]:
    lock = {
        "id": FRONT_DOOR,
        "customer_reference": "Front door",
        "online": online,
        "iq": {"id": IQ_ID, "customer_reference": "IQ Reception", "is_online": True, "otp_enabled": True},
    }
    return {"items": [lock], "next_page_link": None}


def test_the_beat_refresh_marks_an_offline_lock_and_opens_are_refused_before_sending(salto: respx.Router) -> None:
    # given an active integration whose front door went offline in Salto since the last GET locks
    world = make_world()
    salto.get(LOCKS_URL).respond(200, json=_lock_page(online=False))
    assert CachedLock.objects.get(lock_id=FRONT_DOOR).online
    # when beat refreshes the lock lists (tasks run in-process in these tests)
    refresh_lock_lists.delay()
    # then the cache says offline, and a staff open is refused with that reason, nothing sent
    assert not CachedLock.objects.get(lock_id=FRONT_DOOR).online
    booking = make_booking(world, status=world.paid)
    request = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request
    assert request.state == OpenRequest.State.REFUSED
    assert "offline" in request.reason
    assert salto.routes["open"].call_count == 0


def test_the_refresh_skips_inactive_integrations(salto: respx.Router) -> None:
    world = make_world(is_active=False)
    route = salto.get(LOCKS_URL).respond(200, json=_lock_page(online=False))
    refresh_lock_lists.delay()
    assert route.call_count == 0
    assert CachedLock.objects.get(integration=world.integration).online
