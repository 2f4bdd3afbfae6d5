"""Serving the sandbox with uvicorn: in a background thread for tests, or in the foreground for a person."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from types import TracebackType

import uvicorn

from locks.sandbox.app import create_app
from locks.sandbox.state import SandboxState

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(state: SandboxState, *, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(state),
        http="h11",
        lifespan="off",
        log_level=log_level,
        access_log=log_level in ("info", "debug"),
        timeout_graceful_shutdown=1,
        # The Date header comes from the sandbox's clock (FaultInjection), which may run off the machine's.
        date_header=False,
    )
    return uvicorn.Server(config)


class RunningSandbox:
    """A sandbox served on 127.0.0.1 from a daemon thread. `url` has no trailing slash."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, state: SandboxState, port: int) -> None:
        self.server = server
        self.thread = thread
        self.state = state
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_sandbox_in_thread(
    port: int = 0, *, state: SandboxState | None = None, startup_timeout: float = 10.0
) -> RunningSandbox:
    """Bind 127.0.0.1:port (0 = a free ephemeral port), serve in a daemon thread, return once accepting."""
    state = state or SandboxState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY on Linux; without it, keep-alive requests wait ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    bound_port = int(sock.getsockname()[1])
    server = make_server(state)
    # uvicorn installs signal handlers only in the main thread; nothing to switch off here.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="salto-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            with contextlib.suppress(OSError):
                sock.close()
            raise RuntimeError("the Salto KS sandbox did not start")
        time.sleep(0.01)
    return RunningSandbox(server, thread, state, bound_port)
