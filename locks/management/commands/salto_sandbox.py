"""python manage.py salto_sandbox --port 8765: serve the Salto KS sandbox on loopback and say how to use it."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from locks.sandbox import demo
from locks.sandbox.server import is_loopback, make_server
from locks.sandbox.state import SandboxState


def _stop_like_ctrl_c(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Serve a fake Salto KS (identity server and Connect API) on 127.0.0.1 with a demo site."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 = any free port)")
        parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
        parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
        parser.add_argument(
            "--state-file",
            type=Path,
            help="keep IQ activations (secret, PIN) in this JSON file across restarts, as a real site would",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host: str = options["host"]
        port: int = options["port"]
        # The sandbox hands out IQ secrets and PINs to anyone who asks: never expose it beyond this machine.
        if not is_loopback(host):
            raise CommandError(f"Refusing to serve on {host!r}: the sandbox only listens on loopback (127.0.0.1).")
        if not 0 <= port <= 65535:
            raise CommandError("--port must be between 0 and 65535.")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from exc
        sock.listen(128)
        port = int(sock.getsockname()[1])
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{port}"
        self.stdout.write(self._instructions(url))
        state = SandboxState()
        state_file: Path | None = options["state_file"]
        if state_file is not None and state_file.exists():
            state.import_activations(json.loads(state_file.read_text()))
        server = make_server(state, log_level=options["log_level"])
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it with the handler it found; make that
        # handler an exception (like Ctrl-C) so the state below is still saved.
        signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            if state_file is not None:
                state_file.parent.mkdir(parents=True, exist_ok=True)
                state_file.write_text(json.dumps(state.export_activations(), indent=2))

    @staticmethod
    def _instructions(url: str) -> str:
        locks = "\n".join(
            f"    {lock.name:<15} {lock.id}{'  (offline)' if not lock.online else ''}" for lock in demo.DEMO_LOCKS
        )
        return f"""
Salto KS sandbox listening on {url}

Point the console at it (environment variables, then restart the console and workers):
    SALTO_KS_ACCEPTANCE_IDENTITY_URL={url}
    SALTO_KS_ACCEPTANCE_API_URL={url}
    SALTO_KS_CLIENT_ID={demo.DEMO_CLIENT_ID}
    SALTO_KS_CLIENT_SECRET={demo.DEMO_CLIENT_SECRET}

Enter in the console's Salto KS configuration:
    Environment   Acceptance
    Site UID      {demo.DEMO_SITE_UID}   (site id {demo.DEMO_SITE_ID})
    Username      {demo.DEMO_USERNAME}
    Password      {demo.DEMO_PASSWORD}
    IQ id         {demo.DEMO_IQ_ID}   ({demo.DEMO_IQ_NAME}; initial IQ PIN {demo.DEMO_INITIAL_PIN})

Locks:
{locks}

Watch the doors open:  {url}/_sandbox/
Control surface (JSON): {url}/_sandbox/state, /_sandbox/faults, /_sandbox/reset, ... (see docs/salto-ks.md)
Stop with Ctrl+C.
"""
