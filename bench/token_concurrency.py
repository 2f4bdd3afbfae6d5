"""Token stampede: N threads in each of M processes ask for a Salto KS token at the same moment.

    .venv/bin/python -m bench.token_concurrency [--threads 8] [--processes 4] [--rounds 5]

Every caller has its own `SaltoClient` (as separate web requests and workers would) sharing the Redis
cache (BENCH_REDIS_URL, default redis://127.0.0.1:6379/15, flushed here). Each round empties the cached
token, then all callers call `fetch_token()` at one wall-clock instant. Printed per round: how many token
requests the sandbox saw (`/_sandbox/token-requests`; must be 1), and over all callers the wait from that
instant until the caller had its token, against the baseline of a single uncached `fetch_token()`
measured in the same run (same cache, same sandbox). Exits 1 if a round saw more than one token request.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from bench._common import (
    BENCH_REDIS_URL,
    ROOT,
    Summary,
    apply_env,
    bench_env,
    django_setup,
    print_table,
    timed_sandbox,
)

CHILD_READY_TIMEOUT = 60.0
ROUND_TIMEOUT = 60.0
GO_DELAY = 0.5  # seconds between announcing the instant and the instant itself


def make_client() -> Any:
    from integrations.models import Integration
    from integrations.salto import client_for
    from locks.sandbox.demo import DEMO_PASSWORD, DEMO_USERNAME

    # An unsaved integration: the client needs only its environment and account.
    return client_for(Integration(environment="acceptance", username=DEMO_USERNAME, password=DEMO_PASSWORD))


# --- child: N callers in one process, driven over stdin/stdout ------------------------------------


def child(threads: int) -> None:
    """N long-lived caller threads (like a threaded web or worker process: each keeps its Redis connection)."""
    signal.alarm(600)  # never outlive a parent that went away
    django_setup()
    inboxes: list[queue.Queue[float | None]] = [queue.Queue() for _ in range(threads)]
    results: queue.Queue[tuple[float, str | None]] = queue.Queue()

    def caller(inbox: queue.Queue[float | None]) -> None:
        with make_client() as client:
            results.put((0.0, None))  # built: ready for the first round
            while (go := inbox.get()) is not None:
                time.sleep(max(0.0, go - time.time()))
                error = None
                try:
                    client.fetch_token()
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                results.put((time.time() - go, error))

    workers = [threading.Thread(target=caller, args=(inbox,), daemon=True) for inbox in inboxes]
    for worker in workers:
        worker.start()
    for _ in workers:
        results.get(timeout=CHILD_READY_TIMEOUT)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] != "go":
            break
        for inbox in inboxes:
            inbox.put(float(command[1]))
        answers = [results.get(timeout=ROUND_TIMEOUT) for _ in range(threads)]
        waits = [wait for wait, _ in answers]
        errors = [error for _, error in answers if error]
        print(json.dumps({"waits": waits, "errors": errors}), flush=True)
    for inbox in inboxes:
        inbox.put(None)
    for worker in workers:
        worker.join(10)


# --- parent ---------------------------------------------------------------------------------------


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"child {process.pid} did not answer within {timeout} s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"child {process.pid} exited (code {process.poll()})")
    return line


def token_requests(sandbox_url: str) -> int:
    import httpx2

    response = httpx2.get(f"{sandbox_url}/_sandbox/token-requests", timeout=5)
    response.raise_for_status()
    return int(response.json()["count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8, help="callers per process (N)")
    parser.add_argument("--processes", type=int, default=4, help="processes (M)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup-rounds", type=int, default=1, help="rounds not counted (first Redis use per thread)")
    parser.add_argument("--baseline", type=int, default=20, help="single uncached fetches for the baseline")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.threads)
        return

    redis_url = os.environ.get("BENCH_REDIS_URL", BENCH_REDIS_URL)
    if urlsplit(redis_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("BENCH_REDIS_URL must point at 127.0.0.1")
    import redis

    redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()
    print(
        f"token concurrency: {args.threads} threads x {args.processes} processes, {args.rounds} rounds, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    from bench.open_latency import sandbox_env

    with timed_sandbox() as (sandbox, _opened):
        env = bench_env(REDIS_URL=redis_url, **sandbox_env(sandbox.url))
        apply_env(env)
        django_setup()

        # Baseline: one caller, empty cache, one password grant (through the same TokenProvider and Redis).
        baseline: list[float] = []
        with make_client() as client:
            client.fetch_token()  # warm-up: connections, imports
            for _ in range(args.baseline):
                client.tokens.invalidate()
                started = time.perf_counter()
                client.fetch_token()
                baseline.append(time.perf_counter() - started)

        command = [sys.executable, "-m", "bench.token_concurrency", "--child", "--threads", str(args.threads)]
        children: list[subprocess.Popen[str]] = []
        per_round: list[list[float]] = []
        counts: list[int] = []
        cached_waits: list[float] = []
        cached_counts: list[int] = []
        errors: list[str] = []
        try:
            for _ in range(args.processes):
                pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
                children.append(subprocess.Popen(command, cwd=ROOT, env=env, text=True, **pipes))
            for process in children:
                if read_line(process, CHILD_READY_TIMEOUT).strip() != "ready":
                    raise RuntimeError("a child did not get ready")
            with make_client() as client:

                def stampede(*, empty_cache: bool) -> tuple[list[float], int]:
                    if empty_cache:
                        client.tokens.invalidate()
                    before = token_requests(sandbox.url)
                    go = time.time() + GO_DELAY
                    for process in children:
                        assert process.stdin is not None
                        process.stdin.write(f"go {go}\n")
                        process.stdin.flush()
                    round_waits: list[float] = []
                    for process in children:
                        result = json.loads(read_line(process, ROUND_TIMEOUT))
                        round_waits.extend(result["waits"])
                        errors.extend(result["errors"])
                    return round_waits, token_requests(sandbox.url) - before

                for _ in range(args.warmup_rounds + args.rounds):
                    round_waits, count = stampede(empty_cache=True)
                    per_round.append(round_waits)
                    counts.append(count)
                # Reference: the same wake-up of every caller at once, but the token is already cached.
                for _ in range(args.rounds):
                    round_waits, count = stampede(empty_cache=False)
                    cached_waits.extend(round_waits)
                    cached_counts.append(count)
        finally:
            for process in children:
                if process.poll() is None and process.stdin is not None:
                    try:
                        process.stdin.write("quit\n")
                        process.stdin.close()
                    except BrokenPipeError:
                        pass
            for process in children:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

    waits = [wait for r in per_round[args.warmup_rounds :] for wait in r]
    base = Summary.of(baseline)
    callers = args.threads * args.processes
    print(
        f"\ntoken requests seen by the sandbox per round, warm-up included ({callers} callers each): {counts} "
        "(must be 1 each)"
    )
    print(f"token requests in the cached-token rounds: {cached_counts} (must be 0 each)")
    print("ratios (x median, x p90) are against the single uncached fetch")
    print_table(
        [
            ("baseline: single uncached fetch_token()", base),
            (f"stampede, empty cache: wait per caller ({callers} x {args.rounds})", Summary.of(waits)),
            (f"reference: same stampede, token cached ({callers} x {args.rounds})", Summary.of(cached_waits)),
        ],
        baseline=base,
    )
    print("per round:")
    labels = [f"  warm-up {i + 1}" for i in range(args.warmup_rounds)]
    labels += [f"  round {i + 1}" for i in range(args.rounds)]
    print_table([(label, Summary.of(r)) for label, r in zip(labels, per_round, strict=True)], baseline=base)
    if errors:
        print(f"{len(errors)} callers failed, e.g. {errors[0]}")
    if any(count != 1 for count in counts) or any(cached_counts) or errors:
        print("FAIL: more than one token request in a round, or a caller failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
