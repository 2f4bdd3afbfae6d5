"""The fault suite: a real worker against the sandbox, one injected fault per scenario, counted at the door.

Each scenario moves bookings into an allowed status and waits until every open request is settled (and, when
opened, checked against Salto's entries). It then compares what the product recorded with what the sandbox saw
physically, and prints one line. Every scenario must show duplicated 0, lost 0, late 0 and an audit equal to
the physical opens. `docs/reliability.md` carries the figures of a run.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx2
import pytest
import redis
from django.conf import settings
from django.core.cache import cache

from bookings.models import BookableObject
from bookings.services import booking_change_status
from integrations.models import CachedLock, LockMapping, OpenRequest
from integrations.services.opening import open_requests_sweep
from locks.clock import clock_cache_key
from locks.sandbox import RunningSandbox
from locks.sandbox.demo import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_IQ_ID,
    DEMO_LOCK_IDS,
    DEMO_USERNAME,
)
from locks.tokens import token_cache_key
from tests.e2e.conftest import Worker, _database_url, sandbox_world
from tests.integrations.opening.builders import World, make_booking
from tests.worker_process import celery_worker

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FAULT_QUEUE = "opening-faults"
FRESHNESS = 30
GRACE = 3
TIMEOUT = 2
LEASE = 5
FRONT_DOOR = DEMO_LOCK_IDS["Front door"]
# One lock per booking, so every physical open at the sandbox belongs to exactly one open request.
UNIT_LOCKS = ["Front door", "Studio 1", "Studio 2", "Studio 3", "Meeting room A"]
State = OpenRequest.State
SETTLED = {State.OPENED, State.FAILED, State.REFUSED, State.EXPIRED}
RESULTS: list[dict[str, Any]] = []


def _env(sandbox: RunningSandbox) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": str(settings.REDIS_URL),
        "OPEN_FRESHNESS_SECONDS": str(FRESHNESS),
        "OPEN_ENTRIES_POLL_SECONDS": "1",
        "OPEN_ENTRIES_GRACE_SECONDS": str(GRACE),
        "OPEN_SENDING_LEASE_SECONDS": str(LEASE),
        "SALTO_KS_HTTP_TIMEOUT_SECONDS": str(TIMEOUT),
        "SALTO_KS_ACCEPTANCE_IDENTITY_URL": sandbox.url,
        "SALTO_KS_ACCEPTANCE_API_URL": sandbox.url,
        "SALTO_KS_CLIENT_ID": DEMO_CLIENT_ID,
        "SALTO_KS_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "DEBUG": "0",
    }


@pytest.fixture(scope="module")
def fault_worker(
    django_db_setup: Any, django_db_blocker: Any, e2e_sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Worker]]:
    """A worker on its own queue; `restart()` (the yielded callable) starts a fresh one after a SIGKILL."""
    from django.db import connection

    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("the fault suite needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL)")
    redis.Redis.from_url(str(settings.REDIS_URL)).delete(FAULT_QUEUE)
    contexts: list[Any] = []
    workers: list[Worker] = []

    def start() -> Worker:
        log = tmp_path_factory.mktemp("fault-worker") / "worker.log"
        hostname = f"opening-faults-{os.getpid()}-{len(contexts)}@localhost"
        context = celery_worker(_env(e2e_sandbox), queue=FAULT_QUEUE, hostname=hostname, log=log, startup_timeout=30)
        process = context.__enter__()
        contexts.append(context)
        workers.append(Worker(process, log, hostname))
        return workers[-1]

    start()
    try:
        yield lambda: workers[-1] if workers[-1].process.poll() is None else start()
    finally:
        for context in reversed(contexts):
            context.__exit__(None, None, None)


@pytest.fixture
def world(e2e_sandbox: RunningSandbox, fault_worker: Callable[[], Worker], settings: Any) -> World:
    e2e_sandbox.state.reset()
    control(e2e_sandbox, "config", {"clock_offset_seconds": 0})
    # The reset revoked the worker's cached token: forget it, so each scenario's first send carries a fresh token
    # (a 401 would otherwise meet the injected fault instead of the open) and measures the sandbox's clock anew.
    cache.delete(
        token_cache_key(
            environment="acceptance", identity_url=e2e_sandbox.url, client_id=DEMO_CLIENT_ID, username=DEMO_USERNAME
        )
    )
    # Each scenario is a new site as far as Salto's clock goes: the readings of the last one (another sandbox
    # clock) would otherwise outvote this one's first answer (locks/clock.py keeps the median of recent answers).
    cache.delete(clock_cache_key(e2e_sandbox.url))
    settings.OPENING_TASK_QUEUE = FAULT_QUEUE
    settings.OPEN_FRESHNESS_SECONDS = FRESHNESS
    settings.OPEN_DEDUPE_SECONDS = 0
    world = sandbox_world(e2e_sandbox)
    return world


def unit_objects(world: World) -> list[BookableObject]:
    """A bookable unit per lock of UNIT_LOCKS, each mapped to its own lock."""
    units = []
    for name in UNIT_LOCKS:
        lock_id = DEMO_LOCK_IDS[name]
        unit = BookableObject.objects.create(name=f"Unit behind {name}")
        LockMapping.objects.create(integration=world.integration, object=unit, lock_id=lock_id, lock_name=name)
        CachedLock.objects.update_or_create(
            integration=world.integration,
            lock_id=lock_id,
            defaults={"name": name, "iq_id": DEMO_IQ_ID, "refreshed_at": datetime.now(UTC)},
        )
        units.append(unit)
    return units


def control(sandbox: RunningSandbox, path: str, body: dict[str, Any]) -> None:
    httpx2.post(f"{sandbox.url}/_sandbox/{path}", json=body, timeout=5).raise_for_status()


def settled(count: int, timeout: float = 45) -> list[OpenRequest]:
    """Wait until COUNT open requests are settled, and every opened one was checked against the entries."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        requests = list(OpenRequest.objects.prefetch_related("sends").order_by("pk"))
        done = [r for r in requests if r.state in SETTLED]
        checked = all(r.confirmation for r in done if r.state == State.OPENED)
        if len(done) >= count and checked:
            return requests
        time.sleep(0.2)
    raise AssertionError(f"not settled in {timeout} s: {[(r.pk, r.state, r.reason) for r in requests]}")


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: list[dict[str, Any]]
    expected: int = 1  # physical opens a correct product causes (0: Salto refuses for longer than freshness)
    bookings: int = 1
    config: dict[str, Any] | None = None


