"""Shared plumbing of the benchmarks: environment, statistics, the sandbox with timestamps, a worker.

Nothing here imports Django at module level: each benchmark sets its environment first, then calls
`django_setup()`. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.worker_process import celery_worker as start_worker

ROOT = Path(__file__).resolve().parents[1]

# The same throw-away secrets as the Makefile's TEST_ENV (never used outside tests and benchmarks).
TEST_DEFAULTS = {
    "SECRET_KEY": "test-only-secret-key",
    "FIELD_ENCRYPTION_KEYS": "dGVzdC1vbmx5LWZpZWxkLWtleS0wMDAwMDAwMDAwMDA=",
    "DEBUG": "0",
}
BENCH_PG_URL = "postgres://postgres@127.0.0.1:5432/ireserve_bench"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/15"


def bench_env(**overrides: str | None) -> dict[str, str]:
    """os.environ with the test defaults filled in and OVERRIDES applied (None removes a variable)."""
    env = {**TEST_DEFAULTS, **os.environ}
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def apply_env(env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name not in env:
            del os.environ[name]
    os.environ.update(env)


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ireserve_salto.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- statistics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p90: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("no samples")
        data = sorted(samples)
        p90 = statistics.quantiles(data, n=10, method="inclusive")[8] if len(data) > 1 else data[0]
        return cls(len(data), statistics.median(data), p90, data[0], data[-1])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def print_table(rows: list[tuple[str, Summary]], *, baseline: Summary | None = None) -> None:
    width = max(len(name) for name, _ in rows)
    header = f"{'':{width}}  {'n':>4} {'median ms':>10} {'p90 ms':>9} {'min ms':>9} {'max ms':>9}"
    if baseline is not None:
        header += f" {'x median':>9} {'x p90':>7}"
    print(header)
    for name, s in rows:
        line = f"{name:{width}}  {s.n:4d} {ms(s.median):>10} {ms(s.p90):>9} {ms(s.min):>9} {ms(s.max):>9}"
        if baseline is not None:
            line += f" {s.median / baseline.median:9.1f} {s.p90 / baseline.p90:7.1f}"
        print(line)


# --- the sandbox, noting when each open lands -----------------------------------------------------


@contextmanager
def timed_sandbox() -> Iterator[tuple[Any, list[float]]]:
    """The Salto KS sandbox on 127.0.0.1 in a thread; the list receives time.perf_counter() of each open.

    The sandbox runs in this process, so its perf_counter readings compare directly with ours.
    """
    from locks.sandbox import SandboxState, start_sandbox_in_thread

    opened: list[float] = []
    cond = threading.Condition()

    class TimedState(SandboxState):
        def operate_lock(self, account: Any, lock_id: str, *, locked_state: Any, otp: Any) -> None:
            super().operate_lock(account, lock_id, locked_state=locked_state, otp=otp)
            if locked_state == "unlocked":
                with cond:
                    opened.append(time.perf_counter())
                    cond.notify_all()

    state = TimedState()
    sandbox = start_sandbox_in_thread(state=state)
    sandbox.open_condition = cond  # type: ignore[attr-defined]
    try:
        yield sandbox, opened
    finally:
        sandbox.stop()


def wait_for_open(sandbox: Any, opened: list[float], count: int, timeout: float) -> float:
    """perf_counter() of open number COUNT (1-based); raises TimeoutError after TIMEOUT seconds."""
    cond: threading.Condition = sandbox.open_condition
    with cond:
        if not cond.wait_for(lambda: len(opened) >= count, timeout=timeout):
            raise TimeoutError(f"the sandbox saw {len(opened)} opens, expected {count}, within {timeout} s")
        return opened[count - 1]


# --- a Celery worker subprocess: the one the end-to-end tests use -------------------------------


@contextmanager
def celery_worker(env: dict[str, str], *, queue: str, log: Path, startup_timeout: float = 60) -> Iterator[Any]:
    with start_worker(
        env, queue=queue, hostname=f"bench-{os.getpid()}@localhost", log=log, startup_timeout=startup_timeout
    ) as process:
        yield process
