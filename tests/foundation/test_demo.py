"""`make demo` as a person meets it: one command serves the console, the printed accounts log in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.demo_process import RunningDemo, running_demo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running_demo(tmp_path_factory.mktemp("demo")) as running:
        yield running


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


def test_the_demo_serves_the_admin_login_and_health(demo: RunningDemo) -> None:
    assert httpx2.get(f"{demo.url}/healthz").status_code == 200
    login = httpx2.get(f"{demo.url}/admin/login/")
    assert login.status_code == 200
    assert 'name="username"' in login.text


def test_the_printed_accounts_log_in_and_see_the_demo_data(demo: RunningDemo) -> None:
    assert set(demo.accounts) == {"operator", "frontdesk"}
    for username, password in demo.accounts.items():
        client = _log_in(demo.url, username, password)
        bookings = client.get("/admin/bookings/booking/")
        assert bookings.status_code == 200
        assert "Ada Lovelace" in bookings.text
        assert "Studio 2" in bookings.text


def test_the_demo_starts_the_sandbox_and_prefills_the_integration(demo: RunningDemo) -> None:
    page = httpx2.get(f"{demo.sandbox_url}/_sandbox/")
    assert page.status_code == 200
    assert "Front door" in page.text
    operator = _log_in(demo.url, "operator", demo.accounts["operator"])
    integrations = operator.get("/admin/integrations/integration/")
    assert "Salto KS acceptance (sandbox)" in integrations.text


def test_the_demo_stops_on_sigterm_without_leaving_processes(tmp_path: Path) -> None:
    # given a running demo
    with running_demo(tmp_path) as demo:
        assert httpx2.get(f"{demo.sandbox_url}/_sandbox/state", timeout=2).status_code == 200
    # when it was sent SIGTERM (as a service manager or a background job's kill does),
    # then it stopped by itself, and so did the console and the sandbox it started
    assert demo.process.returncode == 0
    for url in (f"{demo.url}/healthz", f"{demo.sandbox_url}/_sandbox/state"):
        with pytest.raises(httpx2.ConnectError):
            httpx2.get(url, timeout=2)
    assert (tmp_path / "sandbox.json").exists()  # the sandbox saved its state on the way out
