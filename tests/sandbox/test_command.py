from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from django.core.management import CommandError, call_command

from locks.management.commands.salto_sandbox import Command
from locks.sandbox import demo
from locks.sandbox.server import is_loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_it_refuses_hosts_other_than_loopback(host: str) -> None:
    with pytest.raises(CommandError, match="loopback"):
        call_command("salto_sandbox", "--host", host, "--port", "0")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert is_loopback(host)


def test_it_says_what_to_enter_in_the_console() -> None:
    text = Command._instructions("http://127.0.0.1:8765")

    for expected in (
        "Acceptance",
        demo.DEMO_SITE_UID,
        demo.DEMO_USERNAME,
        demo.DEMO_PASSWORD,
        demo.DEMO_IQ_ID,
        "SALTO_KS_ACCEPTANCE_IDENTITY_URL=http://127.0.0.1:8765",
        "SALTO_KS_ACCEPTANCE_API_URL=http://127.0.0.1:8765",
        f"SALTO_KS_CLIENT_ID={demo.DEMO_CLIENT_ID}",
        f"SALTO_KS_CLIENT_SECRET={demo.DEMO_CLIENT_SECRET}",
        "http://127.0.0.1:8765/_sandbox/",
    ):
        assert expected in text


def test_it_serves_on_loopback_until_stopped() -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "manage.py", "salto_sandbox", "--port", "0", "--log-level", "warning"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = None
        for _ in range(20):
            line = process.stdout.readline()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "no URL printed"
        page = None
        for _ in range(50):
            try:
                page = httpx2.get(f"{url}/_sandbox/", timeout=2)
                break
            except httpx2.ConnectError:
                time.sleep(0.1)
        assert page is not None
        assert page.status_code == 200
        assert "Front door" in page.text
    finally:
        process.terminate()
        process.wait(10)


def _serve(root: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "salto_sandbox", "--port", "0", "--log-level", "warning", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for _ in range(40):
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", process.stdout.readline())
        if found:
            url = found.group(1)
            for _ in range(50):
                try:
                    httpx2.get(f"{url}/_sandbox/state", timeout=2)
                    return process, url
                except httpx2.ConnectError:
                    time.sleep(0.1)
    process.kill()
    raise AssertionError("the sandbox did not start")


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(10)


def test_a_state_file_keeps_iq_activations_across_restarts(tmp_path: Path) -> None:
    # given a sandbox with a state file, where the demo account was activated at the IQ
    root = Path(__file__).resolve().parents[2]
    state_file = tmp_path / "sandbox.json"
    process, url = _serve(root, "--state-file", str(state_file))
    try:
        activation = httpx2.post(f"{url}/_sandbox/iqs/{demo.DEMO_IQ_ID}/activation", json={}, timeout=5).json()
    finally:
        _stop(process)
    # when it restarts
    process, url = _serve(root, "--state-file", str(state_file))
    try:
        token = httpx2.post(
            f"{url}/connect/token",
            data={
                "grant_type": "password",
                "username": demo.DEMO_USERNAME,
                "password": demo.DEMO_PASSWORD,
                "scope": "user_api.full_access",
            },
            auth=(demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET),
            timeout=5,
        ).json()["access_token"]
        activated = httpx2.get(
            f"{url}/v1.1/me/{demo.DEMO_SITE_ID}/activated_iqs", headers={"Authorization": f"Bearer {token}"}, timeout=5
        ).json()
        secret_again = httpx2.get(
            f"{url}/v1.1/sites/{demo.DEMO_SITE_ID}/iqs/{demo.DEMO_IQ_ID}/secret",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    finally:
        _stop(process)
    # then the account is still activated there, with the same secret (which Salto hands out only once)
    assert [item["iq_id"] for item in activated["items"] if item["activated"]] == [demo.DEMO_IQ_ID]
    assert secret_again.status_code == 403
    saved = {row["iq_id"]: row for row in json.loads(state_file.read_text())}
    assert saved[demo.DEMO_IQ_ID]["secret"] == activation["secret"]
