"""`salto_ks check` as a support engineer runs it, against the sandbox over loopback (not a mock)."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from locks.sandbox import RunningSandbox, demo

ARGS = ["--environment", "acceptance", "--site-uid", demo.DEMO_SITE_UID, "--username", demo.DEMO_USERNAME]
ROOT = Path(__file__).resolve().parents[2]


def test_check_prints_every_lock_of_the_demo_site_across_pages(
    salto_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the demo site, whose 8 locks the sandbox serves 3 to a page
    monkeypatch.setenv("SALTO_KS_PASSWORD", demo.DEMO_PASSWORD)
    out = StringIO()
    # when
    call_command("salto_ks", "check", *ARGS, stdout=out)
    # then
    text = out.getvalue()
    assert len(demo.DEMO_LOCKS) > salto_sandbox.state.config.page_size * 2
    for lock in demo.DEMO_LOCKS:
        assert lock.id in text
        assert lock.name in text
    assert "Storage" in text
    assert "OFFLINE" in text
    assert f"resolved to {demo.DEMO_SITE_ID}" in text
    assert "all steps OK" in text
    assert demo.DEMO_PASSWORD not in text
    lock_pages = [r for r in salto_sandbox.state.requests() if r["path"].endswith("/locks")]
    assert len(lock_pages) >= 3


def test_check_with_a_wrong_password_exits_non_zero_naming_the_step(salto_sandbox: RunningSandbox) -> None:
    # given a wrong password, passed as a support engineer would (environment variable, separate process)
    environ = {
        **os.environ,
        "SALTO_KS_PASSWORD": "not-the-password",
        "SALTO_KS_ACCEPTANCE_IDENTITY_URL": salto_sandbox.url,
        "SALTO_KS_ACCEPTANCE_API_URL": salto_sandbox.url,
        "SALTO_KS_CLIENT_ID": demo.DEMO_CLIENT_ID,
        "SALTO_KS_CLIENT_SECRET": demo.DEMO_CLIENT_SECRET,
    }
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "salto_ks", "check", *ARGS],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    # then
    assert result.returncode != 0
    assert "step 'token' failed" in result.stderr
    assert "invalid_grant" in result.stderr
    assert "not-the-password" not in result.stdout + result.stderr


def test_locks_lists_the_demo_locks(salto_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALTO_KS_PASSWORD", demo.DEMO_PASSWORD)
    out = StringIO()
    call_command("salto_ks", "locks", *ARGS, stdout=out)
    assert all(lock.name in out.getvalue() for lock in demo.DEMO_LOCKS)


def test_check_names_an_unknown_site(salto_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALTO_KS_PASSWORD", demo.DEMO_PASSWORD)
    args = [*ARGS]
    args[args.index(demo.DEMO_SITE_UID)] = "NL0000000000"
    with pytest.raises(CommandError, match="step 'site' failed"):
        call_command("salto_ks", "check", *args, stdout=StringIO())
