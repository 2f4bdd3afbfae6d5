"""Fixtures for the Salto KS client tests: fake hosts, a client, and a mocked token endpoint."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import respx

from locks.client import SaltoClient

IDENTITY = "https://identity.test"
API = "https://api.test"
TOKEN_URL = IDENTITY + "/connect/token"
USERNAME = "ops@example.com"
PASSWORD = "pa55-Word-never-shown"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-client-secret"
ACCESS_TOKEN = "eyJ.access-token-never-shown"
SITE_ID = "00000000-0000-0000-0000-00000000517e"
IQ_ID = "00000000-0000-0000-0000-0000000001c0"
LOCK_ID = "00000000-0000-0000-0000-00000000010c"
SECRET = "ABCDEFGHIJKLMNOP"
USER_AGENT = "ireserve-salto/0.1 (+Salto KS integration)"


def basic_auth(client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


def token_body(token: str = ACCESS_TOKEN, expires_in: int = 3600) -> dict[str, Any]:
    return {"access_token": token, "expires_in": expires_in, "token_type": "Bearer", "scope": "user_api.full_access"}


def form(request: Any) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(request.content.decode()))


def body(request: Any) -> Any:
    return json.loads(request.content)


def assert_api_request(request: Any, method: str, path: str, token: str = ACCESS_TOKEN) -> None:
    assert request.method == method
    assert request.url.host == "api.test"
    assert request.url.path == path
    assert request.headers["authorization"] == f"Bearer {token}"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["accept"] == "application/json"


def assert_token_request(request: Any, username: str = USERNAME, password: str = PASSWORD) -> None:
    assert request.method == "POST"
    assert str(request.url) == TOKEN_URL
    assert request.headers["authorization"] == basic_auth()
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert form(request) == {
        "grant_type": "password",
        "username": username,
        "password": password,
        "scope": "user_api.full_access",
    }


@pytest.fixture(autouse=True)
def salto_hosts(settings: Any) -> None:
    settings.SALTO_KS_ACCEPTANCE_IDENTITY_URL = IDENTITY
    settings.SALTO_KS_ACCEPTANCE_API_URL = API
    settings.SALTO_KS_PRODUCTION_IDENTITY_URL = "https://identity.prod.test"
    settings.SALTO_KS_PRODUCTION_API_URL = "https://api.prod.test"
    settings.SALTO_KS_CLIENT_ID = CLIENT_ID
    settings.SALTO_KS_CLIENT_SECRET = CLIENT_SECRET


@pytest.fixture
def client() -> Iterator[SaltoClient]:
    with SaltoClient(environment="acceptance", username=USERNAME, password=PASSWORD, timeout=5) as c:
        yield c


@pytest.fixture
def token_route(httpx2_mock: respx.Router) -> respx.Route:
    return httpx2_mock.post(TOKEN_URL).respond(200, json=token_body())
