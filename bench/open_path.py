"""The open path at a customer's size: queries, rows read and CPU per open, at 1×, 10× and 100× the data.

    .venv/bin/python -m bench.open_path [--opens 30] [--sizes 1,10,100]

Each size is the data made through the product's own models (1× = 20 objects as 5 main objects with 3
sub-objects each, 5 cached locks, 5 mappings, 1,000 bookings; 100× = 2,000 objects, 500 locks, 500 mappings,
100,000 bookings), on PostgreSQL with real commits, against the Salto KS sandbox in a thread of this process.
Every open is a booking moving into an allowed status, measured in two halves:

- web: `booking_change_status` → its commit → the receiver → `open_request_create` (the task's message is
  recorded instead of sent, so the worker half can be measured alone);
- worker: `open_request_perform` (claim, the policy again, the send, the record, the booking's check-in).

Per half: statements (as Django logs them, BEGIN and COMMIT left out), rows returned (SELECT and RETURNING, from the
driver's row count), and CPU time (`time.process_time`, which includes the sandbox thread's share, so the
baseline below is measured the same way). Baseline, same run: a bare `SaltoClient.open_lock` with the token
cached, whose CPU time is mostly the sandbox's and the HTTP stack's.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/ireserve_bench_path, dropped and
re-created), BENCH_REDIS_URL (the cache; default redis://127.0.0.1:6379/15, flushed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench._common import BENCH_REDIS_URL, apply_env, bench_env, django_setup, timed_sandbox, wait_for_open
from bench.open_latency import build_world, recreate_database, require_loopback, sandbox_env

PATH_PG_URL = "postgres://postgres@127.0.0.1:5432/ireserve_bench_path"
BOOKINGS_PER_SIZE = 1000


@dataclass
class Reads:
    queries: int = 0
    rows: int = 0
    cpu: float = 0.0


@dataclass
class Half:
    queries: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, reads: Reads) -> None:
        self.queries.append(reads.queries)
        self.rows.append(reads.rows)
        self.cpu.append(reads.cpu)

    def line(self) -> str:
        q, r = sorted(set(self.queries)), sorted(set(self.rows))
        return (
            f"queries {'/'.join(map(str, q)):>7}  rows {'/'.join(map(str, r)):>9}  "
            f"CPU median {statistics.median(self.cpu) * 1000:6.2f} ms  p90 {_p90(self.cpu) * 1000:6.2f} ms"
        )


def _p90(values: list[float]) -> float:
    return statistics.quantiles(sorted(values), n=10, method="inclusive")[8] if len(values) > 1 else values[0]


@contextmanager
def counting() -> Iterator[Reads]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    reads = Reads()

    def count(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        cursor = context["cursor"]
        if cursor.description is not None and cursor.rowcount > 0:
            reads.rows += cursor.rowcount
        return result

    started = time.process_time()
    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(count):
        yield reads
    reads.cpu = time.process_time() - started
    # BEGIN and COMMIT are the transaction's edges, not statements of the path.
    reads.queries = sum(1 for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT"))
    if os.environ.get("BENCH_SHOW_SQL"):
        for query in captured.captured_queries:
            print("   SQL", query["sql"][:160])
        print("   ---")


def grow(world: dict[str, Any], old: int, new: int) -> None:
    """From the data of OLD× to NEW× (beyond the world's own rows), made in bulk through the models."""
    from django.utils import timezone

    from bookings.models import BookableObject, Booking
    from integrations.models import CachedLock, LockMapping, OpenRequest

    integration = world["integration"]
    now = timezone.now()
    numbers = range(5 * old, 5 * new)
    parents = BookableObject.objects.bulk_create(BookableObject(name=f"Block {n}") for n in numbers)
    subs = BookableObject.objects.bulk_create(
        BookableObject(name=f"Unit {n}.{k}", parent=parent) for n, parent in enumerate(parents) for k in range(3)
    )
    CachedLock.objects.bulk_create(
        CachedLock(integration=integration, lock_id=f"lock-{n}", name=f"Unit lock {n}", refreshed_at=now)
        for n in numbers
    )
    LockMapping.objects.bulk_create(
        LockMapping(integration=integration, object=parent, lock_id=f"lock-{n}", lock_name=f"Unit lock {n}")
        for n, parent in zip(numbers, parents, strict=True)
    )
    objects = parents + subs
    last = BOOKINGS_PER_SIZE * new
    for first in range(BOOKINGS_PER_SIZE * old, last, 10_000):
        batch = Booking.objects.bulk_create(
            Booking(
                object=objects[n % len(objects)],
                start=now - timedelta(days=n % 400),
                end=now - timedelta(days=n % 400) + timedelta(hours=3),
                status=world["option"],
                customer_name=f"Guest {n}",
            )
            for n in range(first, min(first + 10_000, last))
        )
        OpenRequest.objects.bulk_create(
            OpenRequest(booking=b, trigger="staff", state=OpenRequest.State.OPENED, lock_id="lock-0")
            for b in batch[::5]
        )


def measure(sandbox: Any, opened: list[float], world: dict[str, Any], *, opens: int) -> tuple[Half, Half]:
    from django.utils import timezone

    from bookings.models import Booking, BookingStatusChange
    from bookings.services import booking_change_status
    from integrations.models import OpenRequest
    from integrations.services import opening

    studio = world["booking"].object
    queued: list[int] = []
    real_enqueue = opening.open_request_enqueue
    opening.open_request_enqueue = lambda *, open_request_id: queued.append(open_request_id)  # type: ignore[assignment]
    web, worker = Half(), Half()
    try:
        for i in range(opens + 3):
            start = timezone.now() - timedelta(minutes=5)
            booking = Booking.objects.create(
                object=studio, start=start, end=start + timedelta(hours=2), status=world["option"], customer_name="B"
            )
            expected = len(opened) + 1
            with counting() as web_reads:
                booking_change_status(booking=booking, status=world["paid"], source=BookingStatusChange.Source.ADMIN)
            request_id = queued.pop()
            with counting() as worker_reads:
                outcome = opening.open_request_perform(open_request_id=request_id)
            if outcome.state != OpenRequest.State.OPENED:
                raise SystemExit(f"open {i} ended {outcome.state}: {OpenRequest.objects.get(pk=request_id).reason}")
            wait_for_open(sandbox, opened, expected, 10)
            if i >= 3:  # the first opens fill caches (content types, the token, the connection)
                web.add(web_reads)
                worker.add(worker_reads)
    finally:
        opening.open_request_enqueue = real_enqueue  # type: ignore[assignment]
    return web, worker


def measure_baseline(sandbox: Any, opened: list[float], world: dict[str, Any], *, opens: int) -> list[float]:
    from integrations.salto import client_for

    integration = world["integration"]
    cpu: list[float] = []
    with client_for(integration) as client:
        client.fetch_token()
        for i in range(opens + 3):
            expected = len(opened) + 1
            started = time.process_time()
            client.open_lock(
                integration.site_id, world["lock_id"], secret=integration.iq_secret, pin=integration.current_pin
            )
            wait_for_open(sandbox, opened, expected, 10)
            if i >= 3:
                cpu.append(time.process_time() - started)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opens", type=int, default=30)
    parser.add_argument("--sizes", default="1,10,100")
    args = parser.parse_args()

    database_url = os.environ.get("BENCH_DATABASE_URL", PATH_PG_URL)
    redis_url = os.environ.get("BENCH_REDIS_URL", BENCH_REDIS_URL)
    require_loopback(database_url, "BENCH_DATABASE_URL")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"open path: {args.opens} opens per size, sizes {sizes}, PostgreSQL, OPEN_CONFIRM_OPENS off")
    with timed_sandbox() as (sandbox, opened):
        apply_env(
            bench_env(
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                OPEN_CONFIRM_OPENS="0",
                **sandbox_env(sandbox.url),
            )
        )
        grown = 0
        for size in sizes:
            if grown == 0:
                recreate_database(database_url)
                django_setup()
                import redis
                from django.core.management import call_command

                redis.Redis.from_url(redis_url).flushdb()
                call_command("migrate", verbosity=0)
                world = build_world(sandbox)
            started = time.perf_counter()
            grow(world, grown, size)
            grown = size
            built = time.perf_counter() - started
            baseline = measure_baseline(sandbox, opened, world, opens=args.opens)
            web, worker = measure(sandbox, opened, world, opens=args.opens)
            print(f"\n{size:>4}×  (data built in {built:.1f} s)")
            print(f"  web     {web.line()}")
            print(f"  worker  {worker.line()}")
            base = statistics.median(baseline)
            print(f"  baseline (bare open_lock, same run): CPU median {base * 1000:6.2f} ms")
            print(
                f"  in all: {web.queries[0] + worker.queries[0]} statements; CPU × baseline: web "
                f"{statistics.median(web.cpu) / base:.1f}, worker {statistics.median(worker.cpu) / base:.1f}"
            )


if __name__ == "__main__":
    main()
