"""A worker holds an open request only while its claim is current: the fence, the lease and the sends it records.

Worker A claims a row, then stalls (a GC pause, a slow token, a frozen VM) past its lease; the sweeper hands the
row to worker B, which asks Salto's entries and may send again. A must then never send, finish, retry or hold
it. These tests play A and B in one process, with Salto mocked at the transport (respx).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import respx
import time_machine
from django.utils import timezone

from integrations.models import OpenAttempt, OpenRequest
from integrations.services import sending
from integrations.services.opening import open_request_create, open_request_perform, open_requests_sweep
from tests.fake_salto import ACCOUNT_USER_ID, ENTRIES_URL, ME_URL, OPEN_URL, TOKEN_URL, token_body, use_fake_salto
from tests.integrations.opening.builders import World, make_booking, make_world

pytestmark = pytest.mark.django_db

State = OpenRequest.State


@pytest.fixture(autouse=True)
def salto_hosts(settings: Any) -> None:
    use_fake_salto(settings)
    settings.OPEN_FRESHNESS_SECONDS = 120
    settings.OPEN_SENDING_LEASE_SECONDS = 50
    settings.OPEN_ENTRIES_POLL_SECONDS = 0.01
    settings.OPEN_ENTRIES_GRACE_SECONDS = 0.05
    settings.OPEN_CONFIRM_OPENS = False


@pytest.fixture
def salto() -> Iterator[respx.Router]:
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        router.post(TOKEN_URL, name="token").respond(200, json=token_body())
        router.get(ME_URL, name="me").respond(200, json={"id": ACCOUNT_USER_ID})
        router.get(ENTRIES_URL, name="entries").respond(200, json={"items": [], "continuation_token": None})
        yield router


@pytest.fixture
def world() -> World:
    return make_world()


def _take_over(open_request: OpenRequest) -> str:
    """What the sweeper and worker B do to a row whose lease ran out: abandon it, claim it anew."""
    now = timezone.now()
    OpenRequest.objects.filter(pk=open_request.pk).update(next_attempt_at=now - timedelta(seconds=1))
    assert OpenRequest.objects.abandon_stale(now=now, unleased_before=now, reason="worker gone") == [open_request.pk]
    token = OpenRequest.objects.claim_unconfirmed(
        open_request.pk, due_before=now, lease_until=now + timedelta(seconds=50)
    )
    assert token
    return token


def test_a_worker_whose_row_was_taken_over_does_not_send(
    world: World, salto: respx.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given worker A has claimed the row and checked the policy, and then stalls past its lease (by its own
    # clock too) until B has taken the row
    door = salto.patch(OPEN_URL).respond(200, json={})
    booking = make_booking(world, status=world.paid)
    open_request = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request
    real_send_open = sending.send_open
    taken: list[str] = []
    traveller = time_machine.travel(timezone.now(), tick=True)
    clock = traveller.start()

    def stall_then_send(request: OpenRequest, *args: Any) -> Any:
        clock.shift(51)
        taken.append(_take_over(request))
        return real_send_open(request, *args)

    monkeypatch.setattr("integrations.services.opening.send_open", stall_then_send)
    # when A wakes up and goes on
    try:
        outcome = open_request_perform(open_request_id=open_request.pk)
    finally:
        traveller.stop()
    # then nothing went out from A and nothing of B's row changed: B decides, from the entries
    assert door.call_count == 0
    assert not OpenAttempt.objects.exists()
    open_request.refresh_from_db()
    assert (open_request.state, open_request.claim_token) == (State.SENDING, taken[0])
    assert outcome.state == State.SENDING


def test_a_worker_whose_row_was_taken_over_mid_send_cannot_record_its_answer(
    world: World, salto: respx.Router, caplog: Any
) -> None:
    # given A's command is at Salto when B takes the row (A's answer comes back after its lease)
    booking = make_booking(world, status=world.paid)
    open_request = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request
    taken: list[str] = []

    def answer_after_take_over(request: Any) -> respx.MockResponse:
        taken.append(_take_over(open_request))
        return respx.MockResponse(503, text="busy")

    salto.patch(OPEN_URL).mock(side_effect=answer_after_take_over)
    # when A's answer is an unclear 503
    outcome = open_request_perform(open_request_id=open_request.pk)
    # then A records its send (it did happen) but cannot move B's row; B still holds it
    [attempt] = OpenAttempt.objects.all()
    assert (attempt.outcome, attempt.http_status) == (OpenAttempt.Outcome.UNCLEAR, 503)
    open_request.refresh_from_db()
    assert (open_request.state, open_request.claim_token) == (State.SENDING, taken[0])
    assert outcome.state == State.SENDING
    assert "no longer holds it" in caplog.text


def test_the_command_leaves_before_the_workers_lease_ends_not_only_before_freshness(world: World) -> None:
    booking = make_booking(world, status=world.paid)
    open_request = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request
    lease_end = timezone.now() + timedelta(seconds=50)
    assert sending.send_deadline(open_request, lease_end) == lease_end - timedelta(seconds=2)
    # a lease that outlasts the freshness limit leaves the freshness limit as the deadline
    assert sending.send_deadline(open_request, lease_end + timedelta(hours=1)) == sending.not_after(open_request)


def test_a_worker_that_stalls_past_its_lease_before_sending_puts_the_request_back(world: World) -> None:
    # given the token request takes longer than the worker's lease (but the request is still fresh)
    booking = make_booking(world, status=world.paid)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        open_request = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request

        def slow_token(request: Any) -> respx.MockResponse:
            traveller.shift(55)
            return respx.MockResponse(200, json=token_body())

        with respx.mock(using="httpcore2", assert_all_called=False) as router:
            router.post(TOKEN_URL).mock(side_effect=slow_token)
            door = router.patch(OPEN_URL).respond(200, json={})
            # when it is sent
            outcome = open_request_perform(open_request_id=open_request.pk)
    # then nothing went out, and the request waits for the next worker instead of expiring with time left
    assert door.call_count == 0
    assert outcome.state == State.PENDING
    open_request.refresh_from_db()
    assert (open_request.state, open_request.outcome_code) == (State.PENDING, "lease_expired")
    assert "hold on the request ran out before the command went out" in open_request.reason
    [attempt] = open_request.sends.all()
    assert attempt.outcome == OpenAttempt.Outcome.NOT_SENT


def test_a_401_and_its_re_send_are_two_attempts(world: World, salto: respx.Router) -> None:
    door = salto.patch(OPEN_URL)
    door.side_effect = [respx.MockResponse(401, text="expired"), respx.MockResponse(200, json={})]
    booking = make_booking(world, status=world.paid)
    open_request = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request

    assert open_request_perform(open_request_id=open_request.pk).state == State.OPENED

    assert door.call_count == 2
    first, second = open_request.sends.all()
    assert (first.number, first.outcome, first.http_status, first.error_kind) == (
        1,
        OpenAttempt.Outcome.REJECTED,
        401,
        "token_rejected",
    )
    assert first.answered_at is not None
    assert (second.number, second.outcome, second.http_status) == (2, OpenAttempt.Outcome.ACCEPTED, 200)
    open_request.refresh_from_db()
    assert open_request.attempts == 2


def test_the_sweeper_expiring_a_retry_in_waiting_says_it_was_sent_before(world: World, salto: respx.Router) -> None:
    # given a request that Salto answered with a 429, waiting for its retry when the freshness limit passes
    salto.patch(OPEN_URL).respond(429, headers={"Retry-After": "5"}, text="quota")
    booking = make_booking(world, status=world.paid)
    never_sent = make_booking(world, status=world.paid)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        retried = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request
        assert open_request_perform(open_request_id=retried.pk).state == State.PENDING
        lost = open_request_create(booking=never_sent, trigger=OpenRequest.Trigger.STAFF).open_request
        traveller.shift(121)
        # when the sweeper expires both
        assert open_requests_sweep().expired == 2
    retried.refresh_from_db()
    lost.refresh_from_db()
    # then the audit tells the request that went out from the one that never did
    assert retried.state == lost.state == State.EXPIRED
    assert "never sent" not in retried.reason
    assert "It was sent before without opening the door" in retried.reason
    assert "never sent" in lost.reason
