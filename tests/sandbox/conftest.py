from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from locks.sandbox import RunningSandbox, demo


def password_grant(http: httpx2.Client, **overrides: str) -> httpx2.Response:
    data = {
        "grant_type": "password",
        "username": demo.DEMO_USERNAME,
        "password": demo.DEMO_PASSWORD,
        "scope": "user_api.full_access",
        **overrides,
    }
    return http.post("/connect/token", data=data, auth=(demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET))


@pytest.fixture
def http(salto_sandbox: RunningSandbox) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=salto_sandbox.url, timeout=5) as client:
        yield client


@pytest.fixture
def api(http: httpx2.Client) -> httpx2.Client:
    """The same client, with a bearer token of the demo account."""
    token = password_grant(http).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http
