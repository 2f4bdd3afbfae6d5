"""`make demo`: migrate, load demo data, start the Salto KS sandbox and serve the console.

Everything runs on SQLite with tasks in-process, so a fresh machine needs nothing but Python.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

import httpx2
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from integrations.demo import DEMO_ACCOUNTS, demo_integration_prefill, seed_demo_data

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
# The sandbox keeps the IQ activation here, so a restarted demo still opens doors with the stored PIN.
SANDBOX_STATE = Path(settings.BASE_DIR) / ".demo" / "sandbox.json"


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Set up and serve the demo: console on SQLite plus the bundled Salto KS sandbox."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Port of the console (default 8000).")
        parser.add_argument("--sandbox-port", type=int, default=8765, help="Port of the Salto KS sandbox.")
        parser.add_argument("--setup-only", action="store_true", help="Migrate and load data, then stop.")
        parser.add_argument(
            "--sandbox-state", type=Path, default=SANDBOX_STATE, help="Where the sandbox keeps IQ activations."
        )

    def handle(
        self, *args: Any, port: int, sandbox_port: int, setup_only: bool, sandbox_state: Path, **options: Any
    ) -> None:
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        call_command("migrate", interactive=False, verbosity=0)
        seed_demo_data()
        demo_integration_prefill()
        self._print_accounts(port, sandbox_url)
        if setup_only:
            return

        # Stop cleanly on SIGTERM as on Ctrl-C: a background job of a non-interactive shell ignores SIGINT.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        child_env = {**os.environ, **self._sandbox_environment(sandbox_url)}
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    MANAGE,
                    "salto_sandbox",
                    "--port",
                    str(sandbox_port),
                    "--state-file",
                    str(sandbox_state),
                ],
                env=child_env,
            ),
            subprocess.Popen([sys.executable, MANAGE, "runserver", "--noreload", f"127.0.0.1:{port}"], env=child_env),
        ]
        try:
            self._wait_until_up(f"http://127.0.0.1:{port}/healthz", children)
            self.stdout.write(self.style.SUCCESS(f"\nConsole ready at http://127.0.0.1:{port}/admin/  (Ctrl-C stops)"))
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            raise CommandError("A demo process stopped; see its output above.")
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()  # both stop gracefully on SIGTERM; the sandbox saves its state
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()

    @staticmethod
    def _sandbox_environment(sandbox_url: str) -> dict[str, str]:
        from locks.sandbox import demo

        return {
            "SALTO_KS_ACCEPTANCE_IDENTITY_URL": sandbox_url,
            "SALTO_KS_ACCEPTANCE_API_URL": sandbox_url,
            "SALTO_KS_CLIENT_ID": demo.DEMO_CLIENT_ID,
            "SALTO_KS_CLIENT_SECRET": demo.DEMO_CLIENT_SECRET,
        }

    def _print_accounts(self, port: int, sandbox_url: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"\nDemo accounts (log in at http://127.0.0.1:{port}/admin/):"))
        for account in DEMO_ACCOUNTS:
            self.stdout.write(f"  {account.role:<22} username: {account.username:<10} password: {account.password}")
        self.stdout.write(f"\nSalto KS sandbox: {sandbox_url}/_sandbox/ shows each lock's opens.\n")

    def _wait_until_up(self, url: str, children: list[subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(child.poll() is not None for child in children):
                raise CommandError("A demo process failed to start; see its output above.")
            try:
                if httpx2.get(url, timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.3)
        raise CommandError(f"The console did not answer at {url} within 60 s.")
