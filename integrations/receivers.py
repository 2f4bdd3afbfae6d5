"""Integrations listens to the booking domain; bookings never imports integrations."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from bookings.models import BookingStatusChange
from bookings.signals import booking_status_changed
from integrations.models import OpenRequest

logger = logging.getLogger(__name__)


@receiver(booking_status_changed, dispatch_uid="integrations.open_on_status_change")
def open_on_status_change(sender: Any, change: BookingStatusChange, **kwargs: Any) -> None:
    """Decision 1a: a booking that *entered* an allowed status asks for an open, if automatic opening is on."""
    # The integration's own check-in move must never open again (decision 5).
    if change.source == BookingStatusChange.Source.INTEGRATION:
        return
    if change.from_status_id == change.to_status_id:
        return
    from integrations.selectors import integration_for_booking
    from integrations.services.opening import open_request_create

    # Ask the integration that would actually open this booking's door, not any integration.
    integration = integration_for_booking(booking=change.booking)
    if integration is None or not integration.is_active or not integration.open_on_status_change:
        return
    if not integration.open_statuses.filter(pk=change.to_status_id).exists():
        return

    open_request_create(booking=change.booking, trigger=OpenRequest.Trigger.STATUS_CHANGE, actor=change.changed_by)