SCENARIOS = [
    Scenario("reply lost after acting", [{"path_contains": "/locking", "drop_connection": True, "after_acting": True}]),
    Scenario("503 after acting", [{"path_contains": "/locking", "status": 503, "after_acting": True}]),
    Scenario(
        "reply slower than the timeout",
        [{"path_contains": "/locking", "delay_seconds": TIMEOUT + 1.5, "after_acting": True}],
    ),
    Scenario("timeout before acting", [{"path_contains": "/locking", "delay_seconds": TIMEOUT + 0.5}]),
    # Salto has the command and acts 1 s after our client gave up (inside the grace period): the entries find it.
    Scenario(
        "Salto acts after our timeout", [{"path_contains": "/locking", "delay_seconds": TIMEOUT + 1, "act_late": True}]
    ),
    Scenario("503 twice, then OK", [{"path_contains": "/locking", "status": 503, "times": 2}]),
    Scenario("429, Retry-After 1 s", [{"path_contains": "/locking", "status": 429, "retry_after": 1}]),
    Scenario("429, Retry-After as an HTTP date", [{"path_contains": "/locking", "status": 429, "retry_after": -1}]),
    Scenario(
        "429, Retry-After huge (1e20)",
        [{"path_contains": "/locking", "status": 429, "retry_after": 1e20, "times": None}],
        expected=0,
    ),
    Scenario("dropped connection before acting", [{"path_contains": "/locking", "drop_connection": True}]),
    Scenario(
        "200 with an HTML page",
        [
            {
                "path_contains": "/locking",
                "status": 200,
                "body": "<html><body>maintenance</body></html>",
                "content_type": "text/html",
                "after_acting": True,
            }
        ],
    ),
    Scenario(
        "200 with malformed JSON",
        [{"path_contains": "/locking", "status": 200, "body": '{"items": [', "after_acting": True}],
    ),
    Scenario("token expiry in the middle of a burst", [], bookings=5),
    Scenario("sandbox clock +2 min", [], config={"clock_offset_seconds": 120}),
    Scenario("sandbox clock -2 min", [], config={"clock_offset_seconds": -120}),
    Scenario("sandbox clock +5 min", [], config={"clock_offset_seconds": 300}),
    Scenario("sandbox clock -5 min", [], config={"clock_offset_seconds": -300}),
]


