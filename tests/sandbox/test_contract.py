"""Contract tests: the real SaltoClient against the sandbox over loopback.

Both sides implement the OTP formula and the PIN delta independently (locks/otp.py and locks/sandbox/state.py),
so a flow that opens a door here means the two agree with each other and with the API doc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from django.conf import settings

from locks import errors
from locks.client import SaltoClient
from locks.sandbox import RunningSandbox, demo

ROOT = Path(__file__).resolve().parents[2]


def new_client(**overrides: str) -> SaltoClient:
    kwargs = {"environment": "acceptance", "username": demo.DEMO_USERNAME, "password": demo.DEMO_PASSWORD}
    return SaltoClient(**{**kwargs, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def client(salto_sandbox: RunningSandbox) -> Iterator[SaltoClient]:
    with new_client() as salto:
        yield salto


@pytest.fixture
def control(salto_sandbox: RunningSandbox) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=f"{salto_sandbox.url}/_sandbox", timeout=5) as http:
        yield http


def activate(client: SaltoClient, *, new_pin: str | None = None) -> tuple[str, str]:
    secret = client.get_iq_secret(demo.DEMO_SITE_ID, demo.DEMO_IQ_ID)
    pin = client.request_iq_pin(demo.DEMO_SITE_ID, demo.DEMO_IQ_ID).pin
    assert pin is not None
    current = pin.get_secret_value() if hasattr(pin, "get_secret_value") else str(pin)
    target = new_pin or current
    client.set_iq_pin(demo.DEMO_SITE_ID, demo.DEMO_IQ_ID, secret=secret, current_pin=current, new_pin=target)
    return secret, target


def test_full_flow_from_token_to_an_open_door(
    client: SaltoClient, salto_sandbox: RunningSandbox, control: httpx2.Client
) -> None:
    # given a fresh account at the demo site
    token = client.fetch_token()
    assert token.expires_at > datetime.now(UTC) + timedelta(minutes=58)

    # when the console resolves the site, activates the account at the IQ and lists the locks
    site = client.resolve_site(f"  {demo.DEMO_SITE_UID.lower()} ")
    iqs = client.list_iqs(site.id)
    secret = client.get_iq_secret(site.id, demo.DEMO_IQ_ID)
    pin_result = client.request_iq_pin(site.id, demo.DEMO_IQ_ID)
    assert pin_result.sent_by == "body"
    assert pin_result.pin is not None
    pin = pin_result.pin.get_secret_value() if hasattr(pin_result.pin, "get_secret_value") else str(pin_result.pin)
    client.set_iq_pin(site.id, demo.DEMO_IQ_ID, secret=secret, current_pin=pin, new_pin=pin)
    activated = client.list_activated_iqs(site.id)
    locks = client.list_locks(site.id)
    client.open_lock(site.id, demo.LOCK_FRONT_DOOR_ID, secret=secret, pin=pin)

    # then
    assert site.id == demo.DEMO_SITE_ID
    assert {iq.id: iq.online for iq in iqs} == {demo.DEMO_IQ_ID: True, demo.DEMO_IQ2_ID: True}
    assert len(secret) == 16
    assert pin == demo.DEMO_INITIAL_PIN
    assert [(a.iq_id, a.activated) for a in activated] == [(demo.DEMO_IQ_ID, True)]
    assert [lock.customer_reference for lock in locks] == [lock.name for lock in demo.DEMO_LOCKS]
    assert {lock.id: lock.online for lock in locks}[demo.LOCK_STORAGE_ID] is False
    garage = next(lock for lock in locks if lock.id == demo.LOCK_GARAGE_ID)
    assert garage.iq is not None
    assert garage.iq.id == demo.DEMO_IQ2_ID
    lock_pages = [r for r in control.get("/requests").json()["requests"] if r["path"].endswith("/locks")]
    assert len(lock_pages) == 3  # 8 locks, 3 per page: every next_page_link was followed
    opens = control.get("/opens").json()
    assert [(o["lock_id"], o["username"]) for o in opens] == [(demo.LOCK_FRONT_DOOR_ID, demo.DEMO_USERNAME)]
    assert salto_sandbox.state.token_request_count()["count"] == 1


def test_a_new_pin_set_through_the_delta_opens_the_door(client: SaltoClient, salto_sandbox: RunningSandbox) -> None:
    secret, pin = activate(client, new_pin="0601")

    client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_STUDIO_1_ID, secret=secret, pin=pin)

    assert salto_sandbox.state.activation_view(demo.DEMO_IQ_ID)["pin"] == "0601"
    assert len(salto_sandbox.state.opens()) == 1


def test_a_wrong_otp_is_rejected(client: SaltoClient, salto_sandbox: RunningSandbox) -> None:
    secret, _ = activate(client)

    with pytest.raises(errors.OtpInvalid) as caught:
        client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_FRONT_DOOR_ID, secret=secret, pin="9999")

    assert caught.value.http_status == 400
    assert caught.value.error_code == "3102"
    assert salto_sandbox.state.opens() == []


def test_repeated_wrong_otps_get_the_account_blocked(client: SaltoClient, salto_sandbox: RunningSandbox) -> None:
    secret, pin = activate(client)
    for _ in range(salto_sandbox.state.config.otp_block_threshold):
        with pytest.raises(errors.OtpInvalid):
            client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_FRONT_DOOR_ID, secret=secret, pin="9999")

    with pytest.raises(errors.OtpBlocked) as caught:
        client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_FRONT_DOOR_ID, secret=secret, pin=pin)

    assert caught.value.http_status == 403
    # The client never retries an OTP failure: exactly one PATCH per call reached the sandbox.
    patches = [r for r in salto_sandbox.state.requests() if r["method"] == "PATCH"]
    assert len(patches) == salto_sandbox.state.config.otp_block_threshold + 1


def test_the_secret_is_refused_once_the_account_is_activated(client: SaltoClient) -> None:
    activate(client)

    with pytest.raises(errors.SecretAlreadyIssued):
        client.get_iq_secret(demo.DEMO_SITE_ID, demo.DEMO_IQ_ID)
    with pytest.raises(errors.CommandForbidden):
        client.request_iq_pin(demo.DEMO_SITE_ID, demo.DEMO_IQ_ID)


def test_open_before_activation_is_pin_not_changed(client: SaltoClient) -> None:
    with pytest.raises(errors.PinNotChanged):
        client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_FRONT_DOOR_ID, secret="A" * 16, pin="1234")


def test_pin_changed_outside_makes_the_stored_pin_fail(client: SaltoClient, control: httpx2.Client) -> None:
    secret, pin = activate(client)
    control.post(f"/iqs/{demo.DEMO_IQ_ID}/pin", json={"pin": "4321"})

    with pytest.raises(errors.OtpInvalid):
        client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_FRONT_DOOR_ID, secret=secret, pin=pin)
    client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_FRONT_DOOR_ID, secret=secret, pin="4321")


def test_an_offline_lock_is_a_permanent_error(client: SaltoClient) -> None:
    secret, pin = activate(client)

    with pytest.raises(errors.LockOffline) as caught:
        client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_STORAGE_ID, secret=secret, pin=pin)

    assert isinstance(caught.value, errors.SaltoPermanentError)
    assert caught.value.http_status == 409
    assert caught.value.error_code == "3102"
    assert not isinstance(caught.value, errors.OtpInvalid | errors.OtpBlocked)


def test_get_one_iq(client: SaltoClient) -> None:
    iq = client.get_iq(demo.DEMO_SITE_ID, demo.DEMO_IQ_ID)

    assert (iq.customer_reference, iq.otp_enabled) == (demo.DEMO_IQ_NAME, True)
    with pytest.raises(errors.IQNotFound):
        client.get_iq(demo.DEMO_SITE_ID, "00000000-0000-4000-8000-000000000000")


def test_an_unknown_site_uid_is_site_not_found(client: SaltoClient) -> None:
    with pytest.raises(errors.SiteNotFound):
        client.resolve_site("DE4520168385")


def test_entries_since_a_time(client: SaltoClient) -> None:
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    secret, pin = activate(client)
    client.open_lock(demo.DEMO_SITE_ID, demo.LOCK_STUDIO_3_ID, secret=secret, pin=pin)

    entries = client.list_entries(demo.DEMO_SITE_ID, since=since)
    later = client.list_entries(demo.DEMO_SITE_ID, since=since + timedelta(minutes=5))

    assert [(e.event_category, e.access_by, e.lock_id) for e in entries] == [
        ("lock_opened", "remote", demo.LOCK_STUDIO_3_ID)
    ]
    assert later == []


def test_an_expired_token_is_replaced_once(client: SaltoClient, salto_sandbox: RunningSandbox) -> None:
    client.list_sites()
    salto_sandbox.state.expire_tokens()

    assert [site.site_uid for site in client.list_sites()] == [demo.DEMO_SITE_UID]
    assert salto_sandbox.state.token_request_count()["count"] == 2


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"password": "wrong"}, "invalid_grant"), ({"client_secret": "wrong"}, "invalid_client")],
)
def test_bad_credentials_name_the_party(salto_sandbox: RunningSandbox, overrides: dict[str, str], reason: str) -> None:
    with new_client(**overrides) as salto, pytest.raises(errors.SaltoAuthError) as caught:
        salto.fetch_token()

    assert caught.value.reason == reason  # type: ignore[attr-defined]


def test_server_errors_rate_limits_and_drops_are_transient(client: SaltoClient, control: httpx2.Client) -> None:
    client.fetch_token()
    control.post("/faults", json={"path_contains": "/locks", "status": 503})
    control.post("/faults", json={"path_contains": "/iqs", "status": 429, "retry_after": 1})
    control.post("/faults", json={"path_contains": "/sites", "drop_connection": True, "method": "GET"})

    with pytest.raises(errors.SaltoTransientError) as server_error:
        client.list_locks(demo.DEMO_SITE_ID)
    with pytest.raises(errors.SaltoTransientError) as rate_limited:
        client.list_iqs(demo.DEMO_SITE_ID)
    with pytest.raises(errors.SaltoTransientError):
        client.list_sites()

    assert server_error.value.http_status == 503
    assert rate_limited.value.http_status == 429
    assert rate_limited.value.retry_after == 1  # type: ignore[attr-defined]
    assert len(client.list_locks(demo.DEMO_SITE_ID)) == len(demo.DEMO_LOCKS)


# --- one token request for many threads in several processes ----------------------------------------------------

_WORKER = """
import json, sys, threading
import django
django.setup()
from locks.client import SaltoClient
from locks.sandbox import demo

