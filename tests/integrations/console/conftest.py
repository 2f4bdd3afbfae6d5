"""Fixtures for the console tests: the fake Salto KS (tests.fake_salto) mocked at the transport, integrations, users."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_httpx2  # noqa: F401  (registers respx's httpcore2 mocker)
import respx
from django.contrib.auth.models import Group, User

from bookings.models import BookableObject, BookingField, BookingStatus
from integrations.models import CachedLock, Integration, LockMapping
from tests import fake_salto
from tests.fake_salto import IQ_ID, PASSWORD, PIN, SECRET, SITE_ID, SITE_UID, USERNAME, use_fake_salto


@pytest.fixture(autouse=True)
def salto_hosts(settings: Any) -> None:
    use_fake_salto(settings, time_zone="Europe/Amsterdam")


@pytest.fixture
def httpx2_mock() -> Iterator[respx.Router]:
    """pytest-httpx2's router (respx on httpcore2), without demanding that every declared route is called:
    several tests declare a route precisely to show it is *not* called."""
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        yield router


@pytest.fixture
def salto(httpx2_mock: respx.Router) -> respx.Router:
    """The mocked Salto KS with a working token endpoint; tests add the API routes they need."""
    fake_salto.token_route(httpx2_mock)
    return httpx2_mock


def make_integration(**values: Any) -> Integration:
    defaults: dict[str, Any] = {
        "name": "Salto KS acceptance",
        "environment": Integration.EnvironmentChoice.ACCEPTANCE,
        "site_uid": SITE_UID,
        "username": USERNAME,
        "password": PASSWORD,
        "iq_id": IQ_ID,
    }
    defaults.update(values)
    return Integration.objects.create(**defaults)


def make_ready(integration: Integration, *, with_mapping: bool = True) -> Integration:
    """All of the manual's steps done (as if the buttons had been clicked)."""
    from django.utils import timezone

    integration.site_id = SITE_ID
    integration.access_test_ok = True
    integration.access_tested_at = timezone.now()
    integration.iq_secret = SECRET
    integration.current_pin = PIN
    integration.activation_state = Integration.ActivationState.ACTIVATED
    integration.activated_at = timezone.now()
    integration.save()
    CachedLock.objects.create(
        integration=integration, lock_id="lock-1", name="Front door", iq_id=IQ_ID, refreshed_at=timezone.now()
    )
    if with_mapping:
        LockMapping.objects.create(integration=integration, object=None, lock_id="lock-1", lock_name="Front door")
    return integration


@pytest.fixture
def integration(db: None) -> Integration:
    return make_integration()


@pytest.fixture
def resolved(integration: Integration) -> Integration:
    integration.site_id = SITE_ID
    integration.save()
    return integration


@pytest.fixture
def objects(db: None) -> dict[str, BookableObject]:
    building = BookableObject.objects.create(name="Building A")
    studio = BookableObject.objects.create(name="Studio 2", parent=building)
    hall = BookableObject.objects.create(name="Hall")
    return {"building": building, "studio": studio, "hall": hall}


@pytest.fixture
def statuses(db: None) -> dict[str, BookingStatus]:
    return {
        "paid": BookingStatus.objects.get_or_create(code=30, defaults={"name": "PAID"})[0],
        "checked_in": BookingStatus.objects.get_or_create(code=50, defaults={"name": "CHECKED IN"})[0],
    }


@pytest.fixture
def booking_fields(db: None) -> dict[str, BookingField]:
    return {
        "opened": BookingField.objects.create(
            name="Last opened", technical_name="custom01", field_type=BookingField.FieldType.DATETIME
        ),
        "note": BookingField.objects.create(
            name="Note", technical_name="custom02", field_type=BookingField.FieldType.TEXT
        ),
    }


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "admin-pass-123")


@pytest.fixture
def operator(db: None) -> User:
    user = User.objects.create_user("operator", "op@example.com", "operator-pass-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Integration operator"))
    return user


@pytest.fixture
def staff(db: None) -> User:
    user = User.objects.create_user("staff", "staff@example.com", "staff-pass-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Booking staff"))
    return user
