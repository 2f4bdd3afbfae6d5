"""Salto's entries at their edges: each send's window (accepted, lost), which entries count, Salto's clock offset,
the look-back of the query, the grace and give-up limits of a confirmation, and entries that cannot be read.

Through open_request_perform (an unconfirmed request settled by its entries) and open_request_confirm (an opened
one checked afterwards), with Salto mocked at the transport and a frozen clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx2
import pytest
import respx
import time_machine

from integrations.models import Integration, OpenRequest
from integrations.services.confirming import open_request_confirm
from integrations.services.opening import open_request_create, open_request_perform
from integrations.services.sending import PerformOutcome
from tests.fake_salto import (
    ACCOUNT_USER_ID,
    ENTRIES_URL,
    ME_URL,
    OPEN_URL,
    TOKEN_URL,
    entry_json,
    token_body,
    use_fake_salto,
)
from tests.integrations.opening.builders import World, make_booking, make_world

pytestmark = pytest.mark.django_db

State = OpenRequest.State
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GRACE = 0.05


@pytest.fixture(autouse=True)
def salto_hosts(settings: Any) -> None:
    use_fake_salto(settings)
    settings.OPEN_FRESHNESS_SECONDS = 120
    settings.OPEN_DEDUPE_SECONDS = 0
    settings.OPEN_SENDING_LEASE_SECONDS = 50
    settings.OPEN_ENTRIES_POLL_SECONDS = 0.01
    settings.OPEN_ENTRIES_GRACE_SECONDS = GRACE
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


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entries(salto: respx.Router, *items: dict[str, Any]) -> None:
    salto["entries"].respond(200, json={"items": list(items), "continuation_token": None})


def opened(world: World, salto: respx.Router) -> OpenRequest:
    """A request whose send Salto accepted at T0."""
    salto.patch(OPEN_URL).respond(200, json={})
    request = open_request_create(booking=make_booking(world, status=world.paid), trigger="staff").open_request
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    return request


def lost(world: World, salto: respx.Router) -> OpenRequest:
    """A request whose send at T0 timed out (it may have opened the door)."""
    salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    request = open_request_create(booking=make_booking(world, status=world.paid), trigger="staff").open_request
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    return request


def confirmation(request: OpenRequest) -> tuple[str, list[str]]:
    request.refresh_from_db()
    return request.confirmation, request.salto_entry_ids


# --- the window of an accepted send: 3 s either side of it ------------------------------------------------------


@pytest.mark.parametrize(
    ("entry_at", "expected"),
    [(-3, "confirmed"), (3, "confirmed"), (-3.001, "no_record"), (3.001, "no_record")],
    ids=["3-s-before", "3-s-after", "just-before", "just-after"],
)
def test_an_accepted_send_owns_the_entries_within_3_seconds_of_it(
    world: World, salto: respx.Router, clock: time_machine.Traveller, entry_at: float, expected: str
) -> None:
    request = opened(world, salto)
    entries(salto, entry_json("e-1", at=iso(at(entry_at))))
    clock.move_to(at(GRACE))
    assert open_request_confirm(open_request_id=request.pk) is None
    assert confirmation(request) == ((expected, ["e-1"]) if expected == "confirmed" else (expected, []))


# --- the window of a lost answer: until the grace period after it was given up on ---------------------------------


@pytest.mark.parametrize(
    ("entry_at", "state"),
    [(3 + GRACE, State.OPENED), (-3, State.OPENED), (3 + GRACE + 0.001, State.FAILED)],
    ids=["end-of-grace", "3-s-before", "after-the-grace"],
)
def test_a_lost_answer_owns_the_entries_until_the_grace_period_after_it(
    world: World, salto: respx.Router, clock: time_machine.Traveller, entry_at: float, state: str
) -> None:
    request = lost(world, salto)
    entries(salto, entry_json("e-1", at=iso(at(entry_at))))
    clock.move_to(at(3.1))
    outcome = open_request_perform(open_request_id=request.pk)
    # inside its window the open is this request's; just outside, it may still be (nobody's send explains it), so
    # it is never sent again
    assert outcome.state == state
    request.refresh_from_db()
    if state == State.OPENED:
        assert (request.confirmation, request.salto_entry_ids) == ("confirmed", ["e-1"])
        assert request.reason.startswith("Confirmed by Salto's entries at ")
        assert request.reason.endswith(": the lock opened (the answer to the send was lost).")
    else:
        assert request.reason.startswith("Not sent again: Salto's entries show an open of lock 'Front door' at ")


def test_an_entry_before_this_requests_first_send_is_not_its_own_and_does_not_stop_a_second_send(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given an open of the lock 3.5 s before this request's lost send (someone else's, before it was sent)
    request = lost(world, salto)
    entries(salto, entry_json("earlier", at=iso(at(-3.5))))
    door = salto.patch(OPEN_URL).respond(200, json={})
    clock.move_to(at(GRACE))
    # when the grace period is over
    outcome = open_request_perform(open_request_id=request.pk)
    # then it is sent again: that open cannot be this request's
    assert outcome.state == State.OPENED
    assert door.call_count == 2  # the lost send and this one


# --- which entries count -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "counts"),
    [
        ({}, True),
        ({"access_by": None}, True),
        ({"user_id": None}, True),
        ({"user_id": "someone-else"}, False),
        ({"access_by": "key"}, False),
        ({"event_category": "lock_closed"}, False),
        ({"lock_id": "another-lock"}, False),
    ],
    ids=["remote", "no-access-by", "no-user-id", "other-user", "by-key", "not-an-open", "other-lock"],
)
def test_only_remote_opens_by_this_account_count(
    world: World, salto: respx.Router, clock: time_machine.Traveller, changes: dict[str, Any], counts: bool
) -> None:
    request = opened(world, salto)
    entries(salto, {**entry_json("e-1", at=iso(T0)), **changes})
    clock.move_to(at(GRACE))
    open_request_confirm(open_request_id=request.pk)
    assert confirmation(request) == (("confirmed", ["e-1"]) if counts else ("no_record", []))


def test_every_entry_counts_when_the_account_has_no_user_id(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    salto["me"].respond(200, json={"id": ""})
    request = opened(world, salto)
    entries(salto, entry_json("e-1", at=iso(T0), user_id="someone-else"))
    clock.move_to(at(GRACE))
    open_request_confirm(open_request_id=request.pk)
    assert confirmation(request) == ("confirmed", ["e-1"])


def test_the_accounts_user_id_is_remembered_on_the_integration(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    Integration.objects.filter(pk=world.integration.pk).update(salto_user_id="an-old-id")
    request = opened(world, salto)
    clock.move_to(at(GRACE))
    open_request_confirm(open_request_id=request.pk)
    assert Integration.objects.get(pk=world.integration.pk).salto_user_id == ACCOUNT_USER_ID


# --- Salto's clock and the query ---------------------------------------------------------------------------------


def test_entries_are_asked_from_two_minutes_before_the_first_send_in_salto_s_time(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given Salto's clock is 5 minutes ahead (its Date header), and its entry of the open in its own time
    salto["me"].respond(200, json={"id": ACCOUNT_USER_ID}, headers={"Date": format_datetime(at(300), usegmt=True)})
    request = opened(world, salto)
    entries(salto, entry_json("e-1", at=iso(at(300))))
    clock.move_to(at(GRACE))
    # when
    open_request_confirm(open_request_id=request.pk)
    # then the entry is the open, and the entries were asked since (first send - 2 × 60 s) at Salto's time
    assert confirmation(request) == ("confirmed", ["e-1"])
    query = salto["entries"].calls.last.request.url.params["$filter"]
    assert "utc_date_time ge DateTime'2026-11-25T12:03:00Z'" in query


def test_entries_are_asked_from_two_minutes_before_the_first_send(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    request = lost(world, salto)
    clock.move_to(at(10))
    salto.patch(OPEN_URL).respond(200, json={})
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    clock.move_to(at(10 + GRACE))
    open_request_confirm(open_request_id=request.pk)
    # the first send (T0), not the last one, starts the look-back
    query = salto["entries"].calls.last.request.url.params["$filter"]
    assert "utc_date_time ge DateTime'2026-11-25T11:58:00Z'" in query


# --- matching in order, and double opens -------------------------------------------------------------------------


def test_two_entries_in_one_accepted_send_s_window_are_a_double_open(
    world: World, salto: respx.Router, clock: time_machine.Traveller, caplog: Any
) -> None:
    request = opened(world, salto)
    entries(salto, entry_json("e-2", at=iso(at(1))), entry_json("e-1", at=iso(T0)))
    clock.move_to(at(GRACE))
    assert open_request_confirm(open_request_id=request.pk) is None
    assert confirmation(request) == ("double", ["e-1", "e-2"])
    assert "Salto recorded 2 opens (double open)" in caplog.text


def test_a_lost_answer_with_two_entries_says_it_opened_twice(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    request = lost(world, salto)
    entries(salto, entry_json("e-1", at=iso(T0)), entry_json("e-2", at=iso(at(1))))
    clock.move_to(at(GRACE))
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    request.refresh_from_db()
    assert (request.confirmation, request.salto_entry_ids) == ("double", ["e-1", "e-2"])
    assert request.reason.endswith(" Salto recorded 2 opens for this request (a double open).")


def test_an_entry_two_requests_windows_hold_goes_to_the_first_and_a_leftover_to_nobody(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given two accepted sends of one lock a second apart, and two entries (one more than the first can own)
    first = opened(world, salto)
    clock.move_to(at(1))
    second = opened(world, salto)
    entries(
        salto,
        entry_json("e-a", at=iso(at(0.5))),
        entry_json("e-b", at=iso(at(0.7))),
        entry_json("e-c", at=iso(at(0.9))),
    )
    clock.move_to(at(1 + GRACE))
    # when both are checked
    open_request_confirm(open_request_id=first.pk)
    open_request_confirm(open_request_id=second.pk)
    # then each send owns one entry in order; the third is in both windows: nobody's, never a false double open
    assert confirmation(first) == ("confirmed", ["e-a"])
    assert confirmation(second) == ("confirmed", ["e-b"])


# --- an opened request's confirmation: grace, postponement, give-up ---------------------------------------------------


def test_a_confirmation_looks_again_until_the_grace_period_is_over_then_says_no_record(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    request = opened(world, salto)
    clock.move_to(at(GRACE - 0.001))
    assert open_request_confirm(open_request_id=request.pk) == 0.01
    assert confirmation(request) == ("", [])
    clock.move_to(at(GRACE))
    assert open_request_confirm(open_request_id=request.pk) is None
    assert confirmation(request) == ("no_record", [])
    # and once recorded, it is not asked again
    assert open_request_confirm(open_request_id=request.pk) is None


def test_unreadable_entries_postpone_a_confirmation_ten_polls_at_a_time_for_ten_minutes(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    request = opened(world, salto)
    salto["entries"].respond(500, text="down")
    clock.move_to(at(GRACE))
    assert open_request_confirm(open_request_id=request.pk) == pytest.approx(0.1)
    clock.move_to(at(GRACE + 599.999))
    assert open_request_confirm(open_request_id=request.pk) == pytest.approx(0.1)
    clock.move_to(at(GRACE + 600))
    assert open_request_confirm(open_request_id=request.pk) is None
    # it says nothing rather than something untrue
    assert confirmation(request) == ("", [])


@pytest.mark.parametrize("settled", ["confirmed", "double"])
def test_a_settled_confirmation_is_not_asked_again(
    world: World, salto: respx.Router, clock: time_machine.Traveller, settled: str
) -> None:
    request = opened(world, salto)
    OpenRequest.objects.filter(pk=request.pk).update(confirmation=settled)
    clock.move_to(at(GRACE))
    assert open_request_confirm(open_request_id=request.pk) is None
    assert salto["entries"].call_count == 0


def test_a_confirmation_of_what_is_not_an_opened_request_is_nothing(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    request = opened(world, salto)
    orphan = opened(world, salto)
    OpenRequest.objects.filter(pk=orphan.pk).update(integration=None)
    failed = lost(world, salto)
    OpenRequest.objects.filter(pk=failed.pk).update(state=State.FAILED)
    clock.move_to(at(GRACE))
    for pk in (987654, orphan.pk, failed.pk):
        assert open_request_confirm(open_request_id=pk) is None
    assert salto["entries"].call_count == 0
    assert open_request_confirm(open_request_id=request.pk) is None
    assert salto["entries"].call_count == 1


def test_a_confirmation_counts_its_grace_from_when_the_request_was_opened(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    request = opened(world, salto)
    OpenRequest.objects.filter(pk=request.pk).update(finished_at=at(10))
    clock.move_to(at(10 + GRACE - 0.001))
    assert open_request_confirm(open_request_id=request.pk) == 0.01


# --- an unconfirmed request whose entries cannot be read ---------------------------------------------------------


def test_unreadable_entries_keep_a_request_unconfirmed_until_ten_minutes_past_its_freshness(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    request = lost(world, salto)
    salto["entries"].respond(500, text="down")
    clock.move_to(at(120 + 599.999))
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.UNCONFIRMED, retry_in=0.01)
    request.refresh_from_db()
    assert request.outcome_code == "entries_unreadable"
    assert request.reason.startswith("Salto's entries could not be read (Salto KS answered with a server error")
    clock.move_to(at(120 + 600))
    assert open_request_perform(open_request_id=request.pk) == PerformOutcome(State.FAILED)
    request.refresh_from_db()
    assert request.outcome_code == "outcome_unknown"
    assert request.reason.startswith("Whether the door opened is unknown: Salto's entries could not be read")


def test_entries_that_fail_unexpectedly_are_unreadable_too(
    world: World, salto: respx.Router, clock: time_machine.Traveller, caplog: Any
) -> None:
    request = lost(world, salto)
    salto["entries"].respond(200, json={"items": [{"id": "no-date"}]})
    clock.move_to(at(GRACE))
    caplog.set_level(logging.ERROR)
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    request.refresh_from_db()
    assert request.outcome_code == "entries_unreadable"


def test_a_lost_answer_is_not_looked_at_again_before_the_grace_period(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    request = lost(world, salto)
    door = salto.patch(OPEN_URL).respond(200, json={})
    clock.move_to(at(GRACE - 0.001))
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    request.refresh_from_db()
    assert request.reason == "No open in Salto's entries yet; looking again shortly (entries may lag)."
    assert request.outcome_code == "timeout"
    assert door.call_count == 1
    clock.move_to(at(GRACE))
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    assert door.call_count == 2


@pytest.mark.parametrize(("now", "sent_again"), [(118.999, True), (119, False)])
def test_a_lost_answer_is_sent_again_only_up_to_a_second_before_the_freshness_limit(
    world: World, salto: respx.Router, clock: time_machine.Traveller, now: float, sent_again: bool
) -> None:
    request = lost(world, salto)
    door = salto.patch(OPEN_URL).respond(200, json={})
    clock.move_to(at(now))
    outcome = open_request_perform(open_request_id=request.pk)
    assert (outcome.state, door.call_count) == ((State.OPENED, 2) if sent_again else (State.FAILED, 1))


def test_the_grace_period_counts_from_the_last_send_not_from_the_request(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given a lost answer at T0, sent again after the grace period, and lost again
    request = lost(world, salto)
    door = salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    clock.move_to(at(1))
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    assert door.call_count == 2
    # when it is looked at again just inside the grace period after the second send
    clock.move_to(at(1 + GRACE - 0.001))
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    # then it waited; and once the grace period after that send is over, it is sent a third time
    assert door.call_count == 2
    clock.move_to(at(1 + GRACE))
    open_request_perform(open_request_id=request.pk)
    assert door.call_count == 3


def test_a_request_not_sent_again_names_the_earliest_open_that_may_be_its_own(
    world: World, salto: respx.Router, clock: time_machine.Traveller, settings: Any
) -> None:
    from django.utils import timezone

    request = lost(world, salto)
    entries(salto, entry_json("later", at=iso(at(20))), entry_json("earlier", at=iso(at(10))))
    clock.move_to(at(30))
    assert open_request_perform(open_request_id=request.pk).state == State.FAILED
    request.refresh_from_db()
    assert f" at {timezone.localtime(at(10)):%H:%M:%S} that may be this request's" in request.reason


def test_salto_s_clock_offset_is_taken_out_before_entries_are_matched_to_sends(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given Salto's clock 5 minutes ahead, two accepted sends a second apart and one entry for each, in Salto's time
    salto["me"].respond(200, json={"id": ACCOUNT_USER_ID}, headers={"Date": format_datetime(at(300), usegmt=True)})
    first = opened(world, salto)
    clock.move_to(at(1))
    second = opened(world, salto)
    entries(salto, entry_json("e-a", at=iso(at(300.5))), entry_json("e-b", at=iso(at(300.7))))
    clock.move_to(at(1 + GRACE))
    # when both are checked
    open_request_confirm(open_request_id=first.pk)
    open_request_confirm(open_request_id=second.pk)
    # then each send has its own entry (both entries are in both windows: only the order tells them apart)
    assert confirmation(first) == ("confirmed", ["e-a"])
    assert confirmation(second) == ("confirmed", ["e-b"])


# --- the window's exact edges when several sends could own an entry -----------------------------------------------


def test_an_entry_at_the_end_of_an_accepted_sends_window_is_that_sends_not_the_next_ones(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    first = opened(world, salto)
    clock.move_to(at(1))
    second = opened(world, salto)
    entries(salto, entry_json("edge", at=iso(at(3))))
    clock.move_to(at(1 + GRACE))
    open_request_confirm(open_request_id=first.pk)
    open_request_confirm(open_request_id=second.pk)
    assert confirmation(first) == ("confirmed", ["edge"])
    assert confirmation(second) == ("no_record", [])


def test_an_entry_at_the_start_of_an_accepted_sends_window_is_that_send_s_before_any_lost_one(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given a lost answer at T0 and an accepted send at T0 + 5, and an open exactly 3 s before the accepted send
    lost(world, salto)
    clock.move_to(at(5))
    accepted = opened(world, salto)
    entries(salto, entry_json("edge", at=iso(at(2))))
    clock.move_to(at(5 + GRACE))
    # when / then: the accepted send explains it (accepted sends are matched first, its window includes its start)
    open_request_confirm(open_request_id=accepted.pk)
    assert confirmation(accepted) == ("confirmed", ["edge"])


@pytest.mark.parametrize("second_at", [0.0, 3.0], ids=["same-instant-as-the-start", "end-of-window"])
def test_a_second_entry_at_the_edge_of_the_only_window_holding_it_is_a_double_open(
    world: World, salto: respx.Router, clock: time_machine.Traveller, second_at: float
) -> None:
    request = opened(world, salto)
    first_at = -3.0 if second_at == 0.0 else 0.0
    second = -3.0 if second_at == 0.0 else 3.0
    entries(salto, entry_json("e-1", at=iso(at(first_at))), entry_json("e-2", at=iso(at(second))))
    clock.move_to(at(GRACE))
    open_request_confirm(open_request_id=request.pk)
    assert confirmation(request) == ("double", ["e-1", "e-2"])


def test_a_send_that_took_long_owns_the_entries_until_3_seconds_after_its_answer(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given Salto answers the open after 2 s
    def slow(http_request: Any) -> respx.MockResponse:
        clock.shift(2)
        return respx.MockResponse(200, json={})

    salto.patch(OPEN_URL).mock(side_effect=slow)
    request = open_request_create(booking=make_booking(world, status=world.paid), trigger="staff").open_request
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    entries(salto, entry_json("late", at=iso(at(4.5))))
    clock.move_to(at(2 + GRACE))
    open_request_confirm(open_request_id=request.pk)
    assert confirmation(request) == ("confirmed", ["late"])


def test_a_send_whose_worker_died_owns_the_entries_from_its_start(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given a send with no answer at all (its worker died), taken back by the sweeper as unconfirmed
    from integrations.models import OpenAttempt

    request = open_request_create(booking=make_booking(world, status=world.paid), trigger="staff").open_request
    OpenAttempt.objects.create(open_request=request, number=1, sent_at=T0)
    OpenRequest.objects.filter(pk=request.pk).update(state=State.UNCONFIRMED, next_attempt_at=T0)
    entries(salto, entry_json("e-1", at=iso(at(1))))
    clock.move_to(at(GRACE))
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED


def test_the_look_back_counts_from_the_first_send_not_from_the_request(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given a request first sent 10 s after it was made (its message waited), whose answer was lost
    salto.patch(OPEN_URL).mock(side_effect=httpx2.ReadTimeout("slow"))
    request = open_request_create(booking=make_booking(world, status=world.paid), trigger="staff").open_request
    clock.move_to(at(10))
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    # and an open of the lock between the request and its first send (not its own: before it was sent)
    entries(salto, entry_json("before-the-send", at=iso(at(5))))
    door = salto.patch(OPEN_URL).respond(200, json={})
    clock.move_to(at(10 + GRACE))
    # when / then: it is sent again, and the entries were asked from the first send minus two minutes
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    assert door.call_count == 2
    query = salto["entries"].calls.last.request.url.params["$filter"]
    assert "utc_date_time ge DateTime'2026-11-25T11:58:10Z'" in query


@pytest.mark.parametrize(
    "stamp", ["2026-11-25T13:00:01+01:00", "2026-11-25T12:00:01"], ids=["another-offset", "no-offset-is-utc"]
)
def test_entry_times_are_compared_as_instants(
    world: World, salto: respx.Router, clock: time_machine.Traveller, stamp: str
) -> None:
    request = opened(world, salto)
    entries(salto, entry_json("e-1", at=stamp))
    clock.move_to(at(GRACE))
    open_request_confirm(open_request_id=request.pk)
    assert confirmation(request) == ("confirmed", ["e-1"])


def test_the_reason_of_a_lost_answer_found_in_the_entries_gives_the_first_open_s_time(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    from django.utils import timezone

    request = lost(world, salto)
    entries(salto, entry_json("e-2", at=iso(at(2))), entry_json("e-1", at=iso(at(1))))
    clock.move_to(at(GRACE))
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    request.refresh_from_db()
    assert request.reason.startswith(f"Confirmed by Salto's entries at {timezone.localtime(at(1)):%H:%M:%S}: ")


def test_a_single_entry_is_no_double_open(
    world: World, salto: respx.Router, clock: time_machine.Traveller, caplog: Any
) -> None:
    request = opened(world, salto)
    entries(salto, entry_json("e-1", at=iso(T0)))
    clock.move_to(at(GRACE))
    caplog.set_level(logging.ERROR)
    open_request_confirm(open_request_id=request.pk)
    assert confirmation(request) == ("confirmed", ["e-1"])
    assert "double open" not in caplog.text


def test_entries_that_break_the_matching_are_unreadable_not_a_crash(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given Salto's clock 5 minutes behind and an entry dated at the end of time (taking the offset out overflows)
    salto["me"].respond(200, json={"id": ACCOUNT_USER_ID}, headers={"Date": format_datetime(at(-300), usegmt=True)})
    request = lost(world, salto)
    entries(salto, entry_json("odd", at="9999-12-31T23:59:59.000000Z"))
    clock.move_to(at(GRACE))
    # when / then
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    request.refresh_from_db()
    assert request.outcome_code == "entries_unreadable"
    assert "internal error (OverflowError)" in request.reason


def test_what_the_entries_say_cannot_be_changed_on_the_way(world: World, salto: respx.Router) -> None:
    import dataclasses

    from integrations.services.confirming import entries_verdict

    request = opened(world, salto)
    seen, problem = entries_verdict(request)
    assert (seen is not None, problem) == (True, "")
    assert seen is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen.mine = []  # type: ignore[misc]


def test_with_salto_s_clock_ahead_an_open_before_the_send_is_not_taken_for_this_one(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given Salto's clock 5 minutes ahead, and an open of the lock 3.5 s (our time) before this request's lost send
    salto["me"].respond(200, json={"id": ACCOUNT_USER_ID}, headers={"Date": format_datetime(at(300), usegmt=True)})
    request = lost(world, salto)
    entries(salto, entry_json("before", at=iso(at(300 - 3.5))))
    door = salto.patch(OPEN_URL).respond(200, json={})
    clock.move_to(at(GRACE))
    # when / then: not this request's (nor possibly so): it is sent again
    assert open_request_perform(open_request_id=request.pk).state == State.OPENED
    assert door.call_count == 2


def test_with_salto_s_clock_ahead_a_second_open_in_the_window_is_a_double_open(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    salto["me"].respond(200, json={"id": ACCOUNT_USER_ID}, headers={"Date": format_datetime(at(300), usegmt=True)})
    request = opened(world, salto)
    entries(salto, entry_json("e-1", at=iso(at(300))), entry_json("e-2", at=iso(at(301))))
    clock.move_to(at(GRACE))
    open_request_confirm(open_request_id=request.pk)
    assert confirmation(request) == ("double", ["e-1", "e-2"])


def test_an_open_exactly_3_seconds_before_a_refused_first_send_may_be_this_request_s(
    world: World, salto: respx.Router, clock: time_machine.Traveller
) -> None:
    # given a first send refused at T0 (429), then a second one at T0 + 5 whose answer is lost
    door = salto.patch(OPEN_URL)
    door.side_effect = [
        respx.MockResponse(429, text="quota", headers={"Retry-After": "1"}),
        httpx2.ReadTimeout("slow"),
    ]
    request = open_request_create(booking=make_booking(world, status=world.paid), trigger="staff").open_request
    assert open_request_perform(open_request_id=request.pk).state == State.PENDING
    clock.move_to(at(5))
    assert open_request_perform(open_request_id=request.pk).state == State.UNCONFIRMED
    # and an open of the lock exactly 3 s before the first send, which no send's window holds
    entries(salto, entry_json("edge", at=iso(at(-3))))
    clock.move_to(at(5 + GRACE))
    # when / then: it may be this request's (its first send's margin): never sent a third time
    assert open_request_perform(open_request_id=request.pk).state == State.FAILED
    assert door.call_count == 2
