"""A burst of opens: 500 bookings entering an allowed status, Salto answering each open after 100 ms.

    .venv/bin/python -m bench.burst [--bookings 500] [--latency 0.1] [--pool threads] [--concurrency 32]

Everything runs on this machine, as separate processes: PostgreSQL and Redis (the machine's, a database and a
Redis db of the benchmark's own), the Salto KS sandbox (`manage.py salto_sandbox`, with a 100 ms delay on every
open and pages of 20 as Salto probably has), one Celery worker in the production configuration (the settings'
pool, concurrency and prefetch, unless overridden), and a console (`manage.py runserver`) that a probe asks
for the booking list every 100 ms.

- **Baseline** (same run): the product's Salto client called directly from as many threads as the worker has,
  500 opens; and the limit 500 × latency / concurrency.
- **Queued wave**: the 500 status changes are made while no worker runs (their messages wait in Redis); then
  the worker starts, and the wave is timed from its "ready." to the sandbox's 500th open.
- **Live wave**: the worker running, 500 status changes made from 4 threads at once (the web processes) while
  the worker opens; timed from the first change to the last open. A guest's wait is the change → the product's
  record of the open.

Printed: opens/s, token requests, failures and requests left pending, guest wait p50/p95, the console's
response time (idle and during the live wave), CPU per open on each side, and the worker's RSS afterwards.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/ireserve_bench_burst, dropped and
re-created), BENCH_REDIS_URL (default redis://127.0.0.1:6379/14, flushed).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2

from bench._common import ROOT, apply_env, bench_env, django_setup
from bench.open_latency import recreate_database, require_loopback
from tests.worker_process import celery_worker

BURST_PG_URL = "postgres://postgres@127.0.0.1:5432/ireserve_bench_burst"
BURST_REDIS_URL = "redis://127.0.0.1:6379/14"
QUEUE = "opening-burst"
UNIT_LOCKS = ["Front door", "Studio 1", "Studio 2", "Studio 3", "Meeting room A", "Meeting room B"]
WAVE_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(command: list[str], env: dict[str, str], *, ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(ready_url, timeout=1).status_code < 500:
                    break
            except httpx2.TransportError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[2]} did not start:\n" + log.read_text(errors="replace")[-2000:])
            time.sleep(0.2)
        yield child
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


# --- the world --------------------------------------------------------------------------------------------


def build_world(sandbox_url: str, bookings: int) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from bookings.models import BookableObject, Booking, BookingField, BookingStatus
    from integrations.models import CachedLock, Integration, LockMapping
    from locks.sandbox.demo import DEMO_IQ_ID, DEMO_LOCK_IDS, DEMO_PASSWORD, DEMO_SITE_ID, DEMO_SITE_UID, DEMO_USERNAME

    activation = httpx2.post(f"{sandbox_url}/_sandbox/iqs/{DEMO_IQ_ID}/activation", json={}, timeout=5).json()
    option, paid, checkin = (BookingStatus.objects.get(code=code) for code in (10, 30, 50))
    integration = Integration.objects.create(
        name="Salto KS acceptance (burst)",
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
        last_open_field=BookingField.objects.create(
            name="Last opened", technical_name="custom01", field_type=BookingField.FieldType.DATETIME
        ),
        checkin_status=checkin,
        is_active=True,
    )
    integration.open_statuses.set([paid])
    units = []
    for name in UNIT_LOCKS:
        block = BookableObject.objects.create(name=f"Block behind {name}")
        LockMapping.objects.create(integration=integration, object=block, lock_id=DEMO_LOCK_IDS[name], lock_name=name)
        CachedLock.objects.create(
            integration=integration,
            lock_id=DEMO_LOCK_IDS[name],
            name=name,
            iq_id=DEMO_IQ_ID,
            refreshed_at=timezone.now(),
        )
        units += BookableObject.objects.bulk_create(
            BookableObject(name=f"Unit {k}", parent=block) for k in range(bookings // len(UNIT_LOCKS) + 1)
        )
    start = timezone.now() - timedelta(minutes=5)

    def wave() -> list[Booking]:
        return Booking.objects.bulk_create(
            Booking(
                object=units[n % len(units)],
                start=start,
                end=start + timedelta(hours=4),
                status=option,
                customer_name=f"Guest {n}",
            )
            for n in range(bookings)
        )

    User.objects.create_superuser("bench", password="bench-password-1")
    return {"integration": integration, "paid": paid, "queued": wave(), "live": wave()}


# --- the phases -------------------------------------------------------------------------------------------


def baseline(world: dict[str, Any], *, threads: int, bookings: int) -> float:
    from integrations.salto import client_for
    from locks.sandbox.demo import DEMO_LOCK_IDS

    integration = world["integration"]
    locks = [DEMO_LOCK_IDS[name] for name in UNIT_LOCKS]
    with client_for(integration) as client:
        client.fetch_token()

        def one(n: int) -> None:
            client.open_lock(
                integration.site_id, locks[n % len(locks)], secret=integration.iq_secret, pin=integration.current_pin
            )

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(bookings)))
        return bookings / (time.perf_counter() - started)


def change_all(bookings: list[Any], paid: Any, *, threads: int) -> dict[int, datetime]:
    """Move BOOKINGS to PAID from THREADS threads at once; when each change began, by booking id."""
    from django.db import connection

    from bookings.models import BookingStatusChange
    from bookings.services import booking_change_status

    began: dict[int, datetime] = {}

    def part(chunk: list[Any]) -> None:
        try:
            for booking in chunk:
                began[booking.pk] = datetime.now(UTC)
                booking_change_status(booking=booking, status=paid, source=BookingStatusChange.Source.API)
        finally:
            connection.close()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(part, [bookings[i::threads] for i in range(threads)]))
    return began


def opens_at_sandbox(sandbox_url: str) -> int:
    return len(httpx2.get(f"{sandbox_url}/_sandbox/opens", timeout=10).json())


def token_requests(sandbox_url: str) -> int:
    return int(httpx2.get(f"{sandbox_url}/_sandbox/token-requests", timeout=5).json()["count"])


def wait_for_opens(sandbox_url: str, count: int) -> float:
    deadline = time.monotonic() + WAVE_TIMEOUT
    while opens_at_sandbox(sandbox_url) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {opens_at_sandbox(sandbox_url)} of {count} opens within {WAVE_TIMEOUT} s")
        time.sleep(0.05)
    return time.perf_counter()


def outcome(bookings: list[Any]) -> dict[str, int]:
    from django.db.models import Count

    from integrations.models import OpenRequest

    rows = OpenRequest.objects.filter(booking__in=bookings).values("state").annotate(n=Count("id"))
    return {row["state"]: row["n"] for row in rows}


class ConsoleProbe:
    """The booking list, asked for every 100 ms by a logged-in operator, from its own thread."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx2.Client(base_url=base_url, timeout=30, follow_redirects=False)
        page = self.client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None, "no CSRF token on the login page"
        login = {"username": "bench", "password": "bench-password-1", "csrfmiddlewaretoken": token.group(1)}
        answer = self.client.post("/admin/login/?next=/admin/", data=login, headers={"Referer": base_url})
        assert answer.status_code == 302, f"login failed: {answer.status_code}"
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def once(self) -> float:
        started = time.perf_counter()
        response = self.client.get("/admin/bookings/booking/")
        assert response.status_code == 200, response.status_code
        return time.perf_counter() - started

    def start(self) -> None:
        self.samples = []

        def run() -> None:
            while not self._stop.is_set():
                self.samples.append(self.once())
                self._stop.wait(0.1)

        self._stop.clear()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> list[float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        return self.samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds Salto takes to answer each open")
    parser.add_argument("--pool", default="", help="worker pool (default: the settings', CELERY_WORKER_POOL)")
    parser.add_argument("--concurrency", type=int, default=0, help="default: the settings' CELERY_WORKER_CONCURRENCY")
    parser.add_argument("--prefetch", type=int, default=0, help="default: CELERY_WORKER_PREFETCH_MULTIPLIER")
    parser.add_argument("--no-live", action="store_true", help="only the baseline and the queued wave")
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", BURST_PG_URL)
    redis_url = os.environ.get("BENCH_REDIS_URL", BURST_REDIS_URL)
    require_loopback(database_url, "BENCH_DATABASE_URL")
    sandbox_port, console_port = free_port(), free_port()
    sandbox_url, console_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{console_port}"
    from locks.sandbox.demo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

    worker_settings = {
        name: str(value)
        for name, value in (
            ("CELERY_WORKER_POOL", args.pool),
            ("CELERY_WORKER_CONCURRENCY", args.concurrency),
            ("CELERY_WORKER_PREFETCH_MULTIPLIER", args.prefetch),
        )
        if value
    }
    env = bench_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SALTO_KS_ACCEPTANCE_IDENTITY_URL=sandbox_url,
        SALTO_KS_ACCEPTANCE_API_URL=sandbox_url,
        SALTO_KS_CLIENT_ID=DEMO_CLIENT_ID,
        SALTO_KS_CLIENT_SECRET=DEMO_CLIENT_SECRET,
        OPENING_TASK_QUEUE=QUEUE,
        OPEN_DEDUPE_SECONDS="0",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1",
        **worker_settings,
    )
    apply_env(env)
    recreate_database(database_url)
    django_setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    redis.Redis.from_url(redis_url).flushdb()
    call_command("migrate", verbosity=0)
    concurrency = int(settings.CELERY_WORKER_CONCURRENCY)
    print(
        f"burst: {args.bookings} bookings, Salto latency {args.latency * 1000:.0f} ms, worker pool "
        f"{settings.CELERY_WORKER_POOL} × {concurrency}, prefetch {settings.CELERY_WORKER_PREFETCH_MULTIPLIER}, "
        f"{os.cpu_count()} cores"
    )
    logs = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    python = sys.executable
    sandbox_command = [python, "manage.py", "salto_sandbox", "--port", str(sandbox_port), "--log-level", "warning"]
    with process(sandbox_command, env, ready_url=f"{sandbox_url}/_sandbox/state", log=logs / "sandbox.log"):
        world = build_world(sandbox_url, args.bookings)
        fault = {"path_contains": "/locking", "delay_seconds": args.latency, "times": None}
        httpx2.post(f"{sandbox_url}/_sandbox/faults", json=fault, timeout=5).raise_for_status()
        # Salto's page size is probably 20 (docs/salto-ks.md §3.2); the sandbox's default of 3 is for the tests.
        httpx2.post(f"{sandbox_url}/_sandbox/config", json={"page_size": 20}, timeout=5).raise_for_status()

        direct = baseline(world, threads=concurrency, bookings=args.bookings)
        limit = args.bookings / (args.bookings * args.latency / concurrency)
        print(f"\nbaseline: the client direct from {concurrency} threads: {direct:7.1f} opens/s")
        print(f"          the limit 500 × latency / concurrency:         {limit:7.1f} opens/s")

        # The queued wave: the changes first, no worker running; then the worker drains the queue.
        opens_before = opens_at_sandbox(sandbox_url)
        web_cpu = time.process_time()
        change_all(world["queued"], world["paid"], threads=1)
        web_cpu = (time.process_time() - web_cpu) / args.bookings
        tokens_before = token_requests(sandbox_url)
        from django.core.cache import cache

        from locks.sandbox.demo import DEMO_USERNAME
        from locks.tokens import token_cache_key

        # The worker must fetch its own token: the wave shows how many it asks for (the queue stays).
        cache.delete(
            token_cache_key(
                environment="acceptance", identity_url=sandbox_url, client_id=DEMO_CLIENT_ID, username=DEMO_USERNAME
            )
        )
        with celery_worker(
            env, queue=QUEUE, hostname=f"burst-{os.getpid()}@localhost", log=logs / "worker.log", pool=()
        ) as worker:
            ready = time.perf_counter()
            cpu_at_ready = cpu_seconds(worker.pid)
            last = wait_for_opens(sandbox_url, opens_before + args.bookings)
            queued_rate = args.bookings / (last - ready)
            worker_cpu = (cpu_seconds(worker.pid) - cpu_at_ready) / args.bookings
            time.sleep(2)
            queued_states = outcome(world["queued"])
            tokens = token_requests(sandbox_url) - tokens_before
            print(f"\nqueued wave: {queued_rate:7.1f} opens/s ({last - ready:.2f} s from the worker's ready)")
            print(f"  token requests {tokens}, states {queued_states}")
            print(
                f"  CPU per open: web {web_cpu * 1000:.1f} ms (status change → queued), "
                f"worker {worker_cpu * 1000:.1f} ms (the open and its confirmation against the entries)"
            )
            if args.no_live:
                print(f"  worker RSS after: {rss_mb(worker.pid):.0f} MB")
                return
            console_command = [python, "manage.py", "runserver", f"127.0.0.1:{console_port}", "--noreload"]
            with process(console_command, env, ready_url=f"{console_url}/healthz", log=logs / "console.log"):
                probe = ConsoleProbe(console_url)
                idle = [probe.once() for _ in range(20)]
                opens_before = opens_at_sandbox(sandbox_url)
                tokens_before = token_requests(sandbox_url)
                probe.start()
                first = time.perf_counter()
                began = change_all(world["live"], world["paid"], threads=4)
                last = wait_for_opens(sandbox_url, opens_before + args.bookings)
                during = probe.stop()
                live_rate = args.bookings / (last - first)
                time.sleep(2)
                from integrations.models import OpenRequest

                waits = [
                    (finished - began[booking_id]).total_seconds()
                    for booking_id, finished in OpenRequest.objects.filter(
                        booking__in=world["live"], state=OpenRequest.State.OPENED
                    ).values_list("booking_id", "finished_at")
                ]
                print(f"\nlive wave: {live_rate:7.1f} opens/s ({last - first:.2f} s from the first change)")
                print(
                    f"  token requests {token_requests(sandbox_url) - tokens_before}, states {outcome(world['live'])}"
                )
                print(f"  guest wait p50 {percentile(waits, 50):.2f} s, p95 {percentile(waits, 95):.2f} s")
                print(
                    f"  console (booking list) median idle {statistics.median(idle) * 1000:.0f} ms, during the wave "
                    f"{statistics.median(during) * 1000:.0f} ms (p95 {percentile(during, 95) * 1000:.0f} ms, "
                    f"{len(during)} requests)"
                )
            print(f"  worker RSS after: {rss_mb(worker.pid):.0f} MB")


if __name__ == "__main__":
    main()
