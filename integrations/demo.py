"""Demo data: a venue with sub-objects, a date-time booking field, bookings around today and two accounts,
and an Acceptance integration pre-filled with the bundled sandbox's account.

Idempotent, so `make demo` can run again on the same database without duplicating anything. The one module of
the integrations app (with the demo command) that may know the sandbox: production code never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from bookings.models import BookableObject, Booking, BookingField, BookingStatus
from bookings.services import booking_create
from integrations.models import Integration
from locks.sandbox.demo import DEMO_IQ_ID, DEMO_PASSWORD, DEMO_SITE_UID, DEMO_USERNAME

OPERATOR_GROUP = "Integration operator"
STAFF_GROUP = "Booking staff"


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    role: str


OPERATOR = DemoAccount("operator", "operator-demo-2026", OPERATOR_GROUP)
FRONT_DESK = DemoAccount("frontdesk", "frontdesk-demo-2026", STAFF_GROUP)
DEMO_ACCOUNTS = (OPERATOR, FRONT_DESK)

# Main objects and their sub-objects; names match the sandbox's locks so mapping is obvious.
VENUE: dict[str, list[str]] = {
    "Building A": ["Studio 1", "Studio 2", "Studio 3"],
    "Meeting room A": [],
    "Garage": [],
}


def _today_at(hour: int, minute: int = 0) -> datetime:
    local_today = timezone.localdate()
    return timezone.make_aware(datetime.combine(local_today, time(hour, minute)))


@transaction.atomic
def seed_demo_data() -> None:
    for account in DEMO_ACCOUNTS:
        user, created = User.objects.get_or_create(username=account.username, defaults={"is_staff": True})
        if created:
            user.set_password(account.password)
            user.save()
        user.groups.add(Group.objects.get(name=account.role))

    objects: dict[str, BookableObject] = {}
    for main_name, sub_names in VENUE.items():
        main, _ = BookableObject.objects.get_or_create(name=main_name, parent=None)
        objects[main_name] = main
        for sub_name in sub_names:
            objects[sub_name], _ = BookableObject.objects.get_or_create(name=sub_name, parent=main)

    BookingField.objects.get_or_create(
        technical_name="custom01", defaults={"name": "Last opened", "field_type": BookingField.FieldType.DATETIME}
    )
    BookingField.objects.get_or_create(
        technical_name="custom02", defaults={"name": "Access notes", "field_type": BookingField.FieldType.TEXT}
    )
    BookingField.objects.get_or_create(
        technical_name="custom03", defaults={"name": "Guests", "field_type": BookingField.FieldType.NUMBER}
    )

    # Bookings "around today": a fresh set whenever none of the earlier ones is still to come.
    if Booking.objects.filter(end__gt=timezone.now()).exists():
        return
    status = {s.name: s for s in BookingStatus.objects.all()}
    now = timezone.now()
    demo_bookings = [
        # (object, start, end, status, customer)
        ("Studio 2", now + timedelta(minutes=10), now + timedelta(hours=3), "Option", "Ada Lovelace"),
        ("Studio 1", now - timedelta(hours=1), now + timedelta(hours=2), "Definitive", "Grace Hopper"),
        ("Meeting room A", now + timedelta(minutes=30), now + timedelta(hours=2), "Option", "Alan Turing"),
        ("Garage", now + timedelta(days=1), now + timedelta(days=1, hours=4), "Option", "Katherine Johnson"),
        ("Studio 3", _today_at(8) - timedelta(days=1), _today_at(12) - timedelta(days=1), "Paid", "Edsger Dijkstra"),
        ("Building A", now + timedelta(days=2), now + timedelta(days=2, hours=8), "Definitive", "Barbara Liskov"),
    ]
    for object_name, start, end, status_name, customer in demo_bookings:
        booking_create(
            object=objects[object_name],
            start=start,
            end=end,
            status=status[status_name],
            customer_name=customer,
            customer_email=f"{customer.split()[0].lower()}@example.com",
        )


def demo_integration_prefill(*, name: str = "Salto KS acceptance (sandbox)", include_iq_id: bool = True) -> Integration:
    """An Acceptance integration holding the sandbox's account and Site UID, not resolved or activated.

    The demo points SALTO_KS_ACCEPTANCE_{IDENTITY,API}_URL and the client id/secret at the sandbox; a new
    operator then walks the manual: Resolve site ID, Test / request access, GET PIN, Set PIN, GET locks,
    mapping, Details, Active. Idempotent: an existing integration of that name is left alone.
    """
    existing = Integration.objects.filter(name=name).first()
    if existing is not None:
        return existing
    integration = Integration(
        name=name,
        environment=Integration.EnvironmentChoice.ACCEPTANCE,
        site_uid=DEMO_SITE_UID,
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        iq_id=DEMO_IQ_ID if include_iq_id else "",
    )
    integration._change_reason = "created by the demo; Password changed"  # type: ignore[attr-defined]
    integration.save()
    return integration
