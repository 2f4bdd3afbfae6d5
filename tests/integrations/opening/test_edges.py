"""The open path at its edges, through its public functions (open_request_create, open_request_perform,
open_requests_sweep, open_request_enqueue and the perform_open task), with Salto mocked at the transport.

Every time limit is walked at its bound with a frozen clock: the dedupe window, claim-early, Retry-After against
the freshness left, the attempt cap, the worker's lease and the command's deadline, the sweeper's cut-offs. The
broker is a recording one where a countdown must be seen (`queued`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import respx
import time_machine
from celery import current_app
from django.utils import timezone
from kombu.exceptions import OperationalError

from bookings.models import Booking
from integrations.models import CachedLock, LockMapping, OpenAttempt, OpenRequest
from integrations.services.opening import (
    CONFIRM_OPEN_TASK,
    PERFORM_OPEN_TASK,
    QUEUE_DOWN_REASON,
    open_request_create,
    open_request_enqueue,
    open_request_perform,
    open_requests_sweep,
)
from integrations.services.sending import PerformOutcome
from integrations.tasks import perform_open
from tests.fake_salto import (
    ACCOUNT_USER_ID,
    ENTRIES_URL,
    LOCKS_URL,
    ME_URL,
    OPEN_URL,
    TOKEN_URL,
    entry_json,
    salto_error_response,
    token_body,
    use_fake_salto,
)
from tests.integrations.opening.builders import World, make_booking, make_world

pytestmark = pytest.mark.django_db

State = OpenRequest.State
Outcome = OpenAttempt.Outcome
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SIDE_DOOR = "00000000-0000-0000-0000-0000000051de"


@pytest.fixture(autouse=True)
def salto_hosts(settings: Any) -> None:
    use_fake_salto(settings)
    settings.OPEN_FRESHNESS_SECONDS = 120
    settings.OPEN_DEDUPE_SECONDS = 10
    settings.OPEN_SENDING_LEASE_SECONDS = 50
    settings.OPEN_ENTRIES_POLL_SECONDS = 0.01
    settings.OPEN_ENTRIES_GRACE_SECONDS = 0.05
    settings.OPEN_CONFIRM_OPENS = False
    settings.SALTO_KS_HTTP_TIMEOUT_SECONDS = 10


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


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A broker that only records: every apply_async of the opening tasks, with its options (the countdown)."""
    calls: list[dict[str, Any]] = []
    for name in (PERFORM_OPEN_TASK, CONFIRM_OPEN_TASK):

        def record(args: Any = None, kwargs: Any = None, *, _name: str = name, **options: Any) -> None:
            calls.append({"task": _name, "args": tuple(args or ()), **options})

        monkeypatch.setattr(current_app.tasks[name], "apply_async", record)
    return calls


def pending(world: World, **booking: Any) -> OpenRequest:
    result = open_request_create(booking=make_booking(world, status=world.paid, **booking), trigger="staff")
    assert result.open_request.state == State.PENDING
    return result.open_request


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rate_limited(retry_after: str | None = None) -> respx.MockResponse:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return respx.MockResponse(**salto_error_response(429, "", "quota", **headers))


# --- dedupe: the window's edge, states and locks -----------------------------------------------------------


def test_a_request_inside_the_dedupe_window_collapses_up_to_its_last_second(
    world: World, clock: time_machine.Traveller, queued: list[dict[str, Any]]
) -> None:
    # given
    booking = make_booking(world, status=world.paid)
    first = open_request_create(booking=booking, trigger="staff").open_request
    # when exactly 10 s later, then just after
    clock.move_to(at(10))
    same = open_request_create(booking=booking, trigger="api")
    clock.move_to(at(10.001))
    later = open_request_create(booking=booking, trigger="api")
    # then
    assert (same.created, same.open_request.pk) == (False, first.pk)
    assert later.created
    assert later.open_request.pk != first.pk


@pytest.mark.parametrize("state", [State.SENDING, State.UNCONFIRMED, State.OPENED])
def test_a_request_in_flight_or_opened_absorbs_an_identical_one(world: World, state: str) -> None:
    booking = make_booking(world, status=world.paid)
    first = open_request_create(booking=booking, trigger="staff").open_request
    OpenRequest.objects.filter(pk=first.pk).update(state=state)
    again = open_request_create(booking=booking, trigger="staff")
    assert (again.created, again.open_request.pk) == (False, first.pk)


@pytest.mark.parametrize("state", [State.FAILED, State.EXPIRED, State.REFUSED])
def test_a_failed_expired_or_refused_request_never_absorbs_an_allowed_one(world: World, state: str) -> None:
    booking = make_booking(world, status=world.paid)
    first = open_request_create(booking=booking, trigger="staff").open_request
    OpenRequest.objects.filter(pk=first.pk).update(state=state)
    again = open_request_create(booking=booking, trigger="staff")
    assert again.created
    assert again.open_request.state == State.PENDING


