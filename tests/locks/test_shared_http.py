"""One HTTP client per process and environment: kept across opens, left open by a SaltoClient, never inherited."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from integrations.models import Integration
from integrations.salto import client_for
from locks.environments import Environment
from locks.http import close_shared_http_clients, shared_http_client


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    close_shared_http_clients()
    yield
    close_shared_http_clients()


def _integration(environment: str = "acceptance") -> Integration:
    return Integration(name="x", environment=environment, username="doors@example.com", password="pw")


def test_every_client_of_an_environment_shares_one_connection_pool() -> None:
    with client_for(_integration()) as first, client_for(_integration()) as second:
        assert first._http is second._http is shared_http_client(Environment.ACCEPTANCE)
        assert client_for(_integration("production"))._http is not first._http
    # closing a SaltoClient leaves the process's pool open for the next open
    assert not shared_http_client(Environment.ACCEPTANCE).is_closed


def test_a_client_without_a_shared_pool_closes_its_own() -> None:
    from locks.client import SaltoClient

    client = SaltoClient(environment="acceptance", username="u", password="p", client_id="c", client_secret="s")
    client.close()
    assert client._http.is_closed


def test_a_forked_child_builds_its_own_pool() -> None:
    parent = shared_http_client(Environment.ACCEPTANCE)
    pid = os.fork()
    if pid == 0:  # the child: never the parent's sockets
        os._exit(0 if shared_http_client(Environment.ACCEPTANCE) is not parent else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert shared_http_client(Environment.ACCEPTANCE) is parent
