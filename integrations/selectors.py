"""Reads: the policy's plain facts and the integration of a booking (opening), and what the console shows.

Selectors take what they need as arguments where a caller renders many rows, so a list costs no query per row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import timezone

from bookings.models import Booking
from integrations.models import CachedLock, Integration, LockMapping, OpenRequest
from integrations.outcomes import Outcome
from integrations.policy import (
    BookingFacts,
    Decision,
    IntegrationFacts,
    LockFacts,
    MappingFacts,
    Rule,
    decide,
    resolve_lock,
)
from locks.clock import ClockReading, known_offset
from locks.environments import endpoints_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenAssessment:
    integration: Integration | None
    decision: Decision
    booking_id: int | None = None


def booking_facts(*, booking: Booking) -> BookingFacts:
    obj = booking.object
    parent = obj.parent
    return BookingFacts(
        status_id=booking.status_id,
        status_label=str(booking.status),
        object_id=obj.pk,
        object_name=obj.label,
        parent_id=parent.pk if parent is not None else None,
        parent_name=parent.name if parent is not None else None,
        start=booking.start,
        end=booking.end,
    )


def integration_facts(*, integration: Integration) -> IntegrationFacts:
    return IntegrationFacts(
        name=integration.name,
        is_active=integration.is_active,
        is_activated=integration.is_activated,
        needs_reactivation=integration.needs_reactivation,
        reactivation_reason=integration.reactivation_reason,
        # all(): uses prefetched statuses when the caller prefetched them (OpenAssessor does).
        open_status_ids=frozenset(status.pk for status in integration.open_statuses.all()),
        minutes_before=integration.minutes_before,
        iq_id=integration.iq_id,
    )


# ADR 0005 decision 3 across integrations (ADR 0002, point 11): the most specific mapping wins, whichever
# active integration holds it.
_RULE_RANK = {Rule.OBJECT: 0, Rule.PARENT: 1, Rule.WILDCARD: 2}


class OpenAssessor:
    """Answers "would this booking open a door now, which one, via which rule, or why not" for many bookings.

    The integrations with their statuses, mappings and cached locks are read once (four queries), so a list
    of bookings costs no query per booking beyond what the bookings themselves need.
    """

    def __init__(self, *, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        self.integrations = list(Integration.objects.order_by("-is_active", "name").prefetch_related("open_statuses"))
        self._mappings: dict[int, list[MappingFacts]] = {i.pk: [] for i in self.integrations}
        for m in LockMapping.objects.all():
            self._mappings.setdefault(m.integration_id, []).append(
                MappingFacts(object_id=m.object_id, lock_id=m.lock_id, lock_name=m.lock_name)
            )
        self._locks: dict[int, dict[str, LockFacts]] = {i.pk: {} for i in self.integrations}
        for lock in CachedLock.objects.all():
            self._locks.setdefault(lock.integration_id, {})[lock.lock_id] = LockFacts(
                lock_id=lock.lock_id, name=lock.name, online=lock.online, iq_id=lock.iq_id, iq_online=lock.iq_online
            )
        self._facts = {i.pk: integration_facts(integration=i) for i in self.integrations}

    def integration_for(self, facts: BookingFacts) -> Integration | None:
        """Among active integrations, the one with the most specific mapping for the booked object: its own,
        else its parent's, else a wildcard (activation lets one active integration map an object, and one
        have a wildcard, so the answer is unique). Failing that any active one, then any, so a refusal names it.
        """
        ranked = []
        for integration in self.integrations:
            choice = resolve_lock(booking=facts, mappings=self._mappings[integration.pk])
            if integration.is_active and choice is not None:
                ranked.append((_RULE_RANK[Rule(choice.rule)], integration.name, integration))
        if ranked:
            return min(ranked, key=lambda item: item[:2])[2]
        return self.integrations[0] if self.integrations else None

    def assess(self, booking: Booking) -> OpenAssessment:
        facts = booking_facts(booking=booking)
        tz = timezone.get_default_timezone()
        integration = self.integration_for(facts)
        if integration is None:
            return OpenAssessment(
                None,
                decide(integration=None, booking=facts, mappings=[], locks={}, now=self.now, tz=tz),
                booking.pk,
            )
        decision = decide(
            integration=self._facts[integration.pk],
            booking=facts,
            mappings=self._mappings[integration.pk],
            locks=self._locks[integration.pk],
            now=self.now,
            tz=tz,
        )
        return OpenAssessment(integration, decision, booking.pk)


def opens_automatically(*, assessment: OpenAssessment, status_id: int) -> bool:
    """Whether entering STATUS_ID asks the assessed integration for an open (ADR 0005, decision 1a).

    The integration that would actually open the door decides, with its own switch and statuses; an inactive
    one records nothing (ADR 0002, point 5). The open statuses are prefetched by the OpenAssessor.
    """
    integration = assessment.integration
    if integration is None or not integration.is_active or not integration.open_on_status_change:
        return False
    return any(status.pk == status_id for status in integration.open_statuses.all())


def booking_open_assessment(*, booking: Booking, now: datetime | None = None) -> OpenAssessment:
    """Would BOOKING open a door NOW, which one and via which rule, or why not."""
    return OpenAssessor(now=now).assess(booking)


def open_requests_for_booking(*, booking: Booking, limit: int = 20) -> QuerySet[OpenRequest]:
    return (
        OpenRequest.objects.filter(booking=booking).select_related("actor", "integration").prefetch_related("sends")
    )[:limit]


def open_requests_recent(*, integration: Integration, limit: int = 25) -> QuerySet[OpenRequest]:
    return (
        OpenRequest.objects.filter(integration=integration)
        .select_related("booking", "actor")
        .prefetch_related("sends")[:limit]
    )


# --- The console -----------------------------------------------------------------------------------------


def cached_locks_by_id(*, integration: Integration) -> dict[str, CachedLock]:
    """The integration's cached lock list (as GET locks left it), keyed by lock id; empty when not saved yet."""
    if integration.pk is None:
        return {}
    # all(): uses prefetched locks when the caller prefetched them (the admin does, once for every row).
    return {lock.lock_id: lock for lock in integration.cached_locks.all()}


