"""Support command: what a support engineer runs when a door does not open.

    python manage.py salto_ks check --environment acceptance --site-uid NL6254340082 --username ops@example.com
    python manage.py salto_ks locks --environment acceptance --site-uid NL6254340082 --username ops@example.com

The password comes from SALTO_KS_PASSWORD or a prompt; it is never printed.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.management.base import BaseCommand, CommandError, CommandParser

from locks.client import SaltoClient
from locks.environments import Environment
from locks.errors import SaltoError
from locks.schemas import Lock

T = TypeVar("T")


def _state(online: bool | None) -> str:
    if online is None:
        return "online state unknown"
    return "online" if online else "OFFLINE"


class Command(BaseCommand):
    help = "Check a Salto KS account and site (token, site, IQs, locks), or list the site's locks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["check", "locks"])
        parser.add_argument("--environment", required=True, choices=[e.value for e in Environment])
        parser.add_argument("--site-uid", required=True)
        parser.add_argument("--username", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("SALTO_KS_PASSWORD") or getpass.getpass("Salto KS password: ")
        if not password:
            raise CommandError("No password given (set SALTO_KS_PASSWORD or type it at the prompt)")
        with SaltoClient(environment=options["environment"], username=options["username"], password=password) as client:
            if options["action"] == "check":
                self._check(client, options["site_uid"])
            else:
                site = self._step("site", lambda: client.resolve_site(options["site_uid"]))
                self._print_locks(self._step("locks", lambda: client.list_locks(site.id)))

    def _check(self, client: SaltoClient, site_uid: str) -> None:
        token = self._step("token", lambda: client.fetch_token(force=True))
        self.stdout.write(f"token: OK (expires {token.expires_at:%Y-%m-%d %H:%M:%S} UTC)")
        site = self._step("site", lambda: client.resolve_site(site_uid))
        self.stdout.write(f"site: {site_uid.strip()} resolved to {site.id} ({site.customer_reference or '-'})")
        iqs = self._step("iqs", lambda: client.list_iqs(site.id))
        self.stdout.write(f"iqs: {len(iqs)}")
        for iq in iqs:
            otp = "otp enabled" if iq.otp_enabled else "otp disabled" if iq.otp_enabled is False else "otp unknown"
            self.stdout.write(f"  {iq.id}  {iq.customer_reference or '-'}  {_state(iq.online)}  {otp}")
        self._print_locks(self._step("locks", lambda: client.list_locks(site.id)))
        self.stdout.write(self.style.SUCCESS("check: all steps OK"))

    def _print_locks(self, locks: list[Lock]) -> None:
        self.stdout.write(f"locks: {len(locks)}")
        for lock in locks:
            iq = f"IQ {lock.iq.id} ({_state(lock.iq.is_online)})" if lock.iq else "no IQ"
            self.stdout.write(f"  {lock.id}  {lock.customer_reference or '-'}  {_state(lock.online)}  {iq}")

    def _step(self, name: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except SaltoError as exc:
            # str(exc) is built to be safe to show: Salto's reason, never a secret.
            raise CommandError(f"step '{name}' failed: {exc}") from None
