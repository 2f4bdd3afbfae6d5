"""One HTTP client (a connection pool with keep-alive) per process and Salto KS environment.

Building an `httpx2.Client` per open meant a new connection, and against real Salto a new TLS handshake, for
every door. The open path (integrations.salto.client_for) takes the process's shared client instead; each
SaltoClient around it keeps its own account, token and clock. httpx's client is safe to share between the
threads of a thread-pool worker; after a fork (a prefork worker's children) a child never reuses its parent's
sockets: the registry is emptied in the child.
"""

from __future__ import annotations

import os
import threading

import httpx2

from locks.environments import Environment

# Enough for a thread-pool worker's concurrency; idle connections are dropped before servers usually do, so a
# command is rarely written to a connection the server is closing (which would make its outcome unclear).
POOL_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=50, keepalive_expiry=4.0)

_clients: dict[Environment, httpx2.Client] = {}
_lock = threading.Lock()


def shared_http_client(environment: Environment | str) -> httpx2.Client:
    """This process's client for ENVIRONMENT (made on first use, then kept for the life of the process)."""
    from locks.client import REQUEST_HEADERS, _tls_context

    environment = Environment(environment)
    client = _clients.get(environment)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(environment)
        if client is None:
            client = httpx2.Client(headers=REQUEST_HEADERS, verify=_tls_context(), limits=POOL_LIMITS)
            _clients[environment] = client
        return client


def close_shared_http_clients() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def _forget_after_fork() -> None:
    # The parent's sockets are not the child's to use; the objects are simply dropped (not closed: closing
    # would shut the parent's connections too).
    _clients.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
