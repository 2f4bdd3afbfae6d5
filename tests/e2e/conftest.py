"""End-to-end: a real Celery worker subprocess on Redis, the test database, and the sandbox on loopback.

The worker gets the same DATABASE_URL as the test database (committed data: transactional tests), a
dedicated queue, and the sandbox's URL as the Salto acceptance environment. Module-scoped, so it starts once.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from integrations.models import CachedLock, LockMapping
from locks.sandbox import RunningSandbox, start_sandbox_in_thread
from locks.sandbox.demo import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_IQ_ID,
    DEMO_LOCK_IDS,
    DEMO_PASSWORD,
    DEMO_SITE_ID,
    DEMO_USERNAME,
)
from tests.integrations.opening.builders import World, make_world
from tests.worker_process import celery_worker

QUEUE = "opening-e2e"
WORKER_FRESHNESS_SECONDS = 8


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    hostname: str


@pytest.fixture
def _clear_cache() -> None:
    # Overrides the suite's autouse cache.clear(): on Redis that is FLUSHDB, which would also wipe the
    # broker's queue bindings under the running worker.
    return None


@pytest.fixture(scope="module")
def e2e_sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox_in_thread() as sandbox:
        yield sandbox


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def celery_worker_process(
    django_db_setup: Any, django_db_blocker: Any, e2e_sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("end-to-end tests need PostgreSQL and Redis (DATABASE_URL, REDIS_URL)")
    # Start from an empty broker database: nothing left over from earlier runs.
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    hostname = f"opening-e2e-{os.getpid()}@localhost"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "OPEN_FRESHNESS_SECONDS": str(WORKER_FRESHNESS_SECONDS),
        # An unclear send is settled by the sandbox's entries within the short freshness of these tests.
        "OPEN_ENTRIES_POLL_SECONDS": "1",
        "OPEN_ENTRIES_GRACE_SECONDS": "1",
        "SALTO_KS_ACCEPTANCE_IDENTITY_URL": e2e_sandbox.url,
        "SALTO_KS_ACCEPTANCE_API_URL": e2e_sandbox.url,
        "SALTO_KS_CLIENT_ID": DEMO_CLIENT_ID,
        "SALTO_KS_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "DEBUG": "0",
    }
    with celery_worker(env, queue=QUEUE, hostname=hostname, log=log, startup_timeout=30) as process:
        yield Worker(process, log, hostname)


def sandbox_world(sandbox: RunningSandbox) -> World:
    """The opening builders' world, activated at the sandbox's IQ, mapped to the sandbox's front door."""
    front_door = DEMO_LOCK_IDS["Front door"]
    activation = sandbox.state.activate(DEMO_IQ_ID)
    world = make_world(
        site_id=DEMO_SITE_ID,
        iq_id=DEMO_IQ_ID,
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        iq_secret=activation["secret"],
        current_pin=activation["pin"],
    )
    LockMapping.objects.filter(integration=world.integration).update(lock_id=front_door)
    # The builder's fake-Salto lock becomes the sandbox's front door, on the sandbox's IQ.
    CachedLock.objects.filter(integration=world.integration).update(lock_id=front_door, iq_id=DEMO_IQ_ID)
    return world