def _http_date_in(seconds: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_each_fault_opens_exactly_as_often_as_the_audit_says(
    scenario: Scenario, world: World, e2e_sandbox: RunningSandbox
) -> None:
    # given the fault
    if scenario.config:
        control(e2e_sandbox, "config", scenario.config)
    for fault in scenario.faults:
        if fault.get("retry_after") == -1:
            # an HTTP date one second ahead: the sandbox sends retry_after verbatim when it is a string
            fault = {**fault, "retry_after": _http_date_in(1)}
        control(e2e_sandbox, "faults", fault)
    opens_before = len(e2e_sandbox.state.opens())
    # when bookings enter an allowed status, each behind its own lock
    units = unit_objects(world)
    bookings = [make_booking(world, obj=units[index]) for index in range(scenario.bookings)]
    for index, booking in enumerate(bookings):
        booking_change_status(booking=booking, status=world.paid)
        if scenario.name.startswith("token expiry") and index == 1:
            control(e2e_sandbox, "tokens/expire", {})
    requests = settled(scenario.bookings)
    # then
    row = _count(scenario, requests, e2e_sandbox, opens_before)
    RESULTS.append(row)
    print(_line(row))
    assert (row["duplicated"], row["lost"], row["late"]) == (0, 0, 0), row
    assert row["audit_matches"], row


def test_a_worker_killed_mid_send_is_settled_by_the_entries(
    world: World, e2e_sandbox: RunningSandbox, fault_worker: Callable[[], Worker]
) -> None:
    # given Salto opens the door and answers slowly, and the worker is killed while it waits
    control(e2e_sandbox, "faults", {"path_contains": "/locking", "delay_seconds": TIMEOUT - 0.5, "after_acting": True})
    opens_before = len(e2e_sandbox.state.opens())
    booking = make_booking(world)
    booking_change_status(booking=booking, status=world.paid)
    worker = fault_worker()
    deadline = time.monotonic() + 20
    while len(e2e_sandbox.state.opens()) == opens_before and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait(10)
    # when a new worker starts and the sweeper (beat's job) finds the row whose lease ran out
    fault_worker()
    time.sleep(LEASE + 0.5)
    result = open_requests_sweep()
    assert result.abandoned == 1
    requests = settled(1)
    # then the entries decide: opened once, never sent again
    row = _count(Scenario("worker SIGKILL mid-send", []), requests, e2e_sandbox, opens_before)
    RESULTS.append(row)
    print(_line(row))
    assert (row["duplicated"], row["lost"], row["late"]) == (0, 0, 0), row
    assert row["audit_matches"], row
    assert row["opened"] == 1, row
    assert requests[0].reason.startswith("Confirmed by Salto's entries")


def test_a_worker_killed_before_the_command_left_is_sent_once_by_the_next(
    world: World, e2e_sandbox: RunningSandbox, fault_worker: Callable[[], Worker]
) -> None:
    from integrations.models import OpenAttempt

    # given the identity server is slow, so the worker sits between recording its send and the PATCH
    control(e2e_sandbox, "faults", {"path_contains": "/connect/token", "delay_seconds": TIMEOUT - 0.5})
    opens_before = len(e2e_sandbox.state.opens())
    booking = make_booking(world)
    booking_change_status(booking=booking, status=world.paid)
    worker = fault_worker()
    deadline = time.monotonic() + 20
    while not OpenAttempt.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # when it is killed there, before the command went out
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait(10)
    assert len(e2e_sandbox.state.opens()) == opens_before
    fault_worker()
    time.sleep(LEASE + 0.5)
    assert open_requests_sweep().abandoned == 1
    requests = settled(1)
    # then the entries show no open, so after the grace period it is sent once more, and opens once
    row = _count(Scenario("worker SIGKILL before the PATCH", []), requests, e2e_sandbox, opens_before)
    RESULTS.append(row)
    print(_line(row))
    assert (row["duplicated"], row["lost"], row["late"]) == (0, 0, 0), row
    assert row["audit_matches"], row
    assert (row["opened"], row["sent"]) == (1, 2), row
    first, second = requests[0].sends.all()
    assert (first.outcome, second.outcome) == (OpenAttempt.Outcome.UNCLEAR, OpenAttempt.Outcome.ACCEPTED)


def _count(
    scenario: Scenario, requests: list[OpenRequest], sandbox: RunningSandbox, opens_before: int
) -> dict[str, Any]:
    """Per request: its physical opens at the sandbox (by its lock), against what it should have caused.

    Duplicated and lost add up over requests (one request's double open is not hidden by another's loss); late
    counts physical opens after the request's freshness limit, by the sandbox's own record of the open (its clock
    put back to the machine's), not by our send times.
    """
    offset = timedelta(seconds=sandbox.state.config.clock_offset_seconds)
    opens = sandbox.state.opens()[opens_before:]
    duplicated = lost = late = 0
    audit_matches = True
    for request in requests:
        mine = [datetime.fromisoformat(o["at"]) - offset for o in opens if o["lock_id"] == request.lock_id]
        expected = scenario.expected
        duplicated += max(0, len(mine) - expected)
        lost += max(0, expected - len(mine))
        late += sum(1 for at in mine if at > request.created_at + timedelta(seconds=FRESHNESS))
        # What the audit says happened at this door: an opened request is one open, or as many as Salto's
        # entries matched to it (a double open shows as two); anything else is none.
        audit = max(1, len(request.salto_entry_ids)) if request.state == State.OPENED else 0
        audit_matches = audit_matches and audit == len(mine)
    unclaimed = len(opens) - sum(1 for o in opens if o["lock_id"] in {r.lock_id for r in requests})
    return {
        "scenario": scenario.name,
        "expected": scenario.expected * len(requests),
        "sent": sum(len(r.sends.all()) for r in requests),
        "opened": len(opens),
        "duplicated": duplicated + unclaimed,
        "lost": lost,
        "late": late,
        "audit_matches": audit_matches and not unclaimed,
        "states": sorted({r.state for r in requests}),
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"FAULT {row['scenario']:<40} expected {row['expected']}  sent {row['sent']}  opened {row['opened']}  "
        f"duplicated {row['duplicated']}  lost {row['lost']}  late {row['late']}  "
        f"audit {'matches' if row['audit_matches'] else 'DIFFERS'} ({','.join(row['states'])})"
    )


def test_a_worker_whose_database_connection_is_cut_mid_send_is_settled_by_the_entries(
    world: World, e2e_sandbox: RunningSandbox, fault_worker: Callable[[], Worker]
) -> None:
    from django.db import connection

    # given Salto opens the door and answers a moment later
    control(e2e_sandbox, "faults", {"path_contains": "/locking", "delay_seconds": TIMEOUT - 0.5, "after_acting": True})
    opens_before = len(e2e_sandbox.state.opens())
    booking = make_booking(world)
    booking_change_status(booking=booking, status=world.paid)
    fault_worker()
    deadline = time.monotonic() + 20
    while len(e2e_sandbox.state.opens()) == opens_before and time.monotonic() < deadline:
        time.sleep(0.05)
    # when the worker's PostgreSQL connection is terminated while it waits for Salto's answer
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        terminated = cursor.fetchone()[0]
    assert terminated >= 1
    # and the sweeper (beat's job) later finds the row the worker could not finish
    deadline = time.monotonic() + LEASE + 20
    while time.monotonic() < deadline:
        open_requests_sweep()
        if OpenRequest.objects.filter(state__in=SETTLED).exists():
            break
        time.sleep(0.5)
    requests = settled(1)
    # then the entries decide: opened once, never sent again
    row = _count(Scenario("worker's PostgreSQL connection cut mid-send", []), requests, e2e_sandbox, opens_before)
    RESULTS.append(row)
    print(_line(row))
    assert (row["duplicated"], row["lost"], row["late"]) == (0, 0, 0), row
    assert row["audit_matches"], row
    assert row["opened"] == 1, row
