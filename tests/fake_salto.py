"""The fake Salto KS of the respx-mocked tests: one set of constants, the JSON bodies, request checks and routes.

The sandbox tests (tests/sandbox*, locks.sandbox.demo) use a different fake, a real server with its own data.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

import respx

# --- Hosts and credentials ----------------------------------------------------------------------

API_HOST = "api.test"
IDENTITY = "https://identity.test"
API = f"https://{API_HOST}"
PROD_IDENTITY = "https://identity.prod.test"
PROD_API = "https://api.prod.test"
TOKEN_URL = IDENTITY + "/connect/token"
PROD_TOKEN_URL = PROD_IDENTITY + "/connect/token"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-client-secret"
USERNAME = "doors@example.com"
PASSWORD = "pa55-Word-never-shown"
ACCESS_TOKEN = "eyJ.access-token-never-shown"
SCOPE = "user_api.full_access"
USER_AGENT = "ireserve-salto/0.1 (+Salto KS integration)"

# --- The site, its IQs and locks ----------------------------------------------------------------

SITE_UID = "NL6254340082"
SITE_ID = "00000000-0000-0000-0000-00000000517e"
IQ_ID = "00000000-0000-0000-0000-0000000001c0"
OTHER_IQ_ID = "00000000-0000-0000-0000-0000000002c0"
LOCK_ID = "00000000-0000-0000-0000-00000000010c"
FRONT_DOOR = LOCK_ID  # the lock the opening tests map to Building A, named "Front door"
SECRET = "ABCDEFGHIJKLMNOP"
PIN = "4821"

SITES = API + "/v1.1/sites"
IQ_URL = f"{SITES}/{SITE_ID}/iqs/{IQ_ID}"
LOCKS_URL = f"{SITES}/{SITE_ID}/locks"
OPEN_URL = f"{LOCKS_URL}/{FRONT_DOOR}/locking"
ENTRIES_URL = f"{SITES}/{SITE_ID}/entries"
ACTIVATED_IQS_URL = f"{API}/v1.1/me/{SITE_ID}/activated_iqs"
ME_URL = API + "/v1.1/me"
ACCOUNT_USER_ID = "0f8e2b1c-0000-4000-8000-00000000acc7"  # the account's platform user id (GET /v1.1/me)


def use_fake_salto(settings: Any, *, time_zone: str | None = None) -> None:
    """Point the Django settings at the fake hosts (acceptance and production) and client credentials."""
    settings.SALTO_KS_ACCEPTANCE_IDENTITY_URL = IDENTITY
    settings.SALTO_KS_ACCEPTANCE_API_URL = API
    settings.SALTO_KS_PRODUCTION_IDENTITY_URL = PROD_IDENTITY
    settings.SALTO_KS_PRODUCTION_API_URL = PROD_API
    settings.SALTO_KS_CLIENT_ID = CLIENT_ID
    settings.SALTO_KS_CLIENT_SECRET = CLIENT_SECRET
    if time_zone is not None:
        settings.TIME_ZONE = time_zone


# --- JSON bodies --------------------------------------------------------------------------------


def token_body(token: str = ACCESS_TOKEN, expires_in: int = 3600) -> dict[str, Any]:
    return {"access_token": token, "expires_in": expires_in, "token_type": "Bearer", "scope": SCOPE}


def salto_error(code: str, message: str) -> dict[str, str]:
    return {"ErrorCode": code, "Message": message}


def salto_error_response(status: int, code: str, message: str, **headers: str) -> dict[str, Any]:
    """Keyword arguments for respx.MockResponse: a Salto error body with STATUS and HEADERS."""
    return {"status_code": status, "json": salto_error(code, message), "headers": headers}


def lock_json(n: int, *, name: str | None = None, online: bool = True, iq: str = IQ_ID) -> dict[str, Any]:
    return {
        "id": f"lock-{n}",
        "customer_reference": name or f"Room {n}",
        "online": online,
        "locked_state": "locked",
        "iq": {"id": iq, "customer_reference": "IQ HQ" if iq == IQ_ID else "IQ Garage", "is_online": True},
    }


# --- Reading and checking requests --------------------------------------------------------------


def basic_auth(client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


def form(request: Any) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode()))


def body(request: Any) -> Any:
    return json.loads(request.content)


def assert_api_request(request: Any, method: str, path: str, token: str = ACCESS_TOKEN) -> None:
    assert request.method == method
    assert request.url.host == API_HOST
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
        "scope": SCOPE,
    }


# --- respx routes -------------------------------------------------------------------------------


def token_route(router: respx.Router) -> respx.Route:
    """A working token endpoint (route name "token")."""
    return router.post(TOKEN_URL, name="token").respond(200, json=token_body())


@contextmanager
def salto_that_opens_the_front_door(settings: Any) -> Iterator[respx.Router]:
    """Salto KS mocked at the transport: a token, and a front door that opens (route name "open")."""
    use_fake_salto(settings)
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        token_route(router)
        router.patch(OPEN_URL, name="open").respond(200, json={})
        yield router


def entry_json(
    entry_id: str, *, at: str, lock_id: str = LOCK_ID, user_id: str = ACCOUNT_USER_ID, access_by: str = "remote"
) -> dict[str, Any]:
    """One item of GET …/entries as Salto sends it (the fields the product reads)."""
    return {
        "id": entry_id,
        "event_category": "lock_opened",
        "utc_date_time": at,
        "lock_id": lock_id,
        "user_id": user_id,
        "access_by": access_by,
    }


def activated_iqs_json(*, iq_id: str = IQ_ID, activated: bool = True, at: str | None = None) -> dict[str, Any]:
    """GET /v1.1/me/{site}/activated_iqs as Salto sends it."""
    return {"items": [{"iq_id": iq_id, "activated": activated, "activation_date": at}], "next_page_link": None}
