"""Scale: the console's pages at 1x, 10x and 100x a demo's data, with a stock admin list as the same-run baseline.

    .venv/bin/python -m bench.scale [--scales 1,10,100] [--runs 7] [--warmup 2]

For each scale the database is dropped, re-created, migrated and filled by `bench.scale_data.build_scale_data`
(1x: 20 objects as 5 main objects with 3 sub-objects each, 5 cached locks, 5 mappings, 1,000 bookings; linear
in the scale). Each page is fetched in-process through Django's test client as a logged-in superuser (the whole
request: middleware, session, admin, templates): WARMUP fetches, one fetch under CaptureQueriesContext for the
query count and the HTML size, then RUNS timed fetches (median, p90). The baseline is the stock admin
changelist of booking statuses (five rows whatever the scale), measured in the same run.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/ireserve_bench_scale, dropped and
re-created by this script; the name must start with ireserve_bench), BENCH_REDIS_URL (default
redis://127.0.0.1:6379/15; read and written as the cache, never flushed).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench._common import BENCH_REDIS_URL, Summary, apply_env, bench_env, django_setup, ms
from bench.open_latency import recreate_database, require_loopback

SCALE_PG_URL = "postgres://postgres@127.0.0.1:5432/ireserve_bench_scale"

# The must-show figures of issue 10 (at 100x): page → (median ms, queries, HTML bytes); None: no target.
TARGETS: dict[str, tuple[float | None, int | None, int | None]] = {
    "integration change page (all tabs)": (500, 25, 1_000_000),
    "booking changelist": (300, 20, None),
    "booking change page": (150, None, None),
}


@dataclass(frozen=True)
class Page:
    name: str
    url: Callable[[Any], str]  # ScaleWorld → URL


PAGES = [
    Page("baseline: stock changelist of booking statuses", lambda w: "/admin/bookings/bookingstatus/"),
    Page("integration change page (all tabs)", lambda w: f"/admin/integrations/integration/{w.integration_id}/change/"),
    Page("booking changelist", lambda w: "/admin/bookings/booking/"),
    Page("booking change page", lambda w: f"/admin/bookings/booking/{w.sample_booking_id}/change/"),
    Page("open-request changelist", lambda w: "/admin/integrations/openrequest/"),
    Page(
        "mapping row: lock search",
        lambda w: f"/admin/integrations/integration/{w.integration_id}/mapping/locks/?term=00",
    ),
    Page(
        "mapping row: object search",
        lambda w: f"/admin/integrations/integration/{w.integration_id}/mapping/objects/?term=unit",
    ),
    Page("bulk: same-name preview", lambda w: f"/admin/integrations/integration/{w.integration_id}/mapping/same-name/"),
]


@dataclass(frozen=True)
class Figures:
    timing: Summary
    cpu: Summary  # this process's CPU (time.process_time): the Python side, whatever else the machine runs
    queries: int
    html_bytes: int


def measure(client: Any, url: str, *, runs: int, warmup: int) -> Figures:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        _fetch(client, url)
    with CaptureQueriesContext(connection) as captured:
        html = _fetch(client, url)
    # Read now: the next request's request_started signal empties the connection's query log.
    queries = len(captured.captured_queries)
    samples, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        _fetch(client, url)
        samples.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return Figures(Summary.of(samples), Summary.of(cpu), queries, len(html))


def _fetch(client: Any, url: str) -> bytes:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return bytes(response.content)


def run_scale(scale: int, db_url: str, *, runs: int, warmup: int) -> dict[str, Figures]:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client

    from bench.scale_data import build_scale_data

    connections.close_all()
    recreate_database(db_url)
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    world = build_scale_data(scale=scale)
    built = time.perf_counter() - started
    # Fresh planner statistics, as autovacuum would have them after a bulk load on a live database.
    with connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE")
    user = User.objects.create_superuser("bench", "bench@example.com", "bench-pass-123")
    client = Client()
    client.force_login(user)
    sizes = world.sizes
    print(
        f"\n== {scale}x: {sizes.objects} objects ({sizes.main_objects} main), {sizes.locks} locks, "
        f"{sizes.mappings} mappings, {sizes.bookings} bookings, {sizes.open_requests} open requests "
        f"(built in {built:.1f} s) =="
    )
    figures = {page.name: measure(client, page.url(world), runs=runs, warmup=warmup) for page in PAGES}
    print_figures(figures)
    print(f"peak RSS of this process so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return figures


def print_figures(figures: dict[str, Figures]) -> None:
    baseline = figures[PAGES[0].name].timing
    width = max(len(name) for name in figures)
    header = f"{'n':>3} {'median ms':>10} {'p90 ms':>9} {'x base':>7} {'CPU ms':>8} {'queries':>8} {'HTML kB':>9}"
    print(f"{'':{width}}  {header}")
    for name, f in figures.items():
        ratio = f.timing.median / baseline.median
        print(
            f"{name:{width}}  {f.timing.n:3d} {ms(f.timing.median):>10} {ms(f.timing.p90):>9} {ratio:7.1f} "
            f"{ms(f.cpu.median):>8} {f.queries:8d} {f.html_bytes / 1000:9.1f}"
        )


def print_targets(figures: dict[str, Figures]) -> None:
    print("\ntargets at this scale (issue 10, must show):")
    for name, (max_ms, max_queries, max_bytes) in TARGETS.items():
        f = figures[name]
        checks = []
        if max_ms is not None:
            checks.append(
                (f"median {f.timing.median * 1000:.0f} ms <= {max_ms:.0f} ms", f.timing.median * 1000 <= max_ms)
            )
        if max_queries is not None:
            checks.append((f"{f.queries} queries <= {max_queries}", f.queries <= max_queries))
        if max_bytes is not None:
            checks.append((f"HTML {f.html_bytes / 1e6:.2f} MB <= {max_bytes / 1e6:.0f} MB", f.html_bytes <= max_bytes))
        print(f"  {name}: " + "; ".join(f"{text} {'ok' if ok else 'MISSED'}" for text, ok in checks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10,100", help="comma-separated multiples of the 1x data")
    parser.add_argument("--runs", type=int, default=7, help="timed fetches per page (median, p90)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]

    db_url = os.environ.get("BENCH_DATABASE_URL", SCALE_PG_URL)
    redis_url = os.environ.get("BENCH_REDIS_URL", BENCH_REDIS_URL)
    require_loopback(db_url, "BENCH_DATABASE_URL")
    require_loopback(redis_url, "BENCH_REDIS_URL")
    # The test client's host; DEBUG off as in production (templates cached, no query log).
    apply_env(bench_env(DATABASE_URL=db_url, REDIS_URL=redis_url, DEBUG="0", ALLOWED_HOSTS="testserver"))
    django_setup()
    print(
        f"scale: console pages at {', '.join(f'{s}x' for s in scales)}; {args.runs} timed fetches after "
        f"{args.warmup} warm-ups, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores"
    )
    results = {scale: run_scale(scale, db_url, runs=args.runs, warmup=args.warmup) for scale in scales}
    print_targets(results[max(results)])
    from django.db import connections

    connections.close_all()


if __name__ == "__main__":
    main()
