"""The open policy's values and sentences at their edges: immutable facts and decisions, the explain line for each
kind of answer, and the refusal without an integration (never allowed, whoever reads it)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from integrations.policy import (
    BookingFacts,
    Decision,
    IntegrationFacts,
    LockChoice,
    LockFacts,
    MappingFacts,
    Refusal,
    Rule,
    decide,
    open_window,
)
from tests.integrations.opening.test_policy import AMS, MAPPINGS, PAID, PLAIN, booking, integration, local

CHOICE = LockChoice("lock-front", "Front", Rule.PARENT, "Studio 2 → lock 'Front' via parent 'Building A'")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (integration(), "is_active"),
        (booking(PAID, *PLAIN), "status_id"),
        (MappingFacts(None, "lock-any", "Any"), "lock_id"),
        (LockFacts("lock-front", "Front", online=True, iq_id="iq", iq_online=True), "online"),
        (CHOICE, "lock_id"),
        (Decision(True, "allowed", None, CHOICE), "allowed"),
    ],
    ids=["integration", "booking", "mapping", "lock", "choice", "decision"],
)
def test_the_policy_s_facts_and_answers_cannot_be_changed_once_made(
    value: IntegrationFacts | BookingFacts | MappingFacts | LockFacts | LockChoice | Decision, field: str
) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)


def test_two_answers_that_differ_only_in_their_window_are_the_same_decision() -> None:
    start = datetime(2026, 11, 25, 9, 45, tzinfo=UTC)
    first = Decision(True, "allowed", None, CHOICE, start, start + timedelta(hours=2))
    later = Decision(True, "allowed", None, CHOICE, start + timedelta(days=1), start + timedelta(days=1, hours=2))
    assert first == later
    assert first != Decision(False, "allowed", None, CHOICE, start, start + timedelta(hours=2))


def test_the_explain_line_says_which_lock_would_open() -> None:
    assert Decision(True, "allowed", None, CHOICE).explain == (
        "Would open now: Studio 2 → lock 'Front' via parent 'Building A'."
    )


def test_the_explain_line_of_a_refusal_names_the_reason_and_the_lock_it_would_have_used() -> None:
    decision = Decision(False, "too early: opens from 09:45.", Refusal.TOO_EARLY, CHOICE)
    assert decision.explain == (
        "Would not open now: too early: opens from 09:45. (lock: Studio 2 → lock 'Front' via parent 'Building A')."
    )


def test_the_explain_line_of_a_refusal_without_a_lock_is_the_reason_alone() -> None:
    decision = Decision(False, "no lock is mapped for 'Garage' (and no wildcard).", Refusal.NO_MAPPING)
    assert decision.explain == "Would not open now: no lock is mapped for 'Garage' (and no wildcard)."


def test_it_refuses_without_an_integration_and_says_so_on_the_booking_page() -> None:
    decision = decide(
        integration=None,
        booking=booking(PAID, *PLAIN),
        mappings=MAPPINGS["parent"][0],
        locks={},
        now=local(2026, 11, 25, 11),
        tz=AMS,
    )
    assert decision == Decision(False, "no Salto KS integration is configured.", Refusal.NO_INTEGRATION)
    assert decision.explain == "Would not open now: no Salto KS integration is configured."


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 11, 25, 10), datetime(2026, 11, 25, 12, tzinfo=UTC)),
        (datetime(2026, 11, 25, 10, tzinfo=UTC), datetime(2026, 11, 25, 12)),
    ],
    ids=["naive-start", "naive-end"],
)
def test_the_window_refuses_naive_booking_times(start: datetime, end: datetime) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        open_window(start=start, end=end, minutes_before=15)


def test_the_window_opens_the_minutes_before_the_start_and_closes_at_the_end_in_utc() -> None:
    start, end = local(2026, 11, 25, 10, 0), local(2026, 11, 25, 12, 0)
    assert open_window(start=start, end=end, minutes_before=15) == (
        datetime(2026, 11, 25, 8, 45, tzinfo=UTC),
        datetime(2026, 11, 25, 11, 0, tzinfo=UTC),
    )
