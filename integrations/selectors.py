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
        open_status_ids=frozenset(integration.open_statuses.values_list("pk", flat=True)),
        minutes_before=integration.minutes_before,
        iq_id=integration.iq_id,
    )


def mapping_facts(*, integration: Integration) -> list[MappingFacts]:
    return [
        MappingFacts(object_id=m.object_id, lock_id=m.lock_id, lock_name=m.lock_name)
        for m in LockMapping.objects.filter(integration=integration)
    ]


def lock_facts(*, integration: Integration) -> dict[str, LockFacts]:
    return {
        lock.lock_id: LockFacts(
            lock_id=lock.lock_id, name=lock.name, online=lock.online, iq_id=lock.iq_id, iq_online=lock.iq_online
        )
        for lock in CachedLock.objects.filter(integration=integration)
    }


# Decision 3 across integrations: the most specific mapping wins, whichever active integration holds it.
_RULE_RANK = {Rule.OBJECT: 0, Rule.PARENT: 1, Rule.WILDCARD: 2}


def integration_for_booking(*, booking: Booking) -> Integration | None:
    """The integration that serves this booking.

    Among active integrations, the one with the most specific mapping for the booked object: its own, else
    its parent's, else a wildcard (activation lets one active integration map an object, and one have a
    wildcard, so the answer is unique). Failing that any active one, then any at all, so a refusal names it.
    """
    integrations = list(Integration.objects.order_by("-is_active", "name"))
    if not integrations:
        return None
    facts = booking_facts(booking=booking)
    mappings_by_integration: dict[int, list[MappingFacts]] = {}
    for m in LockMapping.objects.filter(integration__is_active=True):
        mappings_by_integration.setdefault(m.integration_id, []).append(
            MappingFacts(object_id=m.object_id, lock_id=m.lock_id, lock_name=m.lock_name)
        )
    ranked = []
    for integration in integrations:
        choice = resolve_lock(booking=facts, mappings=mappings_by_integration.get(integration.pk, []))
        if integration.is_active and choice is not None:
            ranked.append((_RULE_RANK[Rule(choice.rule)], integration.name, integration))
    if ranked:
        return min(ranked, key=lambda item: item[:2])[2]
    return integrations[0]


def booking_open_assessment(*, booking: Booking, now: datetime | None = None) -> OpenAssessment:
    """Would BOOKING open a door NOW, which one and via which rule, or why not."""
    now = now or timezone.now()
    integration = integration_for_booking(booking=booking)
    facts = booking_facts(booking=booking)
    if integration is None:
        tz = timezone.get_default_timezone()
        return OpenAssessment(None, decide(integration=None, booking=facts, mappings=[], locks={}, now=now, tz=tz))
    decision = decide(
        integration=integration_facts(integration=integration),
        booking=facts,
        mappings=mapping_facts(integration=integration),
        locks=lock_facts(integration=integration),
        now=now,
        tz=timezone.get_default_timezone(),
    )
    return OpenAssessment(integration, decision)


def open_requests_for_booking(*, booking: Booking, limit: int = 20) -> QuerySet[OpenRequest]:
    return OpenRequest.objects.filter(booking=booking).select_related("actor", "integration")[:limit]


def open_requests_recent(*, integration: Integration, limit: int = 25) -> QuerySet[OpenRequest]:
    return OpenRequest.objects.filter(integration=integration).select_related("booking", "actor")[:limit]
