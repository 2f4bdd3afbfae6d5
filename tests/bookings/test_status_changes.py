"""`booking_change_status` records history and announces each change once, after commit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from bookings.models import BookableObject, Booking, BookingStatus, BookingStatusChange
from bookings.services import booking_change_status, booking_create
from bookings.signals import booking_status_changed

pytestmark = pytest.mark.django_db


@pytest.fixture
def announcements() -> Iterator[list[BookingStatusChange]]:
    received: list[BookingStatusChange] = []

    def receiver(sender: Any, change: BookingStatusChange, **kwargs: Any) -> None:
        received.append(change)

    booking_status_changed.connect(receiver, weak=False, dispatch_uid="test-announcements")
    yield received
    booking_status_changed.disconnect(dispatch_uid="test-announcements")


def status(name: str) -> BookingStatus:
    return BookingStatus.objects.get(name=name)


def make_booking() -> Booking:
    room = BookableObject.objects.create(name="Room")
    now = timezone.now()
    return Booking.objects.create(
        object=room, start=now, end=now + timedelta(hours=2), status=status("Option"), customer_name="Ada"
    )


def test_the_default_statuses_are_seeded() -> None:
    assert list(BookingStatus.objects.values_list("code", "name")) == [
        (10, "Option"),
        (20, "Definitive"),
        (30, "Paid"),
        (50, "Checked in"),
        (70, "Cancelled"),
    ]


def test_it_announces_once_after_commit(
    announcements: list[BookingStatusChange], django_capture_on_commit_callbacks: Any
) -> None:
    # given
    booking = make_booking()
    staff = User.objects.create_user("frontdesk")
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        change = booking_change_status(booking=booking, status=status("Paid"), actor=staff)
    # then nothing is announced before the commit
    assert announcements == []
    for callback in callbacks:
        callback()
    assert announcements == [change]
    assert change is not None
    assert (change.from_status, change.to_status, change.changed_by) == (status("Option"), status("Paid"), staff)
    assert Booking.objects.get(pk=booking.pk).status == status("Paid")


def test_it_does_not_announce_on_rollback(
    announcements: list[BookingStatusChange], django_capture_on_commit_callbacks: Any
) -> None:
    booking = make_booking()
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                booking_change_status(booking=booking, status=status("Paid"))
                raise RuntimeError("the surrounding work failed")
        except RuntimeError:
            pass
    assert announcements == []
    assert Booking.objects.get(pk=booking.pk).status == status("Option")
    assert not BookingStatusChange.objects.filter(booking=booking).exists()


def test_it_announces_nothing_when_the_status_does_not_change(
    announcements: list[BookingStatusChange], django_capture_on_commit_callbacks: Any
) -> None:
    booking = make_booking()
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_change_status(booking=booking, status=status("Option")) is None
    assert announcements == []


def test_each_change_is_announced_once_in_order(
    announcements: list[BookingStatusChange], django_capture_on_commit_callbacks: Any
) -> None:
    booking = make_booking()
    with django_capture_on_commit_callbacks(execute=True):
        booking_change_status(booking=booking, status=status("Definitive"))
    with django_capture_on_commit_callbacks(execute=True):
        booking_change_status(booking=booking, status=status("Paid"), source=BookingStatusChange.Source.API)
    assert [(c.from_status.name, c.to_status.name, c.source) for c in announcements] == [  # type: ignore[union-attr]
        ("Option", "Definitive", "admin"),
        ("Definitive", "Paid", "api"),
    ]


def test_a_failing_receiver_does_not_stop_the_others(
    announcements: list[BookingStatusChange], django_capture_on_commit_callbacks: Any, caplog: Any
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise ValueError("boom")

    booking_status_changed.connect(broken, weak=False, dispatch_uid="broken")
    try:
        booking = make_booking()
        with django_capture_on_commit_callbacks(execute=True):
            booking_change_status(booking=booking, status=status("Paid"))
    finally:
        booking_status_changed.disconnect(dispatch_uid="broken")
    assert len(announcements) == 1
    assert "failed for status change" in caplog.text


def test_creating_a_booking_records_and_announces_its_first_status(
    announcements: list[BookingStatusChange], django_capture_on_commit_callbacks: Any
) -> None:
    room = BookableObject.objects.create(name="Room")
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        booking = booking_create(
            object=room, start=now, end=now + timedelta(hours=1), status=status("Definitive"), customer_name="Bo"
        )
    assert len(announcements) == 1
    assert announcements[0].booking_id == booking.pk
    assert announcements[0].from_status is None
