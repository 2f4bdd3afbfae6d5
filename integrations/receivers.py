"""Integrations listens to the booking domain; bookings never imports integrations."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from bookings.models import Booking, BookingStatusChange
from bookings.signals import booking_status_changed
from integrations.models import OpenRequest
from integrations.selectors import booking_open_assessment, opens_automatically
from integrations.services.opening import open_request_create

logger = logging.getLogger(__name__)


@receiver(booking_status_changed, dispatch_uid="integrations.open_on_status_change")
def open_on_status_change(sender: Any, change: BookingStatusChange, **kwargs: Any) -> None:
    """ADR 0005 decision 1a: a booking that *entered* an allowed status asks for an open, if automatic opening is on."""
    # The integration's own check-in move must never open again (ADR 0005, decision 5).
    if change.source == BookingStatusChange.Source.INTEGRATION:
        return
    if change.from_status_id == change.to_status_id:
        return
    # The booking as it is now (the announcement comes after commit, maybe after a later change too), and one
    # answer of the policy about it: it decides whether to ask at all, and it is what the request records.
    booking = Booking.objects.select_related("object__parent", "status").get(pk=change.booking_id)
    assessment = booking_open_assessment(booking=booking)
    if not opens_automatically(assessment=assessment, status_id=change.to_status_id):
        return
    open_request_create(
        booking=booking,
        trigger=OpenRequest.Trigger.STATUS_CHANGE,
        actor=change.changed_by,
        assessment=assessment,
    )
