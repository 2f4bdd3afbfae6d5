"""The open request's state machine: every state change is a named transition that refuses illegal moves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import TRANSITIONS, IllegalTransition, OpenRequest
from tests.integrations.opening.builders import World, make_booking, make_world

pytestmark = pytest.mark.django_db

State = OpenRequest.State
FINAL = (State.OPENED, State.FAILED, State.REFUSED, State.EXPIRED)


@pytest.fixture
def world() -> World:
    return make_world()


TOKEN = "0123456789abcdef"  # the claim a SENDING row of these tests is held under


def _request(world: World, state: str = State.PENDING, **fields: object) -> OpenRequest:
    booking = make_booking(world, status=world.paid)
    if state == State.SENDING:
        fields.setdefault("claim_token", TOKEN)
    return OpenRequest.objects.create(booking=booking, trigger="staff", state=state, **fields)  # type: ignore[arg-type]


def _plain() -> dict[str, object]:
    return {"token": TOKEN, "reason": "", "outcome_code": "", "now": timezone.now()}


def _state(open_request: OpenRequest) -> str:
    open_request.refresh_from_db()
    return open_request.state


def test_final_states_lead_nowhere() -> None:
    for state in FINAL:
        assert state not in TRANSITIONS
    assert TRANSITIONS[State.PENDING] == {State.SENDING, State.EXPIRED}
    # an unconfirmed request is only ever taken up again to ask the entries: never straight to a final state
    assert TRANSITIONS[State.UNCONFIRMED] == {State.SENDING}


def test_a_claim_takes_a_fresh_due_pending_request_once(world: World) -> None:
    now = timezone.now()
    open_request = _request(world, next_attempt_at=now)
    lease = now + timedelta(seconds=50)
    kwargs = {
        "fresh_since": now - timedelta(seconds=120),
        "due_before": now + timedelta(seconds=0.5),
        "lease_until": lease,
    }

    token = OpenRequest.objects.claim(open_request.pk, **kwargs)
    assert len(token) == 16
    assert OpenRequest.objects.claim(open_request.pk, **kwargs) == ""

    open_request.refresh_from_db()
    # the worker holds it until its lease ends (kept in next_attempt_at); nothing was sent yet
    assert (open_request.state, open_request.next_attempt_at, open_request.attempts) == (State.SENDING, lease, 0)
    assert open_request.claim_token == token


def test_a_claim_waits_for_the_due_time_and_refuses_a_stale_request(world: World) -> None:
    now = timezone.now()
    later = _request(world, next_attempt_at=now + timedelta(seconds=5))
    stale = _request(world)
    fresh_since = now - timedelta(seconds=120)
    lease = now + timedelta(seconds=50)

    assert not OpenRequest.objects.claim(later.pk, fresh_since=fresh_since, due_before=now, lease_until=lease)
    # a stale request (created before the freshness limit) is never claimed, however due
    assert not OpenRequest.objects.claim(
        stale.pk, fresh_since=now + timedelta(seconds=1), due_before=now, lease_until=lease
    )
    assert (_state(later), _state(stale)) == (State.PENDING, State.PENDING)


@pytest.mark.parametrize("state", FINAL)
def test_finish_ends_a_sending_request_only(world: World, state: str) -> None:
    now = timezone.now()
    sending = _request(world, State.SENDING)
    pending = _request(world, State.PENDING)

    why = {"token": TOKEN, "reason": "why", "outcome_code": "code", "now": now}
    assert OpenRequest.objects.finish(sending.pk, state, **why) is True
    assert OpenRequest.objects.finish(pending.pk, state, **why) is False
    # a finished request stays as it is
    assert OpenRequest.objects.finish(sending.pk, State.OPENED, **{**why, "reason": ""}) is False
    sending.refresh_from_db()
    assert (sending.state, sending.reason, sending.outcome_code, sending.finished_at) == (state, "why", "code", now)
    assert _state(pending) == State.PENDING


def test_finish_refuses_to_send_again_and_unknown_states(world: World) -> None:
    sending = _request(world, State.SENDING)
    with pytest.raises(IllegalTransition, match="retry_later"):
        OpenRequest.objects.finish(sending.pk, State.PENDING, **_plain())
    with pytest.raises(IllegalTransition, match="from sending to sending"):
        OpenRequest.objects.finish(sending.pk, State.SENDING, **_plain())
    assert _state(sending) == State.SENDING


def test_retry_later_puts_a_sending_request_back_to_pending_with_its_due_time(world: World) -> None:
    due = timezone.now() + timedelta(seconds=3)
    sending = _request(world, State.SENDING)
    opened = _request(world, State.OPENED)

    later = {"token": TOKEN, "due": due, "reason": "later", "outcome_code": "server_error"}
    assert OpenRequest.objects.retry_later(sending.pk, **later) is True
    assert OpenRequest.objects.retry_later(opened.pk, **later) is False

    sending.refresh_from_db()
    assert (sending.state, sending.next_attempt_at, sending.outcome_code) == (State.PENDING, due, "server_error")
    assert _state(opened) == State.OPENED


def test_expire_stale_touches_only_old_pending_requests(world: World) -> None:
    now = timezone.now()
    old_pending = _request(world)
    old_sending = _request(world, State.SENDING)
    later = now + timedelta(seconds=1)
    new_pending = _request(world)
    OpenRequest.objects.filter(pk=new_pending.pk).update(created_at=later + timedelta(seconds=1))

    assert OpenRequest.objects.expire_stale(created_before=later, reason="too late", now=now) == 1

    assert (_state(old_pending), _state(old_sending), _state(new_pending)) == (
        State.EXPIRED,
        State.SENDING,
        State.PENDING,
    )
    old_pending.refresh_from_db()
    assert (old_pending.outcome_code, old_pending.reason) == ("expired", "too late")


def test_expire_stale_of_one_request_leaves_the_others(world: World) -> None:
    now = timezone.now()
    one, other = _request(world), _request(world)
    later = now + timedelta(seconds=1)

    assert OpenRequest.objects.expire_stale(pk=one.pk, created_before=later, reason="too late", now=now) == 1
    assert (_state(one), _state(other)) == (State.EXPIRED, State.PENDING)


def test_abandon_stale_takes_back_sending_requests_whose_lease_ran_out(world: World) -> None:
    now = timezone.now()
    lapsed = _request(world, State.SENDING, next_attempt_at=now - timedelta(seconds=1))
    held = _request(world, State.SENDING, next_attempt_at=now + timedelta(seconds=30))
    unleased = _request(world, State.SENDING)
    pending = _request(world, State.PENDING, next_attempt_at=now - timedelta(seconds=1))

    # an unleased row counts only once it is older than the cut-off
    assert OpenRequest.objects.abandon_stale(now=now, unleased_before=now - timedelta(hours=1), reason="?") == [
        lapsed.pk
    ]
    assert OpenRequest.objects.abandon_stale(now=now, unleased_before=now + timedelta(seconds=1), reason="?") == [
        unleased.pk
    ]
    lapsed.refresh_from_db()
    # not failed: whether the door opened is unknown, so the entries will decide
    assert (lapsed.state, lapsed.outcome_code, lapsed.next_attempt_at) == (State.UNCONFIRMED, "abandoned", now)
    assert (_state(held), _state(unleased), _state(pending)) == (State.SENDING, State.UNCONFIRMED, State.PENDING)


def test_an_unconfirmed_request_is_held_and_claimed_again_when_its_check_is_due(world: World) -> None:
    now = timezone.now()
    sending = _request(world, State.SENDING)
    check_at = now + timedelta(seconds=3)
    hold = {"token": TOKEN, "check_at": check_at, "reason": "?", "outcome_code": "timeout"}
    assert OpenRequest.objects.hold_unconfirmed(sending.pk, **hold)
    assert not OpenRequest.objects.hold_unconfirmed(sending.pk, **hold)
    lease = now + timedelta(seconds=50)
    # not before its check is due, then once, under a new claim token
    assert not OpenRequest.objects.claim_unconfirmed(sending.pk, due_before=now, lease_until=lease)
    token = OpenRequest.objects.claim_unconfirmed(sending.pk, due_before=check_at, lease_until=lease)
    assert token not in ("", TOKEN)
    assert not OpenRequest.objects.claim_unconfirmed(sending.pk, due_before=check_at, lease_until=lease)
    sending.refresh_from_db()
    assert (sending.state, sending.next_attempt_at, sending.claim_token) == (State.SENDING, lease, token)


def test_finish_cannot_skip_the_entries_of_an_unconfirmed_request(world: World) -> None:
    unconfirmed = _request(world, State.UNCONFIRMED)
    assert not OpenRequest.objects.finish(unconfirmed.pk, State.OPENED, **_plain())
    assert _state(unconfirmed) == State.UNCONFIRMED


def test_mark_due_bumps_only_an_overdue_pending_request(world: World) -> None:
    now = timezone.now()
    overdue = _request(world, next_attempt_at=now - timedelta(seconds=30))
    waiting = _request(world, next_attempt_at=now + timedelta(seconds=5))
    sending = _request(world, State.SENDING, next_attempt_at=now - timedelta(seconds=30))
    cut = now - timedelta(seconds=5)

    assert OpenRequest.objects.mark_due(overdue.pk, overdue_before=cut, now=now) is True
    assert OpenRequest.objects.mark_due(overdue.pk, overdue_before=cut, now=now) is False  # a second sweeper
    assert OpenRequest.objects.mark_due(waiting.pk, overdue_before=cut, now=now) is False
    assert OpenRequest.objects.mark_due(sending.pk, overdue_before=cut, now=now) is False
    overdue.refresh_from_db()
    assert overdue.next_attempt_at == now


def test_a_worker_that_lost_its_claim_can_no_longer_move_the_row(world: World) -> None:
    """The fence: worker A stalls past its lease, the sweeper takes the row, worker B claims it; A is locked out."""
    now = timezone.now()
    open_request = _request(world, next_attempt_at=now)
    claim = {"fresh_since": now - timedelta(seconds=120), "due_before": now, "lease_until": now - timedelta(seconds=1)}
    stale = OpenRequest.objects.claim(open_request.pk, **claim)
    assert OpenRequest.objects.abandon_stale(now=now, unleased_before=now, reason="worker gone") == [open_request.pk]
    current = OpenRequest.objects.claim_unconfirmed(
        open_request.pk, due_before=now, lease_until=now + timedelta(seconds=50)
    )
    assert stale
    assert current
    assert stale != current

    later = now + timedelta(seconds=60)
    objects = OpenRequest.objects
    assert not objects.renew_lease(open_request.pk, token=stale, lease_until=later)
    assert not objects.finish(open_request.pk, State.OPENED, token=stale, reason="", outcome_code="opened", now=now)
    assert not objects.retry_later(open_request.pk, token=stale, due=now, reason="", outcome_code="x")
    assert not objects.hold_unconfirmed(open_request.pk, token=stale, check_at=now, reason="", outcome_code="x")
    assert not objects.finish(open_request.pk, State.OPENED, token="", reason="", outcome_code="opened", now=now)
    assert _state(open_request) == State.SENDING

    # the current holder still can
    assert objects.renew_lease(open_request.pk, token=current, lease_until=later)
    assert objects.finish(open_request.pk, State.OPENED, token=current, reason="", outcome_code="opened", now=now)
    assert _state(open_request) == State.OPENED


def test_an_empty_claim_token_never_holds_a_row(world: World) -> None:
    # a row claimed by an older version (no token written) is moved by nobody but the sweeper
    unfenced = _request(world, State.SENDING, claim_token="")
    assert not OpenRequest.objects.renew_lease(unfenced.pk, token="", lease_until=timezone.now())
    assert not OpenRequest.objects.held(unfenced.pk, "").exists()


def test_expire_stale_tells_a_request_that_went_out_before_from_one_never_sent(world: World) -> None:
    now = timezone.now()
    never = _request(world)
    retried = _request(world)
    refused_send = _request(world)
    retried.sends.create(number=1, sent_at=now, outcome="rejected", http_status=429)
    refused_send.sends.create(number=1, sent_at=now, outcome="not_sent")
    later = now + timedelta(seconds=1)

    expired = OpenRequest.objects.expire_stale(
        created_before=later, reason="never sent", resent_reason="sent before", now=now
    )

    assert expired == 3
    for open_request, reason in ((never, "never sent"), (retried, "sent before"), (refused_send, "never sent")):
        open_request.refresh_from_db()
        assert (open_request.state, open_request.reason) == (State.EXPIRED, reason)
