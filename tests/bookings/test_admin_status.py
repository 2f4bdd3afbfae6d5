"""The booking page changes the status only when staff changed it there."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from bookings.models import BookableObject, Booking, BookingStatus, BookingStatusChange
from bookings.services import booking_change_status

pytestmark = pytest.mark.django_db


def _form(booking: Booking, status: BookingStatus, **changes: str) -> dict[str, str]:
    start, end = timezone.localtime(booking.start), timezone.localtime(booking.end)
    data = {
        "object": str(booking.object_id),
        "start_0": start.strftime("%Y-%m-%d"),
        "start_1": start.strftime("%H:%M:%S"),
        "end_0": end.strftime("%Y-%m-%d"),
        "end_1": end.strftime("%H:%M:%S"),
        "status": str(status.pk),
        "customer_name": booking.customer_name,
        "customer_email": "",
        "initial-status": str(status.pk),
        **changes,
    }
    for prefix in ("field_values", "status_changes", "open_requests"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})
    return data


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("desk", password="pw"))
    return client


def _booking(status: BookingStatus) -> Booking:
    now = timezone.now()
    room = BookableObject.objects.create(name="Room")
    return Booking.objects.create(
        object=room, start=now, end=now + timedelta(hours=1), status=status, customer_name="Ada"
    )


def test_saving_a_stale_form_does_not_write_the_old_status_back(staff_client: Client) -> None:
    # given staff opened the booking while it was Definitive ...
    definitive, cancelled = BookingStatus.objects.get(name="Definitive"), BookingStatus.objects.get(name="Cancelled")
    booking = _booking(definitive)
    stale_form = _form(booking, definitive, customer_name="Ada L.")
    # ... and meanwhile someone cancelled it
    booking_change_status(booking=booking, status=cancelled)
    # when staff save their form, having changed only the name
    response = staff_client.post(f"/admin/bookings/booking/{booking.pk}/change/", stale_form)
    # then the name is saved and the cancellation stands
    assert response.status_code == 302
    booking.refresh_from_db()
    assert booking.customer_name == "Ada L."
    assert booking.status == cancelled
    assert BookingStatusChange.objects.filter(booking=booking).count() == 1


def test_a_status_changed_in_the_form_goes_through_the_service(staff_client: Client) -> None:
    option, paid = BookingStatus.objects.get(name="Option"), BookingStatus.objects.get(name="Paid")
    booking = _booking(option)
    data = _form(booking, paid)
    data["initial-status"] = str(option.pk)
    staff_client.post(f"/admin/bookings/booking/{booking.pk}/change/", data)
    change = BookingStatusChange.objects.get(booking=booking)
    assert (change.from_status, change.to_status, change.source) == (option, paid, "admin")
