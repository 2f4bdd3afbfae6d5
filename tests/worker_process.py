"""A real Celery worker subprocess, started and stopped the same way by the end-to-end tests and bench/."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def celery_worker(
    env: dict[str, str],
    *,
    queue: str,
    hostname: str,
    log: Path,
    startup_timeout: float = 60,
    pool: Sequence[str] = ("--pool=solo",),
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker consuming only QUEUE, its output in LOG; yields once it says "ready.".

    POOL: the pool arguments (the tests' default: solo, one task at a time; `()`: the settings' production pool).
    """
    command = [
        str(Path(sys.executable).with_name("celery")),
        "-A",
        "ireserve_salto",
        "worker",
        *pool,
        "-Q",
        queue,
        "-n",
        hostname,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "INFO",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout
        while b"ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
