"""`make demo` as a person meets it: one command serves the console, the printed accounts log in."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    database = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    port, sandbox_port = _free_port(), _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SALTO_KS_", "REDIS_URL", "DATABASE_URL"))}
    environ.update(DEBUG="1", DATABASE_URL=f"sqlite:///{database}", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--sandbox-port", str(sandbox_port)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        if "Console ready at" in line:
            break
    try:
        assert any("Console ready at" in line for line in output), "".join(output)
        yield f"http://127.0.0.1:{port}", "".join(output)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _log_in(base_url: str, username: str, password: str) -> httpx2.Client:
    client = httpx2.Client(base_url=base_url, follow_redirects=False, timeout=10)
    login_page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
    assert token, login_page.text[:500]
    response = client.post(
        "/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": f"{base_url}/admin/login/"},
    )
    assert response.status_code == 302, f"{username} could not log in"
    assert response.headers["location"] == "/admin/"
    return client


def test_the_demo_serves_the_admin_login_and_health(demo: tuple[str, str]) -> None:
    base_url, _ = demo
    assert httpx2.get(f"{base_url}/healthz").status_code == 200
    login = httpx2.get(f"{base_url}/admin/login/")
    assert login.status_code == 200
    assert 'name="username"' in login.text


def test_the_printed_accounts_log_in_and_see_the_demo_data(demo: tuple[str, str]) -> None:
    base_url, output = demo
    accounts = re.findall(r"username: (\S+)\s+password: (\S+)", output)
    assert len(accounts) == 2, output

    for username, password in accounts:
        client = _log_in(base_url, username, password)
        bookings = client.get("/admin/bookings/booking/")
        assert bookings.status_code == 200
        assert "Ada Lovelace" in bookings.text
        assert "Studio 2" in bookings.text


def test_the_demo_starts_the_sandbox(demo: tuple[str, str]) -> None:
    _, output = demo
    sandbox_url = re.search(r"Salto KS sandbox: (http://127\.0\.0\.1:\d+)", output)
    assert sandbox_url, output
    page = httpx2.get(f"{sandbox_url.group(1)}/_sandbox/")
    assert page.status_code == 200
    assert "Front door" in page.text
