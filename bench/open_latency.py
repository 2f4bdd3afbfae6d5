"""Open latency: booking status change → door open recorded by the Salto KS sandbox, through the real path.

    .venv/bin/python -m bench.open_latency [--iterations 30] [--warmup 5] [--no-eager]

Broker path (PostgreSQL + Redis + a Celery worker subprocess started and stopped here):
`booking_change_status` commits → on_commit announcement → receiver → `open_request_create` (row lock,
OpenRequest) → on_commit `perform_open.apply_async` → Redis → worker (solo pool) → claim → policy again →
`SaltoClient.open_lock` → sandbox. The clock starts just before `booking_change_status` and stops when the
sandbox (a thread of this process) appends the open. Baseline, same run, same sandbox: a bare
`SaltoClient.open_lock` with the token already cached.

Eager path (SQLite, no REDIS_URL: the task runs in-process on commit) runs afterwards in a child process,
since it needs other settings; it prints its own table with its own baseline.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/ireserve_bench, dropped and
re-created by this script), BENCH_REDIS_URL (default redis://127.0.0.1:6379/15, flushed by this script).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench._common import (
    BENCH_PG_URL,
    BENCH_REDIS_URL,
    ROOT,
    Summary,
    apply_env,
    bench_env,
    celery_worker,
    django_setup,
    print_table,
    timed_sandbox,
    wait_for_open,
)

QUEUE = "opening-bench"
OPEN_TIMEOUT = 20.0  # seconds one open may take before the benchmark gives up
CHILD_TIMEOUT = 600.0


def require_loopback(url: str, name: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"{name} must point at 127.0.0.1 (got host {host!r})")


def recreate_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("ireserve_bench"):
        sys.exit(f"refusing to drop database {name!r}: the benchmark database name must start with ireserve_bench")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def sandbox_env(sandbox_url: str) -> dict[str, str]:
    from locks.sandbox.demo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

    return {
        "SALTO_KS_ACCEPTANCE_IDENTITY_URL": sandbox_url,
        "SALTO_KS_ACCEPTANCE_API_URL": sandbox_url,
        "SALTO_KS_CLIENT_ID": DEMO_CLIENT_ID,
        "SALTO_KS_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        # Every iteration re-opens the same booking within seconds: no collapsing into the previous request.
        "OPEN_DEDUPE_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }


def build_world(sandbox: Any) -> dict[str, Any]:
    """An active integration on the sandbox, the Front door mapped to Building A, one booking in Studio 2."""
    from django.utils import timezone

    from bookings.models import BookableObject, Booking, BookingField, BookingStatus
    from integrations.models import CachedLock, Integration, LockMapping
    from locks.sandbox.demo import (
        DEMO_IQ_ID,
        DEMO_LOCK_IDS,
        DEMO_PASSWORD,
        DEMO_SITE_ID,
        DEMO_SITE_UID,
        DEMO_USERNAME,
    )

    activation = sandbox.state.activate(DEMO_IQ_ID)
    option = BookingStatus.objects.get(code=10)
    paid = BookingStatus.objects.get(code=30)
    checkin = BookingStatus.objects.get(code=50)
    building = BookableObject.objects.create(name="Building A")
    studio = BookableObject.objects.create(name="Studio 2", parent=building)
    last_open = BookingField.objects.create(
        name="Last opened", technical_name="custom01", field_type=BookingField.FieldType.DATETIME
    )
    integration = Integration.objects.create(
        name="Salto KS acceptance (bench)",
        environment="acceptance",
        site_uid=DEMO_SITE_UID,
        site_id=DEMO_SITE_ID,
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        iq_id=DEMO_IQ_ID,
        iq_secret=activation["secret"],
        current_pin=activation["pin"],
        activation_state=Integration.ActivationState.ACTIVATED,
        activated_at=timezone.now(),
        minutes_before=15,
        last_open_field=last_open,
        checkin_status=checkin,
        is_active=True,
    )
    integration.open_statuses.set([paid])
    front_door = DEMO_LOCK_IDS["Front door"]
    LockMapping.objects.create(integration=integration, object=building, lock_id=front_door, lock_name="Front door")
    CachedLock.objects.create(
        integration=integration, lock_id=front_door, name="Front door", iq_id=DEMO_IQ_ID, refreshed_at=timezone.now()
    )
    start = timezone.now() - timedelta(minutes=5)
    booking = Booking.objects.create(
        object=studio, start=start, end=start + timedelta(hours=6), status=option, customer_name="Bench guest"
    )
    return {
        "integration": integration,
        "booking": booking,
        "option": option,
        "paid": paid,
        "checkin": checkin,
        "lock_id": front_door,
    }


def measure_baseline(
    sandbox: Any, opened: list[float], world: dict[str, Any], *, warmup: int, n: int
) -> dict[str, list[float]]:
    """Call start → open recorded, token cached (Redis or local memory, as the pipeline will see it).

    "bare": one SaltoClient kept open (keep-alive), only `open_lock` timed: the baseline.
    "fresh": a new client per open, built and closed inside the timing, as `open_request_perform` does.
    """
    from integrations.salto import client_for

    integration = world["integration"]
    out: dict[str, list[float]] = {"bare": [], "fresh": []}

    def open_with(client: Any) -> None:
        client.open_lock(
            integration.site_id, world["lock_id"], secret=integration.iq_secret, pin=integration.current_pin
        )

    with client_for(integration) as client:
        client.fetch_token()
        for i in range(warmup + n):
            expected = len(opened) + 1
            started = time.perf_counter()
            open_with(client)
            landed = wait_for_open(sandbox, opened, expected, OPEN_TIMEOUT)
            if i >= warmup:
                out["bare"].append(landed - started)
    for i in range(warmup + n):
        expected = len(opened) + 1
        started = time.perf_counter()
        with client_for(integration) as client:
            open_with(client)
        landed = wait_for_open(sandbox, opened, expected, OPEN_TIMEOUT)
        if i >= warmup:
            out["fresh"].append(landed - started)
    return out


def measure_pipeline(
    sandbox: Any, opened: list[float], world: dict[str, Any], *, warmup: int, n: int
) -> dict[str, list[float]]:
    from bookings.models import BookingStatusChange
    from bookings.services import booking_change_status
    from integrations.models import OpenRequest

    booking = world["booking"]
    terminal = {OpenRequest.State.OPENED, OpenRequest.State.FAILED, OpenRequest.State.REFUSED}
    terminal |= {OpenRequest.State.EXPIRED}
    out: dict[str, list[float]] = {"total": [], "caller": [], "queued": [], "send": []}
    for i in range(warmup + n):
        expected = len(opened) + 1
        last_id = OpenRequest.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        started = time.perf_counter()
        booking_change_status(booking=booking, status=world["paid"], source=BookingStatusChange.Source.ADMIN)
        returned = time.perf_counter()
        landed = wait_for_open(sandbox, opened, expected, OPEN_TIMEOUT)
        # Let the worker finish (last-open field, check-in) before re-arming, so iterations never overlap.
        deadline = time.monotonic() + OPEN_TIMEOUT
        while True:
            request = OpenRequest.objects.filter(pk__gt=last_id).order_by("pk").first()
            if request is not None and request.state in terminal:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the open request did not finish")
            time.sleep(0.005)
        if request.state != OpenRequest.State.OPENED:
            raise RuntimeError(f"open request {request.pk} ended {request.state}: {request.reason}")
        # Re-arm: back to Option (not an opening status), so the next move to Paid opens again.
        booking_change_status(booking=booking, status=world["option"], source=BookingStatusChange.Source.ADMIN)
        if i < warmup:
            continue
        out["total"].append(landed - started)
        out["caller"].append(returned - started)
        if request.sent_at is not None:
            out["queued"].append((request.sent_at - request.created_at).total_seconds())
        if request.duration_ms is not None:
            out["send"].append(request.duration_ms / 1000)
    return out


def report(title: str, baseline: dict[str, list[float]], pipeline: dict[str, list[float]]) -> None:
    base = Summary.of(baseline["bare"])
    total = Summary.of(pipeline["total"])
    print(f"\n== {title} ==")
    rows = [
        ("baseline: bare SaltoClient.open_lock (token cached)", base),
        ("  same, new SaltoClient per open (as the worker)", Summary.of(baseline["fresh"])),
        ("pipeline: status change -> open recorded", total),
    ]
    print("ratios (x median, x p90) are against the bare baseline")
    print_table(rows, baseline=base)
    print(
        f"overhead of the pipeline: median +{(total.median - base.median) * 1000:.1f} ms "
        f"(x{total.median / base.median:.1f}), "
        f"p90 +{(total.p90 - base.p90) * 1000:.1f} ms (x{total.p90 / base.p90:.1f})"
    )
    parts = [("  caller: booking_change_status returns", Summary.of(pipeline["caller"]))]
    if pipeline["queued"]:
        parts.append(("  OpenRequest created_at -> sent_at (queue+claim)", Summary.of(pipeline["queued"])))
    if pipeline["send"]:
        parts.append(("  OpenRequest duration_ms (client + Salto call)", Summary.of(pipeline["send"])))
    print("breakdown of the pipeline iterations (DB timestamps are wall clock; duration_ms has 1 ms resolution):")
    print_table(parts)


def run_broker(args: argparse.Namespace) -> None:
    import os

    db_url = os.environ.get("BENCH_DATABASE_URL", BENCH_PG_URL)
    redis_url = os.environ.get("BENCH_REDIS_URL", BENCH_REDIS_URL)
    require_loopback(db_url, "BENCH_DATABASE_URL")
    require_loopback(redis_url, "BENCH_REDIS_URL")
    recreate_database(db_url)
    import redis

    redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()

    with timed_sandbox() as (sandbox, opened):
        env = bench_env(DATABASE_URL=db_url, REDIS_URL=redis_url, **sandbox_env(sandbox.url))
        apply_env(env)
        django_setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        settings.OPENING_TASK_QUEUE = QUEUE
        world = build_world(sandbox)
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
            log = Path(tmp) / "worker.log"
            try:
                with celery_worker(env, queue=QUEUE, log=log):
                    baseline = measure_baseline(sandbox, opened, world, warmup=args.warmup, n=args.iterations)
                    pipeline = measure_pipeline(sandbox, opened, world, warmup=args.warmup, n=args.iterations)
            except Exception:
                if log.exists():
                    print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise
        from django.db import connections

        connections.close_all()
    report("broker path: PostgreSQL + Redis DB + Celery worker (solo) subprocess", baseline, pipeline)


def run_eager(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-eager-") as tmp, timed_sandbox() as (sandbox, opened):
        env = bench_env(DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3", REDIS_URL=None, **sandbox_env(sandbox.url))
        apply_env(env)
        django_setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        # Eager apply_async still builds a kombu connection to memory:// and warns that it has no host name.
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        world = build_world(sandbox)
        baseline = measure_baseline(sandbox, opened, world, warmup=args.warmup, n=args.iterations)
        pipeline = measure_pipeline(sandbox, opened, world, warmup=args.warmup, n=args.iterations)
        report("eager path: SQLite, no broker (task runs in-process on commit)", baseline, pipeline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-eager", action="store_true", help="skip the eager (SQLite, no broker) pass")
    parser.add_argument("--eager-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.eager_child:
        run_eager(args)
        return
    print(f"open latency: {args.iterations} iterations after {args.warmup} warm-ups, {time.strftime('%Y-%m-%d %H:%M')}")
    run_broker(args)
    if not args.no_eager:
        command = [sys.executable, "-m", "bench.open_latency", "--eager-child"]
        command += ["--iterations", str(args.iterations), "--warmup", str(args.warmup)]
        sys.stdout.flush()
        subprocess.run(command, cwd=ROOT, check=True, timeout=CHILD_TIMEOUT)


if __name__ == "__main__":
    main()