def mapping_target_label(mapping: LockMapping) -> str:
    return "* (wildcard)" if mapping.object_id is None else mapping.object.label  # type: ignore[union-attr]


def mapping_problem(*, integration: Integration, lock_id: str, cached: dict[str, CachedLock]) -> str:
    """Why a mapping to LOCK_ID cannot be used right now ("" if it can), judged from the CACHED lock list."""
    lock = cached.get(lock_id)
    if lock is None:
        return "not in the lock list — click GET locks (and map another lock if it is gone)"
    if integration.iq_id and lock.iq_id and lock.iq_id != integration.iq_id:
        return "on another IQ — this integration's OTP is not accepted there"
    return ""


def activation_missing_steps(
    *, integration: Integration, mappings: Sequence[tuple[int | None, str]] | None = None
) -> list[str]:
    """Every step still missing before INTEGRATION may be active, in the manual's order.

    MAPPINGS are (object id or None for the wildcard, lock id) pairs; by default the stored ones (the
    change form passes the rows being saved, so mapping and activating can happen in one save).
    """
    if mappings is None:
        mappings = list(integration.mappings.values_list("object_id", "lock_id"))
    steps: list[str] = []
    if not integration.site_id:
        steps.append("Site resolved: click Resolve site ID on the Authentication tab.")
    if not integration.access_test_ok:
        steps.append("Access tested OK: click Test / request access on the Authentication tab.")
    if integration.needs_reactivation:
        reason = f" ({integration.reactivation_reason})" if integration.reactivation_reason else ""
        steps.append(f"IQ activated: the IQ needs re-activation{reason}; use GET PIN and Set PIN again.")
    elif not integration.is_activated:
        steps.append("IQ activated: use GET PIN and Set PIN in the IQ OTP setup block until “IQ is activated”.")
    if not mappings:
        steps.append("At least one mapping: click GET locks and map an object (or the wildcard) on the Mapping tab.")
    else:
        cached = cached_locks_by_id(integration=integration)
        for _object_id, lock_id in mappings:
            problem = mapping_problem(integration=integration, lock_id=lock_id, cached=cached)
            if problem:
                lock = cached.get(lock_id)
                steps.append(f"Mapping to lock {lock.name if lock else lock_id}: {problem}.")
        object_ids = [object_id for object_id, _ in mappings]
        steps.extend(mapping_conflicts(integration=integration, object_ids=object_ids))
    return steps


def mapping_conflicts(*, integration: Integration, object_ids: Iterable[int | None]) -> list[str]:
    """Mappings among OBJECT_IDS (None: the wildcard) that another *active* integration already has.

    An object may be mapped by at most one active integration, and at most one active integration may have
    a wildcard: otherwise which door a booking opens would depend on which integration is asked.
    """
    wanted = list(object_ids)
    others = LockMapping.objects.filter(integration__is_active=True).exclude(integration_id=integration.pk)
    conflicts = [
        f"{m.object.label} is already mapped by the active integration “{m.integration.name}”; "  # type: ignore[union-attr]
        "an object may be mapped by at most one active integration."
        for m in objects_mapped_by_other_active(integration=integration, object_ids=wanted)
    ]
    if None in wanted:
        conflicts += [
            f"The active integration “{m.integration.name}” already has a wildcard (default) mapping; "
            "at most one active integration may have one."
            for m in others.filter(object__isnull=True).select_related("integration")
        ]
    return conflicts


def objects_mapped_by_other_active(*, integration: Integration, object_ids: Iterable[int | None]) -> list[LockMapping]:
    """The mappings of another *active* integration for any of OBJECT_IDS (the wildcard aside), by object name."""
    wanted = [object_id for object_id in object_ids if object_id is not None]
    if not wanted:
        return []
    others = LockMapping.objects.filter(integration__is_active=True).exclude(integration_id=integration.pk)
    return list(
        others.filter(object_id__in=wanted).select_related("object__parent", "integration").order_by("object__name")
    )


def details_warnings(*, integration: Integration) -> list[Outcome]:
    """What in the saved Details would surprise staff later (the Details are valid either way)."""
    checkin = integration.checkin_status
    if checkin is None or integration.open_statuses.filter(pk=checkin.pk).exists():
        return []
    return [
        Outcome.warning(
            f"Status after opening (check-in) “{checkin}” is not ticked under Lock may open from status: once a "
            "booking is checked in, its door will not open again (guests going in and out). Tick it too if it should."
        )
    ]


def salto_clock_of(*, integration: Integration) -> ClockReading | None:
    """The last measured offset of Salto's clock in the integration's environment (None: not measured yet)."""
    if not integration.environment:
        return None
    try:
        return known_offset(cache, endpoints_for(integration.environment).api_url)
    except Exception:
        # The console must render with the cache down; the clock line is then simply not shown.
        logger.warning("Salto clock offset not readable from the cache", exc_info=True)
        return None
