"""Small explicit builders for the opening tests (also used by the API and end-to-end tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import Group, User
from django.utils import timezone

from bookings.models import BookableObject, Booking, BookingField, BookingStatus
from integrations.models import CachedLock, Integration, LockMapping
from ireserve_salto.celery import app
from tests.fake_salto import FRONT_DOOR, IQ_ID, PASSWORD, PIN, SECRET, SITE_ID, SITE_UID, USERNAME


@dataclass
class World:
    new: BookingStatus
    paid: BookingStatus
    checkin: BookingStatus
    cancelled: BookingStatus
    building: BookableObject
    studio: BookableObject
    garage: BookableObject
    last_open: BookingField
    integration: Integration


def _status(code: int, name: str) -> BookingStatus:
    # The default statuses come from a data migration; reuse them by code.
    return BookingStatus.objects.get_or_create(code=code, defaults={"name": name})[0]


def make_world(**integration_fields: Any) -> World:
    new = _status(10, "New")
    paid = _status(30, "Paid")
    checkin = _status(55, "Checked in (test)")
    cancelled = _status(70, "Cancelled")
    building = BookableObject.objects.create(name="Building A")
    studio = BookableObject.objects.create(name="Studio 2", parent=building)
    garage = BookableObject.objects.create(name="Garage")
    last_open = BookingField.objects.create(
        name="Last open", technical_name="custom01", field_type=BookingField.FieldType.DATETIME
    )
    values: dict[str, Any] = {
        "name": "Salto KS acceptance",
        "environment": "acceptance",
        "site_uid": SITE_UID,
        "site_id": SITE_ID,
        "username": USERNAME,
        "password": PASSWORD,
        "iq_id": IQ_ID,
        "iq_secret": SECRET,
        "current_pin": PIN,
        "activation_state": Integration.ActivationState.ACTIVATED,
        "activated_at": timezone.now(),
        "minutes_before": 15,
        "last_open_field": last_open,
        "checkin_status": checkin,
        "is_active": True,
        **integration_fields,
    }
    integration = Integration.objects.create(**values)
    # Checked-in guests may open again (people go in and out); that is what makes the loop guard matter.
    integration.open_statuses.set([paid, checkin])
    LockMapping.objects.create(integration=integration, object=building, lock_id=FRONT_DOOR, lock_name="Front door")
    CachedLock.objects.create(
        integration=integration, lock_id=FRONT_DOOR, name="Front door", iq_id=IQ_ID, refreshed_at=timezone.now()
    )
    return World(new, paid, checkin, cancelled, building, studio, garage, last_open, integration)


def make_booking(
    world: World,
    *,
    status: BookingStatus | None = None,
    obj: BookableObject | None = None,
    start: datetime | None = None,
    hours: float = 2,
) -> Booking:
    start = start or timezone.now() - timedelta(minutes=5)
    return Booking.objects.create(
        object=obj or world.studio,
        start=start,
        end=start + timedelta(hours=hours),
        status=status or world.new,
        customer_name="Guest",
    )


def make_user(username: str, *, group: str | None = None, **fields: Any) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, is_staff=True, **fields)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@contextmanager
def eager_celery() -> Iterator[None]:
    """Run tasks in-process, whatever broker the settings name."""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = previous
