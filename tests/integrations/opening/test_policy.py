"""The open policy as a table: statuses × moments × mappings, plus the refusals that come before the window."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from integrations.policy import (
    BookingFacts,
    IntegrationFacts,
    LockFacts,
    MappingFacts,
    Refusal,
    Rule,
    decide,
)

AMS = ZoneInfo("Europe/Amsterdam")
PAID, NEW = 30, 10
BUILDING, STUDIO, OTHER = 1, 2, 3
IQ = "iq-1"


def integration(**changes: object) -> IntegrationFacts:
    values: dict[str, object] = {
        "name": "Salto KS",
        "is_active": True,
        "is_activated": True,
        "needs_reactivation": False,
        "reactivation_reason": "",
        "open_status_ids": frozenset({PAID}),
        "minutes_before": 15,
        "iq_id": IQ,
        **changes,
    }
    return IntegrationFacts(**values)  # type: ignore[arg-type]


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)  # type: ignore[misc]


def booking(status: int, start: datetime, end: datetime, object_id: int = STUDIO) -> BookingFacts:
    return BookingFacts(
        status_id=status,
        status_label={PAID: "30 Paid", NEW: "10 New"}[status],
        object_id=object_id,
        object_name="Building A › Studio 2",
        parent_id=BUILDING,
        parent_name="Building A",
        start=start,
        end=end,
    )


# An ordinary booking 10:00-12:00 local (CET, UTC+1) with 15 minutes before: window 09:45-12:00.
PLAIN = (local(2026, 11, 25, 10, 0), local(2026, 11, 25, 12, 0))
# Across the end of summer time: 01:30 CEST (23:30Z) to 03:30 CET (02:30Z) is four hours, not two.
DST = (datetime(2026, 10, 24, 23, 30, tzinfo=UTC), datetime(2026, 10, 25, 2, 30, tzinfo=UTC))

MOMENTS = [
    # id, booking times, now, expected position in the window, reason fragment
    ("before", PLAIN, local(2026, 11, 25, 9, 44, 59), "early", "opens from 09:45"),
    ("at-start", PLAIN, local(2026, 11, 25, 9, 45, 0), "in", ""),
    ("inside", PLAIN, local(2026, 11, 25, 11, 0), "in", ""),
    ("at-end", PLAIN, local(2026, 11, 25, 12, 0, 0), "in", ""),
    ("after", PLAIN, local(2026, 11, 25, 12, 0, 1), "late", "ended at 12:00"),
    ("day-before", PLAIN, local(2026, 11, 24, 20, 0), "early", "opens from 25 Nov 2026 09:45"),
    ("dst-before", DST, datetime(2026, 10, 24, 23, 14, 59, tzinfo=UTC), "early", "opens from 01:15"),
    # 02:30 CET, the second time the clock shows 02:30 that night: still inside.
    ("dst-inside-repeated-hour", DST, datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "in", ""),
    ("dst-at-end", DST, datetime(2026, 10, 25, 2, 30, tzinfo=UTC), "in", ""),
    # 02:30:01Z is 03:30:01 CET: a wall-clock "start + 2 h" would have closed an hour early.
    ("dst-after", DST, datetime(2026, 10, 25, 2, 30, 1, tzinfo=UTC), "late", "ended at 03:30"),
]

MAPPINGS = {
    "sub-object": (
        [MappingFacts(STUDIO, "lock-studio", "Studio 2"), MappingFacts(BUILDING, "lock-front", "Front")],
        Rule.OBJECT,
        "lock-studio",
    ),
    "parent": (
        [MappingFacts(BUILDING, "lock-front", "Front"), MappingFacts(None, "lock-any", "Any")],
        Rule.PARENT,
        "lock-front",
    ),
    "wildcard": (
        [MappingFacts(OTHER, "lock-other", "Other"), MappingFacts(None, "lock-any", "Any")],
        Rule.WILDCARD,
        "lock-any",
    ),
    "none": ([MappingFacts(OTHER, "lock-other", "Other")], None, None),
}


@pytest.mark.parametrize("mapping", list(MAPPINGS))
@pytest.mark.parametrize(("moment", "times", "now", "position", "fragment"), MOMENTS, ids=[m[0] for m in MOMENTS])
@pytest.mark.parametrize("status", [PAID, NEW], ids=["allowed-status", "other-status"])
def test_the_policy_table(
    status: int,
    moment: str,
    times: tuple[datetime, datetime],
    now: datetime,
    position: str,
    fragment: str,
    mapping: str,
) -> None:
    # given
    mappings, rule, lock_id = MAPPINGS[mapping]
    facts = booking(status, *times)

    # when
    decision = decide(integration=integration(), booking=facts, mappings=mappings, locks={}, now=now, tz=AMS)

    # then
    if status != PAID:
        assert (decision.allowed, decision.refusal) == (False, Refusal.STATUS_NOT_ALLOWED)
        assert "10 New" in decision.reason
    elif position == "early":
        assert (decision.allowed, decision.refusal) == (False, Refusal.TOO_EARLY)
        assert fragment in decision.reason
    elif position == "late":
        assert (decision.allowed, decision.refusal) == (False, Refusal.TOO_LATE)
        assert fragment in decision.reason
    elif rule is None:
        assert (decision.allowed, decision.refusal) == (False, Refusal.NO_MAPPING)
    else:
        assert decision.allowed, decision.reason
        assert decision.lock is not None
        assert (decision.lock.rule, decision.lock.lock_id) == (rule, lock_id)
    # The chosen lock is reported whatever the answer, for the explain line.
    assert (decision.lock.lock_id if decision.lock else None) == lock_id


def test_it_describes_the_rule_for_people() -> None:
    facts = booking(PAID, *PLAIN)
    decision = decide(
        integration=integration(),
        booking=facts,
        mappings=MAPPINGS["parent"][0],
        locks={},
        now=local(2026, 11, 25, 11, 0),
        tz=AMS,
    )
    assert decision.lock is not None
    assert decision.lock.description == "Building A › Studio 2 → lock 'Front' via parent 'Building A'"
    assert decision.explain.startswith("Would open now: ")


@pytest.mark.parametrize(
    ("changes", "refusal", "fragment"),
    [
        ({"is_active": False}, Refusal.INTEGRATION_INACTIVE, "not active"),
        ({"is_activated": False}, Refusal.NOT_ACTIVATED, "not activated"),
        (
            {"is_activated": False, "needs_reactivation": True, "reactivation_reason": "OTP rejected"},
            Refusal.NEEDS_REACTIVATION,
            "needs re-activation: run GET PIN and Set PIN again (OTP rejected)",
        ),
    ],
)
def test_it_refuses_for_the_integration_state_first(
    changes: dict[str, object], refusal: Refusal, fragment: str
) -> None:
    decision = decide(
        integration=integration(**changes),
        booking=booking(PAID, *PLAIN),
        mappings=MAPPINGS["parent"][0],
        locks={},
        now=local(2026, 11, 25, 11, 0),
        tz=AMS,
    )
    assert (decision.allowed, decision.refusal) == (False, refusal)
    assert fragment in decision.reason


@pytest.mark.parametrize(
    ("lock", "refusal"),
    [
        (LockFacts("lock-front", "Front", online=False, iq_id=IQ, iq_online=True), Refusal.LOCK_OFFLINE),
        (LockFacts("lock-front", "Front", online=True, iq_id=IQ, iq_online=False), Refusal.IQ_OFFLINE),
        (LockFacts("lock-front", "Front", online=True, iq_id="iq-2", iq_online=True), Refusal.OTHER_IQ),
        (LockFacts("lock-front", "Front", online=True, iq_id=IQ, iq_online=True), None),
    ],
)
def test_it_refuses_before_sending_when_the_cache_says_offline(lock: LockFacts, refusal: Refusal | None) -> None:
    decision = decide(
        integration=integration(),
        booking=booking(PAID, *PLAIN),
        mappings=MAPPINGS["parent"][0],
        locks={"lock-front": lock},
        now=local(2026, 11, 25, 11, 0),
        tz=AMS,
    )
    assert decision.refusal == refusal
    assert decision.allowed is (refusal is None)


def test_it_refuses_without_an_integration() -> None:
    decision = decide(
        integration=None, booking=booking(PAID, *PLAIN), mappings=[], locks={}, now=local(2026, 11, 25, 11), tz=AMS
    )
    assert decision.refusal == Refusal.NO_INTEGRATION
    # refused, by the refusal itself (not only by the callers' guard that an allowed answer has a lock)
    assert decision.allowed is False
    assert decision.lock is None
    assert decision.explain == "Would not open now: no Salto KS integration is configured."


def test_it_rejects_naive_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(
            integration=integration(),
            booking=booking(PAID, *PLAIN),
            mappings=[],
            locks={},
            now=datetime(2026, 11, 25, 11),
            tz=AMS,
        )
