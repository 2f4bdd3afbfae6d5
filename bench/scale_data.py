"""A customer's size, built through the product's own models: objects, locks, mappings, bookings, open requests.

    build_scale_data(scale=100)                        # the console pages' data (bench/scale.py)
    build_scale_data(scale=100, sandbox_state=state)   # the same, openable against a sandbox in this process

1x is 20 objects (5 main objects with 3 sub-objects each), 5 cached locks, 5 mappings, 1,000 bookings; every
count grows linearly with SCALE (100x: 2,000 objects, 500 locks, 500 mappings, 100,000 bookings). Rows are made
with bulk_create in batches, so 100x builds in well under a minute on PostgreSQL.

The shape, so that every rule of the open path and every console state has rows at any scale:
- main object i is "Building i", its sub-objects "Building i › Unit i.1" … ".3"; lock i is named "Building i";
- every main object but the last is mapped to its lock (sub-objects open through their parent); the wildcard
  maps to the last lock, so the last main object's bookings open through the wildcard and the bulk "same name"
  action has one object to propose;
- every 25th lock is offline; all locks are on the integration's IQ (so the integration may be active);
- the integration is active and its IQ activated (with a sandbox: with the sandbox's real secret and PIN, and
  the locks added to the sandbox's site), open statuses Paid, check-in Checked in, the last-open field custom01;
- bookings cycle over all objects, a tenth of them has an open request (with a send when one was made);
  `openable_booking_ids` are 5 x SCALE bookings in Option that start now, on distinct objects, for an open-path
  benchmark to move to Paid.

Django's models are imported inside the functions: a benchmark configures its environment first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SUBS_PER_MAIN = 3
BATCH = 5_000
OFFLINE_EVERY = 25  # every 25th lock is offline
OPEN_REQUESTS_EVERY = 10  # one booking in ten has an open request
INTEGRATION_NAME = "Salto KS acceptance (scale)"
PLACEHOLDER_SECRET = "scale-bench-iq-secret"  # without a sandbox: the pages never use it
PLACEHOLDER_PIN = "1234"


@dataclass(frozen=True)
class ScaleSizes:
    main_objects: int
    objects: int
    locks: int
    mappings: int
    bookings: int
    open_requests: int


def sizes_for(scale: int) -> ScaleSizes:
    if scale < 1:
        raise ValueError("scale must be at least 1")
    main = 5 * scale
    bookings = 1_000 * scale
    return ScaleSizes(
        main_objects=main,
        objects=main * (1 + SUBS_PER_MAIN),
        locks=main,
        mappings=main,
        bookings=bookings,
        open_requests=bookings // OPEN_REQUESTS_EVERY,
    )


@dataclass(frozen=True)
class ScaleWorld:
    scale: int
    sizes: ScaleSizes
    integration_id: int
    lock_ids: list[str]
    main_object_ids: list[int]
    sample_booking_id: int  # a booking on a sub-object, with its status history and an open request
    openable_booking_ids: list[int]
    option_status_id: int
    paid_status_id: int
    checkin_status_id: int


def lock_id_for(index: int) -> str:
    return f"5ca1e000-0000-4000-8000-{index:012d}"


def main_name(index: int) -> str:
    return f"Building {index:04d}"


def build_scale_data(*, scale: int, sandbox_state: Any = None, now: datetime | None = None) -> ScaleWorld:
    """Everything at SCALE in the current database (which must not hold another scale world)."""
    from django.db import transaction
    from django.utils import timezone

    from bookings.models import BookableObject, Booking, BookingField, BookingStatus, BookingStatusChange
    from integrations.models import CachedLock, Integration, LockMapping
    from locks.sandbox.demo import DEMO_IQ_ID, DEMO_PASSWORD, DEMO_SITE_ID, DEMO_SITE_UID, DEMO_USERNAME

    sizes = sizes_for(scale)
    now = now or timezone.now()
    statuses = {s.code: s for s in BookingStatus.objects.all()}
    option, definitive, paid, checkin, cancelled = (statuses[c] for c in (10, 20, 30, 50, 70))
    if sandbox_state is not None:
        activation = sandbox_state.activate(DEMO_IQ_ID)
        secret, pin = activation["secret"], activation["pin"]
    else:
        secret, pin = PLACEHOLDER_SECRET, PLACEHOLDER_PIN

    with transaction.atomic():
        last_open = BookingField.objects.get_or_create(
            technical_name="custom01",
            defaults={"name": "Last opened", "field_type": BookingField.FieldType.DATETIME},
        )[0]
        integration = Integration.objects.create(
            name=INTEGRATION_NAME,
            environment="acceptance",
            site_uid=DEMO_SITE_UID,
            site_id=DEMO_SITE_ID,
            site_resolved_at=now,
            username=DEMO_USERNAME,
            password=DEMO_PASSWORD,
            access_tested_at=now,
            access_test_ok=True,
            access_test_message="Access OK (scale data)",
            iq_id=DEMO_IQ_ID,
            iq_secret=secret,
            current_pin=pin,
            activation_state=Integration.ActivationState.ACTIVATED,
            activated_at=now,
            minutes_before=15,
            last_open_field=last_open,
            checkin_status=checkin,
            is_active=True,
            locks_refreshed_at=now,
            locks_refresh_message=f"GET locks: {sizes.locks} locks in the site.",
        )
        integration.open_statuses.set([paid])

        mains = BookableObject.objects.bulk_create(
            [BookableObject(name=main_name(i)) for i in range(1, sizes.main_objects + 1)], batch_size=BATCH
        )
        subs = BookableObject.objects.bulk_create(
            [
                BookableObject(name=f"Unit {i:04d}.{j}", parent=main)
                for i, main in enumerate(mains, start=1)
                for j in range(1, SUBS_PER_MAIN + 1)
            ],
            batch_size=BATCH,
        )
        locks = CachedLock.objects.bulk_create(
            [
                CachedLock(
                    integration=integration,
                    lock_id=lock_id_for(i),
                    name=main_name(i),
                    iq_id=DEMO_IQ_ID,
                    iq_name="IQ Reception",
                    online=i % OFFLINE_EVERY != 0,
                    refreshed_at=now,
                )
                for i in range(1, sizes.locks + 1)
            ],
            batch_size=BATCH,
        )
        mappings = [
            LockMapping(integration=integration, object=main, lock_id=lock.lock_id, lock_name=lock.name)
            for main, lock in zip(mains[:-1], locks[:-1], strict=True)
        ]
        mappings.append(
            LockMapping(integration=integration, object=None, lock_id=locks[-1].lock_id, lock_name=locks[-1].name)
        )
        LockMapping.objects.bulk_create(mappings, batch_size=BATCH)

        everything = [*mains, *subs]
        cycle = [option, definitive, paid, checkin, cancelled]
        bookings: list[Any] = []
        for n in range(sizes.bookings):
            start = now + timedelta(hours=(n % 17_520) - 8_760)  # a year back to a year ahead, hourly
            bookings.append(
                Booking(
                    object=everything[n % len(everything)],
                    start=start,
                    end=start + timedelta(hours=2 + n % 5),
                    status=cycle[n % len(cycle)],
                    customer_name=f"Guest {n:06d}",
                    customer_email=f"guest{n:06d}@example.com",
                )
            )
        # The openable ones: in Option, starting now, on distinct objects (main objects opening through their own
        # mapping, sub-objects through their parent's; those under the last main object through the wildcard).
        openable_objects = everything[::4][: 5 * scale]
        openable = [
            Booking(
                object=obj,
                start=now - timedelta(minutes=5),
                end=now + timedelta(hours=6),
                status=option,
                customer_name=f"Arriving guest {k:04d}",
            )
            for k, obj in enumerate(openable_objects)
        ]
        # Replace the first bookings rather than add to them: the counts stay those of sizes_for().
        bookings[: len(openable)] = openable
        Booking.objects.bulk_create(bookings, batch_size=BATCH)
        BookingStatusChange.objects.bulk_create(
            [
                BookingStatusChange(booking=b, to_status=b.status, source=BookingStatusChange.Source.CREATED)
                for b in bookings
            ],
            batch_size=BATCH,
        )
        sample = next(b for b in bookings[len(openable) :] if b.object.parent_id is not None)
        _build_open_requests(
            integration=integration, bookings=bookings, sample=sample, now=now, count=sizes.open_requests
        )

    if sandbox_state is not None:
        register_locks_in_sandbox(sandbox_state, [(lock.lock_id, lock.name, lock.online) for lock in locks])
    return ScaleWorld(
        scale=scale,
        sizes=sizes,
        integration_id=integration.pk,
        lock_ids=[lock.lock_id for lock in locks],
        main_object_ids=[m.pk for m in mains],
        sample_booking_id=sample.pk,
        openable_booking_ids=[b.pk for b in openable],
        option_status_id=option.pk,
        paid_status_id=paid.pk,
        checkin_status_id=checkin.pk,
    )


def _build_open_requests(*, integration: Any, bookings: list[Any], sample: Any, now: datetime, count: int) -> None:
    from integrations.models import OpenAttempt, OpenRequest

    State, Rule = OpenRequest.State, OpenRequest.Rule
    # (state, rule, outcome of its send or None when nothing was sent)
    kinds = [
        (State.OPENED, Rule.PARENT, OpenAttempt.Outcome.ACCEPTED),
        (State.OPENED, Rule.OBJECT, OpenAttempt.Outcome.ACCEPTED),
        (State.OPENED, Rule.PARENT, OpenAttempt.Outcome.ACCEPTED),
        (State.FAILED, Rule.PARENT, OpenAttempt.Outcome.REJECTED),
        (State.REFUSED, Rule.PARENT, None),
        (State.OPENED, Rule.WILDCARD, OpenAttempt.Outcome.ACCEPTED),
        (State.EXPIRED, Rule.OBJECT, None),
    ]
    chosen = [sample, *(b for b in bookings[::OPEN_REQUESTS_EVERY] if b is not sample)][:count]
    rows = []
    for n, booking in enumerate(chosen):
        state, rule, _ = kinds[n % len(kinds)]
        created = now - timedelta(minutes=13 * (count - n))  # oldest first, the newest a few minutes ago
        rows.append(
            OpenRequest(
                booking=booking,
                integration=integration,
                lock_id=lock_id_for(1 + n % 5),
                lock_name=main_name(1 + n % 5),
                rule=rule,
                trigger=OpenRequest.Trigger.STATUS_CHANGE,
                state=state,
                reason="" if state == State.OPENED else f"{state.label} (scale data)",
                outcome_code="" if state == State.OPENED else str(state),
                created_at=created,
                sent_at=created + timedelta(milliseconds=30),
                finished_at=created + timedelta(milliseconds=140),
                duration_ms=110,
            )
        )
    with _explicit(OpenRequest, "created_at"):
        OpenRequest.objects.bulk_create(rows, batch_size=BATCH)
    OpenAttempt.objects.bulk_create(
        [
            OpenAttempt(
                open_request=row,
                number=1,
                sent_at=row.sent_at,
                answered_at=row.finished_at,
                outcome=outcome,
                http_status=200 if outcome == OpenAttempt.Outcome.ACCEPTED else 409,
                duration_ms=110,
            )
            for n, row in enumerate(rows)
            if (outcome := kinds[n % len(kinds)][2]) is not None
        ],
        batch_size=BATCH,
    )


@contextmanager
def _explicit(model: Any, field_name: str) -> Iterator[None]:
    """Let bulk_create keep the given timestamps of an auto_now_add field (history spread over weeks)."""
    field = model._meta.get_field(field_name)
    saved = field.auto_now_add
    field.auto_now_add = False
    try:
        yield
    finally:
        field.auto_now_add = saved


def register_locks_in_sandbox(state: Any, locks: list[tuple[str, str, bool]]) -> None:
    """Add the cached locks to the sandbox's site on the demo IQ, so that opening them works.

    The sandbox has no public call to add locks (it serves the demo's eight); this reaches into its world under
    its own lock. Benchmark plumbing only: a sandbox `add_lock` would be the clean way (locks/sandbox is not ours
    to change here).
    """
    from locks.sandbox.demo import DEMO_IQ_ID
    from locks.sandbox.state import Lock

    with state._lock:
        for n, (lock_id, name, online) in enumerate(locks, start=1):
            mac = f"5C.{n // 65536 % 256:02X}.{n // 256 % 256:02X}.{n % 256:02X}"
            state._world.locks[lock_id] = Lock(lock_id, name, DEMO_IQ_ID, mac, online)


def clear_scale_data() -> None:
    """Remove what build_scale_data made (and everything hanging off it), keeping statuses and fields."""
    from bookings.models import BookableObject, Booking
    from integrations.models import Integration

    Integration.objects.filter(name=INTEGRATION_NAME).delete()
    Booking.objects.all().delete()
    BookableObject.objects.filter(parent__isnull=False).delete()
    BookableObject.objects.all().delete()
