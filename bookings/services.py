"""Writes to the booking domain. Every status change goes through `booking_change_status`."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from bookings.models import (
    BookableObject,
    Booking,
    BookingField,
    BookingFieldValue,
    BookingStatus,
    BookingStatusChange,
)
from bookings.signals import booking_status_changed

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None


def acting_user(actor: Actor) -> Any:
    """The user to record as having acted, or None for anonymous and system actions."""
    return actor if actor is not None and actor.is_authenticated else None


def _announce_after_commit(change: BookingStatusChange) -> None:
    def send() -> None:
        for receiver, result in booking_status_changed.send_robust(sender=Booking, change=change):
            if isinstance(result, Exception):
                logger.error(
                    "Receiver %r failed for status change %s of booking %s",
                    receiver,
                    change.pk,
                    change.booking_id,
                    exc_info=result,
                )

    transaction.on_commit(send)


@transaction.atomic
def booking_create(
    *,
    object: BookableObject,
    start: datetime,
    end: datetime,
    status: BookingStatus,
    customer_name: str,
    customer_email: str = "",
    actor: Actor = None,
    source: str = BookingStatusChange.Source.CREATED,
) -> Booking:
    booking = Booking(
        object=object,
        start=start,
        end=end,
        status=status,
        customer_name=customer_name,
        customer_email=customer_email,
    )
    booking.full_clean()
    booking.save()
    record_initial_status(booking=booking, actor=actor, source=source)
    return booking


def record_initial_status(
    *, booking: Booking, actor: Actor = None, source: str = BookingStatusChange.Source.CREATED
) -> BookingStatusChange:
    """History and announcement for a booking that was just created in its first status."""
    change = BookingStatusChange.objects.create(
        booking=booking, from_status=None, to_status=booking.status, changed_by=acting_user(actor), source=source
    )
    _announce_after_commit(change)
    return change


# No savepoint of its own inside a caller's transaction: a failure here fails the caller's block, which is
# what every caller wants (the open path wraps it in its own savepoint); two statements fewer per change.
@transaction.atomic(savepoint=False)
def booking_change_status(
    *,
    booking: Booking,
    status: BookingStatus,
    actor: Actor = None,
    source: str = BookingStatusChange.Source.ADMIN,
) -> BookingStatusChange | None:
    """Move BOOKING to STATUS, record who did it, and announce it once after commit.

    Returns None (no history, no announcement) when the booking already has that status. The row
    is locked so that two concurrent changes record a truthful from → to chain.
    """
    locked = Booking.objects.select_for_update().get(pk=booking.pk)
    if locked.status_id == status.pk:
        booking.status = locked.status
        return None
    change = BookingStatusChange.objects.create(
        booking=locked,
        from_status_id=locked.status_id,
        to_status=status,
        changed_by=acting_user(actor),
        source=source,
    )
    Booking.objects.filter(pk=locked.pk).update(status=status, updated_at=change.changed_at)
    booking.status = status
    booking.updated_at = change.changed_at
    _announce_after_commit(change)
    return change


def booking_set_field_value(*, booking: Booking, field: BookingField, value: Any) -> BookingFieldValue:
    """Set FIELD of BOOKING to VALUE: one statement, an upsert on the (booking, field) unique constraint, so two
    writers at once cannot both insert, and no row lock or savepoint is needed around it."""
    field_value = BookingFieldValue(booking=booking, field=field)
    field_value.set_value(value)
    BookingFieldValue.objects.bulk_create(
        [field_value],
        update_conflicts=True,
        unique_fields=["booking", "field"],
        update_fields=["text_value", "number_value", "datetime_value"],
    )
    return field_value
