"""Run `manage.py demo` as its own process, as `make demo` does, on a throw-away SQLite file and free ports."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunningDemo:
    url: str
    sandbox_url: str
    output: str
    process: subprocess.Popen[str]

    @property
    def accounts(self) -> dict[str, str]:
        """username → password, as printed for a person to read."""
        return dict(re.findall(r"username: (\S+)\s+password: (\S+)", self.output))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_demo(workdir: Path) -> Iterator[RunningDemo]:
    port, sandbox_port = free_port(), free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SALTO_KS_", "REDIS_URL", "DATABASE_URL"))}
    environ.update(DEBUG="1", DATABASE_URL=f"sqlite:///{workdir / 'demo.sqlite3'}", PYTHONUNBUFFERED="1")
    command = [sys.executable, "manage.py", "demo", "--port", str(port), "--sandbox-port", str(sandbox_port)]
    command += ["--sandbox-state", str(workdir / "sandbox.json")]
    # Its own process group, so that nothing it started can outlive the test.
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if "Console ready at" in line:
            break
    try:
        output = "".join(lines)
        assert "Console ready at" in output, output
        sandbox = re.search(r"Salto KS sandbox: (http://127\.0\.0\.1:\d+)", output)
        assert sandbox, output
        yield RunningDemo(f"http://127.0.0.1:{port}", sandbox.group(1), output, process)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