threads = int(sys.argv[1])
barrier = threading.Barrier(threads)
tokens = []

def work():
    with SaltoClient(environment="acceptance", username=demo.DEMO_USERNAME, password=demo.DEMO_PASSWORD) as c:
        barrier.wait()
        tokens.append(c.fetch_token().access_token.get_secret_value())

print("ready", flush=True)
sys.stdin.readline()
workers = [threading.Thread(target=work) for _ in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps(tokens), flush=True)
"""


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (the token cache shared by processes)")
def test_twenty_threads_and_two_processes_cause_one_token_request(
    salto_sandbox: RunningSandbox, control: httpx2.Client
) -> None:
    assert "redis" in settings.CACHES["default"]["BACKEND"].lower()
    # A slow identity server widens the window in which everyone else must wait instead of asking too.
    control.post("/faults", json={"path_contains": "/connect/token", "delay_seconds": 0.5})
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ireserve_salto.settings",
        "SALTO_KS_ACCEPTANCE_IDENTITY_URL": salto_sandbox.url,
        "SALTO_KS_ACCEPTANCE_API_URL": salto_sandbox.url,
        "SALTO_KS_CLIENT_ID": demo.DEMO_CLIENT_ID,
        "SALTO_KS_CLIENT_SECRET": demo.DEMO_CLIENT_SECRET,
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, "5"],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        barrier = threading.Barrier(20)
        tokens: list[str] = []
        failures: list[BaseException] = []

        def work() -> None:
            try:
                with new_client() as salto:
                    barrier.wait()
                    tokens.append(salto.fetch_token().access_token.get_secret_value())
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=work) for _ in range(20)]
        for process in processes:  # release the processes and the threads together
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for process in processes:
            out, _ = process.communicate(timeout=30)
            assert process.returncode == 0
            tokens.extend(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()

    assert failures == []
    assert len(tokens) == 30
    assert len(set(tokens)) == 1
    assert salto_sandbox.state.token_request_count()["count"] == 1
