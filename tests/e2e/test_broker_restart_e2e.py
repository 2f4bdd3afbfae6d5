"""The broker restarted in the middle of a burst: a Redis of its own (never the machine's), a real worker.

The web side (the status changes) and beat's sweeper run as their own processes against that Redis, as in
production; the test restarts Redis while the burst is under way. Whatever the broker lost (messages queued
before the restart, publishes that failed while it was down, a delivery taken by the worker), every booking's
door must open exactly once, none late, with the audit matching what the sandbox saw.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from integrations.models import OpenRequest
from locks.sandbox import RunningSandbox
from locks.sandbox.demo import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_LOCK_IDS,
)
from tests.e2e.conftest import _database_url, sandbox_world
from tests.integrations.opening.builders import make_booking
from tests.worker_process import celery_worker

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "opening-broker-restart"
FRESHNESS = 120
BOOKINGS = 6
FRONT_DOOR = DEMO_LOCK_IDS["Front door"]
State = OpenRequest.State
SETTLED = {State.OPENED, State.FAILED, State.REFUSED, State.EXPIRED}
# What Celery 5.7 / kombu log when the consumer dies on reconnecting to a restarted Redis.
CONSUMER_CRASH = "AttributeError: 'NoneType' object has no attribute 'hostname'"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def own_redis(port: int, workdir: Path) -> Iterator[Any]:
    """A redis-server of its own on PORT, without persistence (a restart loses everything, the worst case)."""
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        log = (workdir / f"redis-{len(processes)}.log").open("wb")
        processes.append(subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop() -> None:
        processes[-1].terminate()
        processes[-1].wait(10)

    start()
    try:
        yield type("Redis", (), {"start": staticmethod(start), "stop": staticmethod(stop)})
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)


def _env(sandbox: RunningSandbox, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "OPENING_TASK_QUEUE": QUEUE,
        "OPEN_FRESHNESS_SECONDS": str(FRESHNESS),
        "OPEN_ENTRIES_POLL_SECONDS": "1",
        "OPEN_ENTRIES_GRACE_SECONDS": "3",
        "OPEN_SENDING_LEASE_SECONDS": "5",
        "OPEN_DEDUPE_SECONDS": "0",
        "SALTO_KS_HTTP_TIMEOUT_SECONDS": "2",
        "SALTO_KS_ACCEPTANCE_IDENTITY_URL": sandbox.url,
        "SALTO_KS_ACCEPTANCE_API_URL": sandbox.url,
        "SALTO_KS_CLIENT_ID": DEMO_CLIENT_ID,
        "SALTO_KS_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "DEBUG": "0",
    }


def _django(env: dict[str, str], code: str) -> subprocess.Popen[str]:
    """Python CODE in a Django process of its own (the web side, or beat), with ENV."""
    script = "import django; django.setup()\n" + code
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "ireserve_salto.settings"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


BURST = """
import sys, time
from bookings.models import Booking, BookingStatus
from bookings.services import booking_change_status
paid = BookingStatus.objects.get(pk={paid})
for pk in {pks}:
    booking_change_status(booking=Booking.objects.get(pk=pk), status=paid)
    print("changed", pk, flush=True)
    time.sleep(0.4)
"""

SWEEP = """
from integrations.services.opening import open_requests_sweep
print(open_requests_sweep())
"""


def test_a_broker_restarted_during_a_burst_opens_every_door_once(
    e2e_sandbox: RunningSandbox, tmp_path: Path, settings: Any
) -> None:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL)")
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (Debian's redis-server package) for a Redis of its own")
    e2e_sandbox.state.reset()
    settings.OPEN_FRESHNESS_SECONDS = FRESHNESS
    world = sandbox_world(e2e_sandbox)
    bookings = [make_booking(world) for _ in range(BOOKINGS)]
    port = _free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    env = _env(e2e_sandbox, redis_url)
    opens_before = len(e2e_sandbox.state.opens())
    logs: list[Path] = []

    def start_worker(stack: ExitStack) -> None:
        logs.append(tmp_path / f"worker-{len(logs)}.log")
        hostname = f"broker-restart-{os.getpid()}-{len(logs)}@localhost"
        stack.enter_context(celery_worker(env, queue=QUEUE, hostname=hostname, log=logs[-1]))

    supervisor_restarts = 0
    with own_redis(port, tmp_path) as redis, ExitStack() as workers:
        start_worker(workers)
        # when a burst of status changes runs, and Redis is restarted (empty) in the middle of it
        burst = _django(env, BURST.format(paid=world.paid.pk, pks=[b.pk for b in bookings]))
        deadline = time.monotonic() + 30
        while OpenRequest.objects.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        created_before_restart = OpenRequest.objects.count()
        redis.stop()
        time.sleep(0.5)
        redis.start()
        output, _ = burst.communicate(timeout=60)
        assert burst.returncode == 0, output
        # publishes that failed while Redis was down (those rows waited for the sweeper)
        queue_down = output.count("the task queue could not be reached")
        print(f"burst: {queue_down} publish(es) failed while Redis was down")
        # and beat's sweeper runs every few seconds, as it would
        sweeps: list[str] = []
        deadline = time.monotonic() + FRESHNESS - 10
        while time.monotonic() < deadline:
            requests = list(OpenRequest.objects.prefetch_related("sends"))
            done = [r for r in requests if r.state in SETTLED]
            if len(done) == BOOKINGS and all(r.confirmation for r in done if r.state == State.OPENED):
                break
            sweeps.append(_django(env, SWEEP).communicate(timeout=60)[0].strip()[-300:])
            if CONSUMER_CRASH in logs[-1].read_text(errors="replace") and supervisor_restarts < 2:
                # Celery's consumer can die on a broker that comes back (kombu's close after a connection error
                # raises), leaving a process that no longer consumes: a deployment's worker health check
                # restarts it (issue 13). Do what that supervisor does.
                supervisor_restarts += 1
                start_worker(workers)
            time.sleep(1)
        worker_log = logs[-1].read_text(errors="replace")[-6000:]
        print(f"worker restarted by the supervisor after the broker restart: {supervisor_restarts} time(s)")
    # then every door opened exactly once, none late, and the audit says so
    requests = list(OpenRequest.objects.prefetch_related("sends").order_by("pk"))
    physical = len(e2e_sandbox.state.opens()) - opens_before
    late = sum(
        1 for r in requests for send in r.sends.all() if send.sent_at > r.created_at + timedelta(seconds=FRESHNESS)
    )
    audit = sum(max(1, len(r.salto_entry_ids)) for r in requests if r.state == State.OPENED)
    sends = sum(len(r.sends.all()) for r in requests)
    print(
        f"FAULT {'Redis restarted during a burst of ' + str(BOOKINGS):<40} expected {BOOKINGS}  sent {sends}  "
        f"opened {physical}  duplicated {max(0, physical - BOOKINGS)}  lost {max(0, BOOKINGS - physical)}  "
        f"late {late}  audit {'matches' if audit == physical else 'DIFFERS'} ({sorted({r.state for r in requests})})"
    )
    diagnosis = f"{[(r.pk, r.state, r.reason) for r in requests]}\nsweeps: {sweeps[-5:]}\nworker: {worker_log}"
    assert [r.state for r in requests] == [State.OPENED] * BOOKINGS, diagnosis
    assert (physical, late, audit) == (BOOKINGS, 0, BOOKINGS)
    # the restart fell in the middle of the burst (requests made before it, and after it)
    assert 1 <= created_before_restart < BOOKINGS, created_before_restart