def test_a_refusal_too_early_does_not_swallow_the_allowed_request_a_moment_later(
    world: World, clock: time_machine.Traveller
) -> None:
    # given a booking whose window (15 minutes before its start) opens in 3 s
    booking = make_booking(world, status=world.paid, start=at(15 * 60 + 3))
    early = open_request_create(booking=booking, trigger="staff").open_request
    assert (early.state, early.outcome_code) == (State.REFUSED, "too_early")
    # when the guest asks again 4 s later, inside the dedupe window
    clock.move_to(at(4))
    allowed = open_request_create(booking=booking, trigger="staff")
    # then it is a new request that will open the door
    assert allowed.created
    assert allowed.open_request.state == State.PENDING


def test_identical_refusals_collapse_and_a_different_refusal_is_recorded(world: World) -> None:
    # given a booking whose status does not open
    booking = make_booking(world, status=world.new)
    first = open_request_create(booking=booking, trigger="staff").open_request
    assert (first.state, first.outcome_code) == (State.REFUSED, "status_not_allowed")
    # when the same refusal comes again, and then another one
    same = open_request_create(booking=booking, trigger="staff")
    Booking.objects.filter(pk=booking.pk).update(status=world.paid, start=timezone.now() + timedelta(hours=1))
    other = open_request_create(booking=booking, trigger="staff")
    # then
    assert (same.created, same.open_request.pk) == (False, first.pk)
    assert other.created
    assert (other.open_request.state, other.open_request.outcome_code) == (State.REFUSED, "too_early")


def test_an_open_for_another_lock_is_not_collapsed_into_one_for_the_first(world: World) -> None:
    # given a pending request for the front door, then the object is mapped to the side door
    booking = make_booking(world, status=world.paid)
    first = open_request_create(booking=booking, trigger="staff").open_request
    LockMapping.objects.filter(integration=world.integration).update(lock_id=SIDE_DOOR, lock_name="Side door")
    # when
    second = open_request_create(booking=booking, trigger="staff")
    # then
    assert second.created
    assert (first.lock_id, second.open_request.lock_id) != (SIDE_DOOR, SIDE_DOOR)
    assert second.open_request.lock_id == SIDE_DOOR


