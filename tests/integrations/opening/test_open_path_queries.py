"""The open path reads only what one booking needs: the same queries, and the same rows, whatever the data size.

Status change → open recorded, in two halves: the web side (the status change, the receiver, the request's
creation) and the worker side (claim, the policy again, the send, the record), with Salto mocked at the
transport. Measured on a small world and on one with many more objects, mappings, locks, bookings and open
requests of other bookings; `bench/open_path.py` prints the same figures at 1×, 10× and 100×.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import respx
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookings.models import BookableObject, Booking, BookingStatusChange
from bookings.services import booking_change_status
from integrations.models import CachedLock, Integration, LockMapping, OpenRequest
from integrations.selectors import OpenAssessor
from integrations.services import opening
from tests.fake_salto import salto_that_opens_the_front_door
from tests.integrations.opening.builders import World, make_booking, make_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def salto(settings: Any) -> Iterator[respx.Router]:
    settings.OPEN_CONFIRM_OPENS = False
    with salto_that_opens_the_front_door(settings) as router:
        yield router


def grow(world: World, size: int) -> None:
    """SIZE more main objects with 3 sub-objects each, as many mapped locks, bookings and finished requests."""
    parents = BookableObject.objects.bulk_create(BookableObject(name=f"Block {n}") for n in range(size))
    subs = BookableObject.objects.bulk_create(
        BookableObject(name=f"Unit {n}.{k}", parent=parent) for n, parent in enumerate(parents) for k in range(3)
    )
    now = timezone.now()
    CachedLock.objects.bulk_create(
        CachedLock(integration=world.integration, lock_id=f"lock-{n}", name=f"Lock {n}", refreshed_at=now)
        for n in range(size)
    )
    LockMapping.objects.bulk_create(
        LockMapping(integration=world.integration, object=parent, lock_id=f"lock-{n}", lock_name=f"Lock {n}")
        for n, parent in enumerate(parents)
    )
    bookings = Booking.objects.bulk_create(
        Booking(object=sub, start=now, end=now + timedelta(hours=2), status=world.new, customer_name="Other")
        for sub in subs
    )
    OpenRequest.objects.bulk_create(
        OpenRequest(booking=booking, trigger="staff", state=OpenRequest.State.OPENED) for booking in bookings
    )


@dataclass
class Reads:
    queries: int
    rows: int


@contextmanager
def counting() -> Iterator[Reads]:
    """Queries and rows returned (SELECTs and RETURNING) while inside."""
    reads = Reads(0, 0)

    def count(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        cursor = context["cursor"]
        if cursor.description is not None and cursor.rowcount > 0:
            reads.rows += cursor.rowcount
        return result

    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(count):
        yield reads
    reads.queries = len(captured.captured_queries)


def one_open(world: World, monkeypatch: pytest.MonkeyPatch, capture: Any) -> tuple[Reads, Reads]:
    booking = make_booking(world, status=world.new)
    queued: list[int] = []
    monkeypatch.setattr(opening, "open_request_enqueue", lambda *, open_request_id: queued.append(open_request_id))
    with counting() as web, capture(execute=True):
        booking_change_status(booking=booking, status=world.paid, source=BookingStatusChange.Source.ADMIN)
    [request_id] = queued
    with counting() as worker:
        assert opening.open_request_perform(open_request_id=request_id).state == OpenRequest.State.OPENED
    return web, worker


def test_the_open_path_reads_the_same_whatever_the_data_size(
    salto: respx.Router, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    world = make_world()
    one_open(world, monkeypatch, django_capture_on_commit_callbacks)  # warm: content types, statuses
    small = one_open(world, monkeypatch, django_capture_on_commit_callbacks)
    grow(world, 60)
    large = one_open(world, monkeypatch, django_capture_on_commit_callbacks)

    (small_web, small_worker), (large_web, large_worker) = small, large
    assert (large_web.queries, large_worker.queries) == (small_web.queries, small_worker.queries)
    assert (large_web.rows, large_worker.rows) == (small_web.rows, small_worker.rows)
    print(f"web {small_web}, worker {small_worker}")


def test_the_scoped_assessment_answers_as_the_full_read(salto: respx.Router, monkeypatch: pytest.MonkeyPatch) -> None:
    # given two integrations, one inactive, with object, parent and wildcard mappings and an offline lock
    world = make_world()
    other = Integration.objects.create(
        name="Another site", environment="acceptance", is_active=False, minutes_before=5, site_id="x"
    )
    LockMapping.objects.create(integration=other, object=world.garage, lock_id="g-1", lock_name="Garage gate")
    LockMapping.objects.create(integration=other, object=None, lock_id="g-2", lock_name="Other default")
    CachedLock.objects.create(integration=other, lock_id="g-1", name="Garage gate", refreshed_at=timezone.now())
    loner = BookableObject.objects.create(name="Unmapped shed")
    bookings = [
        make_booking(world, status=world.paid),  # via the parent's mapping
        make_booking(world, status=world.paid, obj=world.building),  # its own
        make_booking(world, status=world.paid, obj=world.garage),  # only the inactive integration maps it
        make_booking(world, status=world.new, obj=world.studio),  # a status that does not open
        make_booking(world, status=world.paid, obj=loner),  # nothing maps it
    ]
    for active_other in (False, True):
        Integration.objects.filter(pk=other.pk).update(is_active=active_other)
        full = OpenAssessor()
        for booking in bookings:
            fresh = Booking.objects.select_related("object__parent", "status").get(pk=booking.pk)
            scoped = OpenAssessor.for_booking(fresh, now=full.now).assess(fresh)
            expected = full.assess(fresh)
            assert scoped.decision == expected.decision, booking.object
            assert scoped.integration == expected.integration, booking.object
