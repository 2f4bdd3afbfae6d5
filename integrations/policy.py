"""The open policy: may this booking open a door now, and which one? Pure: plain values in, a decision out.

Decisions 2 and 3 of docs/adr/0005-behaviour-decisions.md: integration active; IQ activated and not flagged for
re-activation; the booking's *current* status allowed; now within [start - time before, end] (compared in
UTC, inclusive at both ends); a lock resolves via the booked object's own mapping, else its parent's, else
the integration's wildcard. The cached lock state refuses before sending when the lock or its IQ is known
offline or the lock hangs on another IQ (ADR 0005, decision 8). Reasons are sentences for people, times in local time.

No database, no clock, no settings: callers pass `now` and the time zone, so the table tests can walk
every moment (including a DST change) without patching anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum


class Rule(StrEnum):
    # Values match OpenRequest.Rule.
    OBJECT = "object"
    PARENT = "parent"
    WILDCARD = "wildcard"


class Refusal(StrEnum):
    NO_INTEGRATION = "no_integration"
    INTEGRATION_INACTIVE = "integration_inactive"
    NOT_ACTIVATED = "not_activated"
    NEEDS_REACTIVATION = "needs_reactivation"
    STATUS_NOT_ALLOWED = "status_not_allowed"
    TOO_EARLY = "too_early"
    TOO_LATE = "too_late"
    NO_MAPPING = "no_mapping"
    LOCK_OFFLINE = "lock_offline"
    IQ_OFFLINE = "iq_offline"
    OTHER_IQ = "other_iq"


@dataclass(frozen=True)
class IntegrationFacts:
    name: str
    is_active: bool
    is_activated: bool
    needs_reactivation: bool
    reactivation_reason: str
    open_status_ids: frozenset[int]
    minutes_before: int
    iq_id: str


@dataclass(frozen=True)
class BookingFacts:
    status_id: int
    status_label: str
    object_id: int
    object_name: str
    parent_id: int | None
    parent_name: str | None
    start: datetime
    end: datetime


@dataclass(frozen=True)
class MappingFacts:
    object_id: int | None  # None = wildcard
    lock_id: str
    lock_name: str


@dataclass(frozen=True)
class LockFacts:
    lock_id: str
    name: str
    online: bool
    iq_id: str
    iq_online: bool


@dataclass(frozen=True)
class LockChoice:
    lock_id: str
    lock_name: str
    rule: Rule
    description: str  # "Studio 2 → lock 'Front door' via parent 'Building A'"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    refusal: Refusal | None = None
    lock: LockChoice | None = None
    window_start: datetime | None = field(default=None, compare=False)
    window_end: datetime | None = field(default=None, compare=False)

    @property
    def explain(self) -> str:
        """One line for the booking page: which lock now, via which rule, or why not."""
        if self.allowed and self.lock is not None:
            return f"Would open now: {self.lock.description}."
        if self.lock is not None:
            return f"Would not open now: {self.reason} (lock: {self.lock.description})."
        return f"Would not open now: {self.reason}"


def open_window(*, start: datetime, end: datetime, minutes_before: int) -> tuple[datetime, datetime]:
    """[start - time before, end] in UTC. Aware datetimes only: a naive one would silently shift by hours."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("booking times must be timezone-aware")
    return (start.astimezone(UTC) - timedelta(minutes=minutes_before), end.astimezone(UTC))


def resolve_lock(*, booking: BookingFacts, mappings: Sequence[MappingFacts]) -> LockChoice | None:
    """The booked object's own mapping, else its parent object's, else the wildcard (ADR 0005, decision 3)."""
    by_object = {m.object_id: m for m in mappings}
    own = by_object.get(booking.object_id)
    if own is not None:
        return LockChoice(
            own.lock_id, own.lock_name, Rule.OBJECT, f"{booking.object_name} → lock '{_name(own)}' via its own mapping"
        )
    if booking.parent_id is not None:
        parent = by_object.get(booking.parent_id)
        if parent is not None:
            return LockChoice(
                parent.lock_id,
                parent.lock_name,
                Rule.PARENT,
                f"{booking.object_name} → lock '{_name(parent)}' via parent '{booking.parent_name}'",
            )
    wildcard = by_object.get(None)
    if wildcard is not None:
        return LockChoice(
            wildcard.lock_id,
            wildcard.lock_name,
            Rule.WILDCARD,
            f"{booking.object_name} → lock '{_name(wildcard)}' via the wildcard (default) mapping",
        )
    return None


def decide(
    *,
    integration: IntegrationFacts | None,
    booking: BookingFacts,
    mappings: Sequence[MappingFacts],
    locks: Mapping[str, LockFacts],
    now: datetime,
    tz: tzinfo,
) -> Decision:
    """Allowed or refused, with a human reason and the chosen lock (even when refused, for the explain line)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if integration is None:
        return _refuse(Refusal.NO_INTEGRATION, "no Salto KS integration is configured.")

    lock = resolve_lock(booking=booking, mappings=mappings)
    window_start, window_end = open_window(
        start=booking.start, end=booking.end, minutes_before=integration.minutes_before
    )
    now_utc = now.astimezone(UTC)

    def refuse(refusal: Refusal, reason: str) -> Decision:
        return Decision(False, reason, refusal, lock, window_start, window_end)

    if not integration.is_active:
        return refuse(Refusal.INTEGRATION_INACTIVE, f"the integration '{integration.name}' is not active.")
    if integration.needs_reactivation:
        detail = f" ({integration.reactivation_reason})" if integration.reactivation_reason else ""
        return refuse(
            Refusal.NEEDS_REACTIVATION,
            f"the integration needs re-activation: run GET PIN and Set PIN again{detail}.",
        )
    if not integration.is_activated:
        return refuse(Refusal.NOT_ACTIVATED, "the IQ is not activated (GET PIN / Set PIN on the integration).")
    if booking.status_id not in integration.open_status_ids:
        return refuse(Refusal.STATUS_NOT_ALLOWED, f"status '{booking.status_label}' does not allow opening.")
    if now_utc < window_start:
        return refuse(Refusal.TOO_EARLY, f"too early: opens from {_local(window_start, now_utc, tz)}.")
    if now_utc > window_end:
        return refuse(Refusal.TOO_LATE, f"too late: the booking ended at {_local(window_end, now_utc, tz)}.")
    if lock is None:
        return refuse(Refusal.NO_MAPPING, f"no lock is mapped for '{booking.object_name}' (and no wildcard).")

    cached = locks.get(lock.lock_id)
    if cached is not None:
        if cached.iq_id and integration.iq_id and cached.iq_id != integration.iq_id:
            return refuse(
                Refusal.OTHER_IQ,
                f"lock '{cached.name}' hangs on another IQ; this integration's one-time code does not work there.",
            )
        if not cached.iq_online:
            return refuse(Refusal.IQ_OFFLINE, f"the IQ of lock '{cached.name}' is offline.")
        if not cached.online:
            return refuse(Refusal.LOCK_OFFLINE, f"lock '{cached.name}' is offline.")
    return Decision(True, "allowed", None, lock, window_start, window_end)


def _refuse(refusal: Refusal, reason: str) -> Decision:
    return Decision(False, reason, refusal)


def _name(mapping: MappingFacts) -> str:
    return mapping.lock_name or mapping.lock_id


def _local(moment: datetime, now: datetime, tz: tzinfo) -> str:
    """'09:45' today (local), else '26 Nov 2026 09:45'."""
    local = moment.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return local.strftime("%H:%M")
    return local.strftime("%d %b %Y %H:%M")
