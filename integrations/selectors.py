"""Reads for the opening flow: turn rows into the policy's plain facts, and pick the integration of a booking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from bookings.models import Booking
from integrations.models import CachedLock, Integration, LockMapping, OpenRequest
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


@dataclass(frozen=True)
class OpenAssessment:
    integration: Integration | None
    decision: Decision


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
        activation_state=integration.activation_state,
        reactivation_reason=integration.reactivation_reason,
        # all(): uses prefetched statuses when the caller prefetched them (OpenAssessor does).
        open_status_ids=frozenset(status.pk for status in integration.open_statuses.all()),
        minutes_before=integration.minutes_before,
        iq_id=integration.iq_id,
    )


# Decision 3 across integrations: the most specific mapping wins, whichever active integration holds it.
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
                None, decide(integration=None, booking=facts, mappings=[], locks={}, now=self.now, tz=tz)
            )
        decision = decide(
            integration=self._facts[integration.pk],
            booking=facts,
            mappings=self._mappings[integration.pk],
            locks=self._locks[integration.pk],
            now=self.now,
            tz=tz,
        )
        return OpenAssessment(integration, decision)


def integration_for_booking(*, booking: Booking) -> Integration | None:
    """The integration that serves this booking (see OpenAssessor.integration_for)."""
    return OpenAssessor().integration_for(booking_facts(booking=booking))


def booking_open_assessment(*, booking: Booking, now: datetime | None = None) -> OpenAssessment:
    """Would BOOKING open a door NOW, which one and via which rule, or why not."""
    return OpenAssessor(now=now).assess(booking)


def open_requests_for_booking(*, booking: Booking, limit: int = 20) -> QuerySet[OpenRequest]:
    return OpenRequest.objects.filter(booking=booking).select_related("actor", "integration")[:limit]


def open_requests_recent(*, integration: Integration, limit: int = 25) -> QuerySet[OpenRequest]:
    return OpenRequest.objects.filter(integration=integration).select_related("booking", "actor")[:limit]