def test_a_pending_request_records_the_lock_and_is_queued_on_commit(
    world: World, clock: time_machine.Traveller, queued: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        result = open_request_create(booking=make_booking(world, status=world.paid), trigger="api")
    request = result.open_request
    assert result.created
    assert (request.state, request.reason, request.outcome_code) == (State.PENDING, "", "")
    assert (request.lock_id, request.lock_name, request.rule) == (
        world.integration.mappings.get().lock_id,
        "Front door",
        "parent",
    )
    assert request.rule_description == "Building A › Studio 2 → lock 'Front door' via parent 'Building A'"
    assert (request.trigger, request.integration_id) == ("api", world.integration.pk)
    assert (request.next_attempt_at, request.finished_at) == (T0, None)
    assert queued == [{"task": PERFORM_OPEN_TASK, "args": (request.pk,)}]


def test_a_refused_request_is_finished_at_once_and_never_queued(
    world: World, clock: time_machine.Traveller, queued: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        request = open_request_create(booking=make_booking(world, status=world.paid, obj=world.garage), trigger="api")
    refused = request.open_request
    assert (refused.state, refused.outcome_code) == (State.REFUSED, "no_mapping")
    assert refused.reason == "no lock is mapped for 'Garage' (and no wildcard)."
    assert (refused.lock_id, refused.lock_name, refused.rule, refused.rule_description) == ("", "", "", "")
    assert (refused.next_attempt_at, refused.finished_at) == (None, T0)
    assert queued == []


def test_an_assessment_of_another_booking_is_refused(world: World) -> None:
    from integrations.selectors import booking_open_assessment

    one, other = make_booking(world, status=world.paid), make_booking(world, status=world.paid)
    with pytest.raises(ValueError, match="assessment of booking"):
        open_request_create(booking=one, trigger="staff", assessment=booking_open_assessment(booking=other))


# --- the queue: recorded, with countdowns; the broker down ----------------------------------------------------


def test_a_rate_limited_send_is_queued_again_with_salto_s_retry_after_as_its_countdown(
    world: World, salto: respx.Router, queued: list[dict[str, Any]], clock: time_machine.Traveller
) -> None:
    # given
    salto.patch(OPEN_URL).mock(return_value=rate_limited("7"))
    request = pending(world)
    # when the worker runs the task
    perform_open(request.pk)
    # then the retry is a new message that waits Salto's Retry-After
    assert queued == [{"task": PERFORM_OPEN_TASK, "args": (request.pk,), "countdown": 7.0}]
    request.refresh_from_db()
    assert (request.state, request.next_attempt_at) == (State.PENDING, at(7))


def test_a_lost_answer_is_queued_again_for_the_entries_after_the_poll_interval(
    world: World, salto: respx.Router, queued: list[dict[str, Any]]
) -> None:
    salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    request = pending(world)
    perform_open(request.pk)
    assert queued == [{"task": PERFORM_OPEN_TASK, "args": (request.pk,), "countdown": 0.01}]


def test_a_clean_open_queues_its_confirmation_after_the_poll_interval(
    world: World, salto: respx.Router, queued: list[dict[str, Any]], settings: Any
) -> None:
    settings.OPEN_CONFIRM_OPENS = True
    salto.patch(OPEN_URL).respond(200, json={})
    request = pending(world)
    perform_open(request.pk)
    assert queued == [{"task": CONFIRM_OPEN_TASK, "args": (request.pk,), "countdown": 0.01}]


def test_a_clean_open_without_confirmations_queues_nothing(
    world: World, salto: respx.Router, queued: list[dict[str, Any]]
) -> None:
    salto.patch(OPEN_URL).respond(200, json={})
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.OPENED)
    perform_open(request.pk)
    assert queued == []


@pytest.mark.parametrize("failure", [OperationalError("broker down"), OSError("connection refused")])
def test_with_the_broker_down_the_request_is_kept_and_says_it_waits(
    world: World, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    # given
    request = pending(world)
    finished = pending(world)
    OpenRequest.objects.filter(pk=finished.pk).update(state=State.OPENED)

    def down(*args: Any, **kwargs: Any) -> None:
        raise failure

    monkeypatch.setattr(current_app.tasks[PERFORM_OPEN_TASK], "apply_async", down)
    # when
    assert open_request_enqueue(open_request_id=request.pk) is False
    assert open_request_enqueue(open_request_id=finished.pk) is False
    # then only the pending row says why it waits
    request.refresh_from_db()
    finished.refresh_from_db()
    assert (request.state, request.reason) == (State.PENDING, QUEUE_DOWN_REASON)
    assert finished.reason == ""


def test_with_the_broker_up_the_request_is_queued(world: World, queued: list[dict[str, Any]]) -> None:
    request = pending(world)
    assert open_request_enqueue(open_request_id=request.pk) is True
    assert queued == [{"task": PERFORM_OPEN_TASK, "args": (request.pk,)}]


# --- claim-early and Retry-After against the freshness left ---------------------------------------------------


def test_a_retry_is_claimed_from_half_a_second_before_it_is_due(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given a request waiting out Salto's Retry-After of 7 s
    route = salto.patch(OPEN_URL)
    route.side_effect = [rate_limited("7"), respx.MockResponse(200, json={})]
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.PENDING, retry_in=7.0)
    # when a message arrives 6.49 s later: not yet
    clock.move_to(at(6.49))
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.PENDING)
    assert route.call_count == 1
    # and at 6.5 s (Celery's countdown and this clock may differ by that much): sent
    clock.move_to(at(6.5))
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    assert route.call_count == 2


@pytest.mark.parametrize(("retry_after", "state"), [("119", State.PENDING), ("119.001", State.FAILED)])
def test_a_retry_after_is_honoured_only_up_to_a_second_before_the_freshness_limit(
    world: World, salto: respx.Router, clock: time_machine.Traveller, retry_after: str, state: str
) -> None:
    # given a fresh request (120 s) that Salto asks to come back after RETRY_AFTER
    salto.patch(OPEN_URL).mock(return_value=rate_limited(retry_after))
    request = pending(world)
    # when
    outcome = open_request_perform(open_request_id=request.pk)
    # then
    request.refresh_from_db()
    assert (outcome.state, request.state) == (state, state)
    if state == State.PENDING:
        assert (outcome.retry_in, request.next_attempt_at) == (119.0, at(119))
        assert request.reason.startswith("Attempt 1 failed (Salto KS is rate limiting")
        assert request.reason.endswith("; retrying in 119.0 s.")
    else:
        assert outcome.retry_in is None
        assert request.reason.startswith("Salto KS stayed unavailable (Salto KS is rate limiting")
        assert (request.outcome_code, request.salto_http_status) == ("rate_limited", 429)


def test_the_backoff_doubles_from_one_second_with_half_to_full_jitter(
    world: World, salto: respx.Router, clock: time_machine.Traveller, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    salto.patch(OPEN_URL).mock(return_value=rate_limited())
    for jitter, steps in ((1.0, [1.0, 2.0, 4.0, 8.0, 16.0]), (0.0, [0.5, 1.0, 2.0, 4.0, 8.0])):
        monkeypatch.setattr(random, "random", lambda jitter=jitter: jitter)
        request = pending(world)
        delays = []
        for _ in range(5):
            outcome = open_request_perform(open_request_id=request.pk)
            assert outcome.retry_in is not None
            delays.append(outcome.retry_in)
            clock.shift(outcome.retry_in)
        assert delays == steps
        OpenRequest.objects.filter(pk=request.pk).update(state=State.FAILED)


# --- the attempt cap ---------------------------------------------------------------------------------------


def test_a_request_salto_keeps_refusing_is_sent_six_times_then_fails(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given Salto rate-limits every send (no Retry-After: the backoff stays well inside the freshness limit)
    route = salto.patch(OPEN_URL).mock(return_value=rate_limited())
    request = pending(world)
    # when every retry is delivered on time
    states = []
    for _ in range(10):
        outcome = open_request_perform(open_request_id=request.pk)
        states.append(outcome.state)
        if outcome.retry_in is None:
            break
        clock.shift(outcome.retry_in)
    # then it was sent exactly MAX_ATTEMPTS (6) times
    assert states == [State.PENDING] * 5 + [State.FAILED]
    assert route.call_count == 6
    assert list(request.sends.values_list("number", "outcome")) == [(n, Outcome.REJECTED) for n in range(1, 7)]
    request.refresh_from_db()
    assert request.reason.startswith("Salto KS stayed unavailable")


def test_a_request_whose_answers_keep_getting_lost_is_sent_six_times_in_all(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given every send times out (it may have reached Salto) and the entries never show an open
    route = salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    request = pending(world)
    # when it is checked after each grace period
    for _ in range(20):
        outcome = open_request_perform(open_request_id=request.pk)
        if outcome.retry_in is None:
            break
        clock.shift(0.06)
    # then it was sent six times, and not again
    assert outcome.state == State.FAILED
    assert route.call_count == 6
    request.refresh_from_db()
    assert request.outcome_code == "not_opened"
    assert request.reason.startswith("Not opened: Salto's entries show no open of lock 'Front door' within ")


# --- the lease and the command's deadline -------------------------------------------------------------------


@pytest.mark.parametrize(("token_takes", "sent"), [(47.5, True), (48.5, False)])
def test_the_command_must_leave_two_seconds_before_the_workers_lease_ends(
    world: World, clock: time_machine.Traveller, token_takes: float, sent: bool
) -> None:
    # given a 50 s lease, and a token request that takes TOKEN_TAKES
    request = pending(world)
    leases = []

    def slow_token(http_request: Any) -> respx.MockResponse:
        leases.append(OpenRequest.objects.values_list("next_attempt_at", flat=True).get(pk=request.pk))
        clock.shift(token_takes)
        return respx.MockResponse(200, json=token_body())

    timeouts: list[dict[str, float]] = []

    def door(http_request: Any) -> respx.MockResponse:
        timeouts.append(http_request.extensions["timeout"])
        return respx.MockResponse(200, json={})

    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(side_effect=slow_token)
        route = router.patch(OPEN_URL).mock(side_effect=door)
        # when
        outcome = open_request_perform(open_request_id=request.pk)
    # then the worker held the row for a full lease, and the command left before it ran out, or not at all
    assert leases == [at(50)]
    assert route.call_count == (1 if sent else 0)
    request.refresh_from_db()
    if sent:
        assert outcome.state == State.OPENED
        assert all(0 < t <= 0.5 for t in timeouts[0].values())
    else:
        # still fresh: back in the queue at once for the next worker
        assert outcome == PerformOutcome(State.PENDING, retry_in=0.0)
        assert (request.state, request.outcome_code, request.next_attempt_at) == (
            State.PENDING,
            "lease_expired",
            at(48.5),
        )


def test_each_call_gets_the_http_timeout_or_what_freshness_is_left_but_at_least_a_second(
    world: World, clock: time_machine.Traveller
) -> None:
    seen: dict[str, list[dict[str, float]]] = {"token": [], "open": []}

    def record(name: str, answer: respx.MockResponse) -> Any:
        def side_effect(http_request: Any) -> respx.MockResponse:
            seen[name].append(http_request.extensions["timeout"])
            return answer

        return side_effect

    early, late = pending(world), pending(world, obj=world.building)
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(side_effect=record("token", respx.MockResponse(200, json=token_body())))
        router.patch(OPEN_URL).mock(side_effect=record("open", respx.MockResponse(200, json={})))
        # when one request is sent at once, and one with half a second of freshness left
        assert open_request_perform(open_request_id=early.pk).state == State.OPENED
        from django.core.cache import cache

        cache.clear()  # a token request for the second one too
        clock.move_to(at(119.5))
        assert open_request_perform(open_request_id=late.pk).state == State.OPENED
    # then the first had the HTTP timeout; the second's token request still a second, its command only what was left
    assert (seen["token"][0]["read"], seen["token"][0]["connect"]) == (10.0, 5.0)
    assert seen["open"][0]["read"] == 10.0
    assert (seen["token"][1]["read"], seen["token"][1]["connect"]) == (1.0, 1.0)
    assert all(0 < t <= 0.5 for t in seen["open"][1].values())


# --- the internal-error branch -------------------------------------------------------------------------------


def _break_the_policy(booking_id: int) -> None:
    # A booking at the start of year 1: its window (15 minutes before) cannot be computed. A stand-in for any
    # bug or database error inside the worker, without patching the code under test.
    Booking.objects.filter(pk=booking_id).update(
        start=datetime(1, 1, 1, tzinfo=UTC), end=datetime(1, 1, 1, 2, tzinfo=UTC)
    )


def test_an_unexpected_error_before_anything_was_sent_fails_the_request_with_the_reason(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    route = salto.patch(OPEN_URL).respond(200, json={})
    request = pending(world)
    _break_the_policy(request.booking_id)
    # when
    outcome = open_request_perform(open_request_id=request.pk)
    # then
    assert outcome == PerformOutcome(State.FAILED)
    assert route.call_count == 0
    request.refresh_from_db()
    assert (request.state, request.outcome_code, request.finished_at) == (State.FAILED, "internal_error", T0)
    assert request.reason == "Internal error while opening (OverflowError); see the worker log."


def test_an_unexpected_error_after_sends_that_were_refused_fails_without_doubt(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    route = salto.patch(OPEN_URL).mock(return_value=rate_limited("1"))
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk).state == State.PENDING
    _break_the_policy(request.booking_id)
    clock.shift(1)
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.FAILED)
    assert route.call_count == 1
    request.refresh_from_db()
    assert request.reason == "Internal error while opening (OverflowError); see the worker log."


def test_an_unexpected_error_after_a_send_that_may_have_opened_asks_the_entries(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given a send whose answer was lost, then a fault when it would be sent again
    route = salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    _break_the_policy(request.booking_id)
    clock.shift(0.06)
    # when
    outcome = open_request_perform(open_request_id=request.pk)
    # then the door may have opened: the entries decide, nothing is sent blindly and nothing says "failed"
    assert outcome == PerformOutcome(State.UNCONFIRMED, retry_in=0.01)
    assert route.call_count == 1
    request.refresh_from_db()
    assert (request.state, request.outcome_code) == (State.UNCONFIRMED, "internal_error")
    assert request.reason == "Internal error (OverflowError); checking Salto's entries."


# --- what a redelivered or unknown message finds ---------------------------------------------------------------


def test_a_message_for_a_request_that_does_not_exist_stops(world: World) -> None:
    assert open_request_perform(open_request_id=987654) == PerformOutcome("missing")


def test_a_stale_request_expires_at_the_freshness_limit_and_not_a_moment_before(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    route = salto.patch(OPEN_URL).respond(200, json={})
    kept, stale = pending(world), pending(world, obj=world.building)
    clock.move_to(at(120.001))
    assert open_request_perform(open_request_id=stale.pk) == PerformOutcome(State.EXPIRED)
    clock.move_to(at(119))
    assert open_request_perform(open_request_id=kept.pk).state == State.OPENED
    assert route.call_count == 1


# --- the mapping changed between the request and the send ---------------------------------------------------------


def test_the_lock_mapped_at_send_time_is_the_one_opened_and_the_request_says_so(
    world: World, salto: respx.Router
) -> None:
    # given a request for the front door, then the building is mapped to the side door
    request = pending(world)
    LockMapping.objects.filter(integration=world.integration).update(lock_id=SIDE_DOOR, lock_name="Side door")
    CachedLock.objects.create(
        integration=world.integration, lock_id=SIDE_DOOR, name="Side door", refreshed_at=timezone.now()
    )
    front = salto.patch(OPEN_URL).respond(200, json={})
    side = salto.patch(f"{LOCKS_URL}/{SIDE_DOOR}/locking").respond(200, json={})
    # when
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    # then
    assert (front.call_count, side.call_count) == (0, 1)
    request.refresh_from_db()
    assert (request.lock_id, request.lock_name) == (SIDE_DOOR, "Side door")
    assert request.rule_description == "Building A › Studio 2 → lock 'Side door' via parent 'Building A'"


# --- the sweeper's cut-offs --------------------------------------------------------------------------------------


def _row(world: World, *, age: float, state: str, next_attempt: float | None) -> OpenRequest:
    """An open request created AGE seconds before T0, due (or leased) at T0 + NEXT_ATTEMPT."""
    booking = make_booking(world, status=world.paid)
    with time_machine.travel(at(-age), tick=False):
        return OpenRequest.objects.create(
            booking=booking,
            integration=world.integration,
            lock_id=world.integration.mappings.get().lock_id,
            trigger="staff",
            state=state,
            next_attempt_at=None if next_attempt is None else at(next_attempt),
        )


def test_the_sweeper_requeues_a_pending_request_only_once_its_message_is_five_seconds_overdue(
    world: World, queued: list[dict[str, Any]], clock: time_machine.Traveller
) -> None:
    rows = {
        "overdue": _row(world, age=30, state=State.PENDING, next_attempt=-5.5),
        "in-flight": _row(world, age=30, state=State.PENDING, next_attempt=-4.5),
        "at-the-grace": _row(world, age=30, state=State.PENDING, next_attempt=-5),
        "never-due": _row(world, age=30, state=State.PENDING, next_attempt=None),
        "unconfirmed": _row(world, age=300, state=State.UNCONFIRMED, next_attempt=-6),
        "unconfirmed-soon": _row(world, age=300, state=State.UNCONFIRMED, next_attempt=-1),
    }
    # when
    result = open_requests_sweep()
    # then
    requeued = {rows["overdue"].pk, rows["never-due"].pk, rows["unconfirmed"].pk}
    assert set(result.requeued) == requeued
    assert {c["args"][0] for c in queued} == requeued
    due = dict(OpenRequest.objects.values_list("pk", "next_attempt_at"))
    assert {pk for pk in due if due[pk] == T0} == requeued
    assert due[rows["in-flight"].pk] == at(-4.5)


def test_the_sweeper_expires_pending_requests_past_the_freshness_limit_only(
    world: World, queued: list[dict[str, Any]], clock: time_machine.Traveller
) -> None:
    stale = _row(world, age=120.001, state=State.PENDING, next_attempt=-100)
    limit = _row(world, age=120, state=State.PENDING, next_attempt=-100)
    result = open_requests_sweep()
    assert result.expired == 1
    states = dict(OpenRequest.objects.values_list("pk", "state"))
    assert (states[stale.pk], states[limit.pk]) == (State.EXPIRED, State.PENDING)
    assert result.requeued == [limit.pk]


def test_the_sweeper_takes_back_a_send_whose_lease_ran_out_and_only_that(
    world: World, queued: list[dict[str, Any]], clock: time_machine.Traveller
) -> None:
    rows = {
        "lapsed": _row(world, age=60, state=State.SENDING, next_attempt=-0.001),
        "at-its-end": _row(world, age=60, state=State.SENDING, next_attempt=0),
        "leased": _row(world, age=60, state=State.SENDING, next_attempt=30),
        # without a lease (claimed by an older version): abandoned once older than freshness + lease (170 s)
        "unleased-old": _row(world, age=170.001, state=State.SENDING, next_attempt=None),
        "unleased-at-the-limit": _row(world, age=170, state=State.SENDING, next_attempt=None),
        "unleased-young": _row(world, age=100, state=State.SENDING, next_attempt=None),
    }
    result = open_requests_sweep()
    taken = {rows["lapsed"].pk, rows["unleased-old"].pk}
    assert result.abandoned == 2
    assert set(result.requeued) == taken
    states = dict(OpenRequest.objects.values_list("pk", "state"))
    assert {pk for pk, state in states.items() if state == State.UNCONFIRMED} == taken


def test_the_sweeper_does_not_count_what_it_could_not_queue(
    world: World, monkeypatch: pytest.MonkeyPatch, clock: time_machine.Traveller
) -> None:
    _row(world, age=30, state=State.PENDING, next_attempt=-10)

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("broker down")

    monkeypatch.setattr(current_app.tasks[PERFORM_OPEN_TASK], "apply_async", down)
    assert open_requests_sweep().requeued == []


def test_the_sweeper_says_what_it_did_and_is_quiet_when_it_did_nothing(
    world: World, queued: list[dict[str, Any]], clock: time_machine.Traveller, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="integrations.services.opening")
    open_requests_sweep()
    assert "Open sweep" not in caplog.text
    for state, age in ((State.PENDING, 121), (State.PENDING, 30), (State.SENDING, 200)):
        _row(world, age=age, state=state, next_attempt=None)
    open_requests_sweep()
    assert "Open sweep: 1 expired, 2 re-queued, 1 abandoned" in caplog.text


def _opened(world: World, *, finished: float) -> OpenRequest:
    row = _row(world, age=-finished + 1, state=State.OPENED, next_attempt=None)
    OpenRequest.objects.filter(pk=row.pk).update(finished_at=at(finished))
    return row


def test_the_sweeper_asks_again_for_confirmations_lost_after_the_grace_and_two_polls_within_the_hour(
    world: World, queued: list[dict[str, Any]], clock: time_machine.Traveller, settings: Any
) -> None:
    settings.OPEN_CONFIRM_OPENS = True
    settings.OPEN_ENTRIES_GRACE_SECONDS = 20
    settings.OPEN_ENTRIES_POLL_SECONDS = 3
    # waited: 20 + 2 × 3 = 26 s after the open, and no longer than an hour
    rows = {
        "lost": _opened(world, finished=-26.001),
        "still-coming": _opened(world, finished=-26),
        "an-hour-ago": _opened(world, finished=-3600),
        "older": _opened(world, finished=-3600.001),
    }
    confirmed = _opened(world, finished=-100)
    OpenRequest.objects.filter(pk=confirmed.pk).update(confirmation="confirmed")
    orphan = _opened(world, finished=-100)
    OpenRequest.objects.filter(pk=orphan.pk).update(integration=None)
    # when
    open_requests_sweep()
    # then
    asked = sorted(c["args"][0] for c in queued if c["task"] == CONFIRM_OPEN_TASK)
    assert asked == sorted([rows["lost"].pk, rows["an-hour-ago"].pk])


def test_the_sweeper_asks_for_at_most_100_confirmations_at_a_time(
    world: World, queued: list[dict[str, Any]], clock: time_machine.Traveller, settings: Any
) -> None:
    settings.OPEN_CONFIRM_OPENS = True
    booking = make_booking(world, status=world.paid)
    OpenRequest.objects.bulk_create(
        OpenRequest(
            booking=booking, integration=world.integration, trigger="staff", state=State.OPENED, finished_at=at(-600)
        )
        for _ in range(101)
    )
    open_requests_sweep()
    assert len([c for c in queued if c["task"] == CONFIRM_OPEN_TASK]) == 100


def test_the_sweeper_stops_asking_for_confirmations_when_the_broker_is_down(
    world: World, monkeypatch: pytest.MonkeyPatch, clock: time_machine.Traveller, settings: Any
) -> None:
    settings.OPEN_CONFIRM_OPENS = True
    _opened(world, finished=-600)
    _opened(world, finished=-600)
    tried: list[Any] = []

    def down(*args: Any, **kwargs: Any) -> None:
        tried.append(args)
        raise OSError("connection refused")

    monkeypatch.setattr(current_app.tasks[CONFIRM_OPEN_TASK], "apply_async", down)
    # when / then: no crash, and one failed publish is enough to stop
    assert open_requests_sweep().requeued == []
    assert len(tried) == 1


# --- what a send records ------------------------------------------------------------------------------------------


def test_salto_s_error_code_is_kept_to_its_first_20_characters(world: World, salto: respx.Router) -> None:
    code = "E" * 20 + "-tail"
    salto.patch(OPEN_URL).respond(409, json={"ErrorCode": code, "Message": "refused"})
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.FAILED)
    request.refresh_from_db()
    [send] = request.sends.all()
    assert request.salto_error_code == send.salto_error_code == "E" * 20
    # how long the send took, in milliseconds of this worker's clock
    assert send.duration_ms is not None
    assert request.duration_ms is not None
    assert 0 <= send.duration_ms < 5000
    assert 0 <= request.duration_ms < 5000
    assert (request.salto_http_status, request.salto_message, request.outcome_code) == (409, "refused", "permanent")


def test_a_rejected_account_fails_quietly_for_the_worker_that_holds_the_request(world: World, caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="integrations.services.sending")
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(400, json={"error": "invalid_client"})
        request = pending(world)
        assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.FAILED)
    request.refresh_from_db()
    assert (request.state, request.outcome_code) == (State.FAILED, "auth_invalid_client")
    # the token request failed: the command itself never went out
    assert list(request.sends.values_list("outcome", flat=True)) == [Outcome.NOT_SENT]
    # it finished the request itself: nothing about a lost hold
    assert "no longer holds it" not in caplog.text


def test_what_the_worker_is_told_cannot_be_changed_on_the_way() -> None:
    import dataclasses

    outcome = PerformOutcome(State.PENDING, retry_in=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.retry_in = 0.0  # type: ignore[misc]


def test_an_unexpected_error_ten_minutes_past_freshness_fails_and_says_the_open_is_unknown(
    world: World, salto: respx.Router, clock: time_machine.Traveller, settings: Any
) -> None:
    # given a lost answer, and Salto's entries holding an open dated 9999-12-31 (which this server's time zone,
    # 14 hours ahead, cannot show: a stand-in for any fault while the entries are read)
    settings.TIME_ZONE = "Pacific/Kiritimati"
    salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    salto["entries"].respond(
        200,
        json={"items": [entry_json("odd", at="9999-12-31T23:59:59.000000Z")], "continuation_token": None},
    )
    # when it fails up to ten minutes past the freshness limit: the entries are asked again
    clock.move_to(at(120 + 599.999))
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.UNCONFIRMED, retry_in=0.01)
    # and from then on: failed, saying whether the door opened is unknown
    clock.move_to(at(120 + 600))
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.FAILED)
    request.refresh_from_db()
    assert (request.state, request.outcome_code) == (State.FAILED, "internal_error")
    assert request.reason == (
        "Internal error while opening (OverflowError); see the worker log. Whether the door opened is unknown; "
        "check the lock's entries."
    )


def test_the_results_of_create_and_sweep_cannot_be_changed_on_the_way(world: World) -> None:
    import dataclasses

    result = open_request_create(booking=make_booking(world, status=world.paid), trigger="staff")
    sweep = open_requests_sweep()
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.created = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sweep.expired = 1  # type: ignore[misc]


def test_an_open_recorded_too_late_says_loudly_what_the_request_had_become(
    world: World, salto: respx.Router, caplog: Any
) -> None:
    # given the request is closed by someone else while Salto opens the door
    request = pending(world)

    def closed_meanwhile(http_request: Any) -> respx.MockResponse:
        OpenRequest.objects.filter(pk=request.pk).update(state=State.EXPIRED)
        return respx.MockResponse(200, json={})

    salto.patch(OPEN_URL).mock(side_effect=closed_meanwhile)
    caplog.set_level(logging.ERROR, logger="integrations.services.sending")
    # when
    outcome = open_request_perform(open_request_id=request.pk)
    # then
    assert outcome == PerformOutcome(State.EXPIRED)
    assert "WAS opened, but the request had already been closed as expired" in caplog.text


@pytest.mark.parametrize(
    ("rows", "line"),
    [
        ([(State.PENDING, 30)], "Open sweep: 0 expired, 1 re-queued, 0 abandoned"),
        ([(State.PENDING, 121)], "Open sweep: 1 expired, 0 re-queued, 0 abandoned"),
        ([(State.SENDING, 200)], "Open sweep: 0 expired, 1 re-queued, 1 abandoned"),
    ],
    ids=["requeued", "expired", "abandoned"],
)
def test_the_sweeper_says_so_when_it_did_any_one_thing(
    world: World,
    queued: list[dict[str, Any]],
    clock: time_machine.Traveller,
    caplog: Any,
    rows: list[tuple[str, float]],
    line: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="integrations.services.opening")
    for state, age in rows:
        _row(world, age=age, state=state, next_attempt=None)
    open_requests_sweep()
    assert line in caplog.text


def test_each_new_request_is_logged_with_its_state_and_a_refusal_with_its_reason(world: World, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="integrations.services.opening")
    allowed = open_request_create(booking=make_booking(world, status=world.paid), trigger="staff").open_request
    refused = open_request_create(booking=make_booking(world, status=world.new), trigger="api").open_request
    assert f"Open request {allowed.pk} for booking {allowed.booking_id} (staff): pending\n" in caplog.text + "\n"
    assert f"Open request {refused.pk} for booking {refused.booking_id} (api): refused - status '" in caplog.text
    assert "' does not allow opening.\n" in caplog.text


def test_a_request_not_sent_again_gives_the_open_s_time_in_local_time_whatever_salto_s_offset(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    # an open of the lock 10 s later, written with a +01:00 offset
    salto["entries"].respond(
        200, json={"items": [entry_json("other", at="2026-11-25T13:00:10+01:00")], "continuation_token": None}
    )
    clock.move_to(at(20))
    assert open_request_perform(open_request_id=request.pk).state == State.FAILED
    request.refresh_from_db()
    assert f" at {timezone.localtime(at(10)):%H:%M:%S} that may be this request's" in request.reason


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_the_request_returned_already_says_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Committed for real (no test transaction around it), so the enqueue runs as the request's commit ends.
    world = make_world()

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("broker down")

    monkeypatch.setattr(current_app.tasks[PERFORM_OPEN_TASK], "apply_async", down)
    result = open_request_create(booking=make_booking(world, status=world.paid), trigger="api")
    assert (result.open_request.state, result.open_request.reason) == (State.PENDING, QUEUE_DOWN_REASON)


def test_an_open_without_a_check_in_status_still_saves_the_last_open_time(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    from bookings.models import BookingFieldValue
    from integrations.models import Integration

    Integration.objects.filter(pk=world.integration.pk).update(checkin_status=None)
    salto.patch(OPEN_URL).respond(200, json={})
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    value = BookingFieldValue.objects.get(booking_id=request.booking_id, field=world.last_open)
    assert value.datetime_value == T0
    assert Booking.objects.get(pk=request.booking_id).status_id == world.paid.pk


def test_a_send_s_duration_is_its_milliseconds(world: World, salto: respx.Router) -> None:
    import time

    def slow(http_request: Any) -> respx.MockResponse:
        time.sleep(0.25)
        return respx.MockResponse(200, json={})

    salto.patch(OPEN_URL).mock(side_effect=slow)
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    request.refresh_from_db()
    [send] = request.sends.all()
    assert send.duration_ms is not None
    assert request.duration_ms is not None
    assert 250 <= send.duration_ms < 5000
    assert 250 <= request.duration_ms < 5000


def test_a_lost_answer_is_checked_again_after_the_poll_interval(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.UNCONFIRMED, retry_in=0.01)
    request.refresh_from_db()
    assert (request.state, request.next_attempt_at) == (State.UNCONFIRMED, at(0.01))


def test_opens_and_refusals_are_logged_as_information_and_failures_as_warnings(
    world: World, salto: respx.Router, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="integrations.services.sending")
    salto.patch(OPEN_URL).respond(200, json={})
    request = pending(world)
    open_request_perform(open_request_id=request.pk)
    opened = [r for r in caplog.records if r.getMessage() == f"Open request {request.pk} opened: opened"]
    assert [r.levelno for r in opened] == [logging.INFO]
    salto.patch(OPEN_URL).respond(409, json={"ErrorCode": "1", "Message": "no"})
    failing = pending(world, obj=world.building)
    open_request_perform(open_request_id=failing.pk)
    failed = [r for r in caplog.records if r.getMessage().startswith(f"Open request {failing.pk} failed: ")]
    assert [r.levelno for r in failed] == [logging.WARNING]


def test_a_token_salto_rejects_twice_is_two_rejected_sends(world: World, salto: respx.Router) -> None:
    salto.patch(OPEN_URL).respond(401, text="expired")
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.FAILED)
    assert list(request.sends.values_list("outcome", flat=True)) == [Outcome.REJECTED, Outcome.REJECTED]


def test_an_unexpected_error_in_the_middle_of_a_send_leaves_it_to_the_entries(
    world: World, salto: respx.Router
) -> None:
    salto.patch(OPEN_URL).mock(side_effect=RuntimeError("a bug below the client"))
    request = pending(world)
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.UNCONFIRMED, retry_in=0.01)
    request.refresh_from_db()
    assert (request.state, request.outcome_code) == (State.UNCONFIRMED, "internal_error")
    assert request.reason == "Internal error while sending (RuntimeError); checking Salto's entries."
    [send] = request.sends.all()
    assert (send.outcome, send.error_kind) == (Outcome.UNCLEAR, "internal_error")
