"""A booking status change opens the sandbox lock through a real Celery worker on Redis, exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from django.utils import timezone

from bookings.models import BookingFieldValue, BookingStatusChange
from bookings.services import booking_change_status
from integrations.models import Integration, OpenRequest
from ireserve_salto.celery import app
from locks.sandbox import RunningSandbox
from locks.sandbox.demo import DEMO_IQ_ID, DEMO_LOCK_IDS
from tests.e2e.conftest import QUEUE, WORKER_FRESHNESS_SECONDS, Worker, sandbox_world
from tests.integrations.opening.builders import World, make_booking

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FRONT_DOOR = DEMO_LOCK_IDS["Front door"]
State = OpenRequest.State
TERMINAL = {State.OPENED, State.FAILED, State.REFUSED, State.EXPIRED}


@pytest.fixture
def sandbox(e2e_sandbox: RunningSandbox, celery_worker_process: Worker, settings: Any) -> RunningSandbox:
    e2e_sandbox.state.reset()
    settings.OPENING_TASK_QUEUE = QUEUE
    settings.OPEN_FRESHNESS_SECONDS = WORKER_FRESHNESS_SECONDS
    return e2e_sandbox


@pytest.fixture
def world(sandbox: RunningSandbox) -> World:
    world = sandbox_world(sandbox)
    return world


def control(sandbox: RunningSandbox, path: str, body: dict[str, Any]) -> None:
    httpx2.post(f"{sandbox.url}/_sandbox/{path}", json=body, timeout=5).raise_for_status()


def wait_for(predicate: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def finished_request() -> OpenRequest:
    return wait_for(lambda: OpenRequest.objects.filter(state__in=TERMINAL).first())


def locking_calls(sandbox: RunningSandbox) -> int:
    # A 401 is the worker's cached token meeting a reset sandbox: the client fetches a new token and repeats
    # the call once, before any OTP is checked. Count the calls Salto actually judged.
    return sum(1 for r in sandbox.state.requests() if r["path"].endswith("/locking") and r["status"] != 401)


def test_a_status_change_opens_the_sandbox_lock(world: World, sandbox: RunningSandbox) -> None:
    booking = make_booking(world)
    before = timezone.now()

    booking_change_status(booking=booking, status=world.paid, source=BookingStatusChange.Source.ADMIN)

    open_request = finished_request()
    assert open_request.state == State.OPENED, open_request.reason
    assert [o["lock_id"] for o in sandbox.state.opens()] == [FRONT_DOOR]
    booking.refresh_from_db()
    assert booking.status == world.checkin
    opened_at = BookingFieldValue.objects.get(booking=booking, field=world.last_open).datetime_value
    assert opened_at is not None
    assert before <= opened_at <= timezone.now()
    time.sleep(0.5)  # the check-in announcement must not have queued a second open
    assert OpenRequest.objects.count() == 1
    assert len(sandbox.state.opens()) == 1


def test_two_injected_503s_still_open_once(world: World, sandbox: RunningSandbox) -> None:
    calls_before = locking_calls(sandbox)
    control(sandbox, "faults", {"path_contains": "/locking", "status": 503, "times": 2})
    booking = make_booking(world)

    booking_change_status(booking=booking, status=world.paid)

    open_request = finished_request()
    assert open_request.state == State.OPENED, open_request.reason
    assert open_request.attempts == 3
    assert locking_calls(sandbox) - calls_before == 3
    assert len(sandbox.state.opens()) == 1


def test_a_pin_changed_outside_fails_once_and_flags_the_integration(world: World, sandbox: RunningSandbox) -> None:
    calls_before = locking_calls(sandbox)
    control(sandbox, f"iqs/{DEMO_IQ_ID}/pin", {})
    booking = make_booking(world)

    booking_change_status(booking=booking, status=world.paid)

    open_request = finished_request()
    # one OTP judged and rejected; a 401 before it (a token from before the sandbox's reset) is its own send
    judged = [send for send in open_request.sends.all() if send.error_kind != "token_rejected"]
    assert open_request.state == State.FAILED
    assert [(send.http_status, send.error_kind) for send in judged] == [(400, "otp_invalid")]
    assert open_request.outcome_code == "otp_invalid"
    time.sleep(0.5)
    assert locking_calls(sandbox) - calls_before == 1  # no retry
    assert sandbox.state.opens() == []
    integration = Integration.objects.get()
    assert integration.activation_state == Integration.ActivationState.NEEDS_REACTIVATION
    booking.refresh_from_db()
    assert booking.status == world.paid


def test_a_request_that_waits_past_the_freshness_limit_expires_unsent(
    world: World, sandbox: RunningSandbox, celery_worker_process: Worker, settings: Any
) -> None:
    # given: no worker serves this queue, as if the worker were stopped
    settings.OPENING_TASK_QUEUE = "opening-e2e-stopped"
    calls_before = locking_calls(sandbox)
    booking = make_booking(world)
    booking_change_status(booking=booking, status=world.paid)
    assert OpenRequest.objects.get().state == State.PENDING

    # when: the worker comes back after the freshness limit
    time.sleep(WORKER_FRESHNESS_SECONDS + 1)
    app.control.add_consumer("opening-e2e-stopped", destination=[celery_worker_process.hostname], reply=True)
    try:
        open_request = finished_request()
    finally:
        app.control.cancel_consumer("opening-e2e-stopped", destination=[celery_worker_process.hostname], reply=True)

    # then
    assert open_request.state == State.EXPIRED
    assert "never sent" in open_request.reason
    assert locking_calls(sandbox) == calls_before
    assert sandbox.state.opens() == []
