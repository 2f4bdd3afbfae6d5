"""The sandbox's own clock (`clock_offset_seconds`) and the Date header every answer carries from it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx2
import pytest

from locks.sandbox import RunningSandbox, demo
from locks.sandbox.server import make_server
from locks.sandbox.state import SandboxState
from tests.sandbox.conftest import password_grant
from tests.sandbox.test_sandbox import SITE, activate, assert_salto_error, open_lock, otp

IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT$"
)


def served_at(response: httpx2.Response) -> datetime:
    """The one Date header of an answer, checked to be an IMF-fixdate."""
    dates = response.headers.get_list("date")
    assert len(dates) == 1, dates
    assert IMF_FIXDATE.match(dates[0]), dates[0]
    return parsedate_to_datetime(dates[0])


def assert_near(value: datetime, expected: datetime, *, seconds: float = 3) -> None:
    assert abs((value - expected).total_seconds()) <= seconds, (value, expected)


def set_offset(http: httpx2.Client, seconds: float) -> None:
    response = http.post("/_sandbox/config", json={"clock_offset_seconds": seconds})
    assert response.status_code == 200, response.text
    assert response.json()["clock_offset_seconds"] == seconds


def test_every_kind_of_answer_carries_a_date_header_by_default(api: httpx2.Client) -> None:
    api.post("/_sandbox/faults", json={"path_contains": "/iqs", "status": 503})

    answers = [
        api.get(SITE),
        api.get(f"{SITE}/iqs"),  # the fault layer's own answer
        api.get("/v1.1/nowhere"),  # a 404 from routing
        api.get("/_sandbox/state"),
        api.get("/_sandbox/"),
        api.get("/.well-known/openid-configuration"),
        password_grant(api),
    ]

    assert [r.status_code for r in answers] == [200, 503, 404, 200, 200, 200, 200]
    for response in answers:
        assert_near(served_at(response), datetime.now(UTC))


@pytest.mark.parametrize("offset", [300, -300, 120, -120])
def test_the_date_header_and_state_follow_the_offset(api: httpx2.Client, offset: int) -> None:
    # given the sandbox's clock running `offset` seconds off the machine's
    set_offset(api, offset)
    api.post("/_sandbox/faults", json={"path_contains": "/locks", "status": 429, "retry_after": 1})
    expected = datetime.now(UTC) + timedelta(seconds=offset)

    # when answers come from the API, identity, the fault layer and the control surface
    answers = [
        api.get(SITE),
        password_grant(api),
        api.get(f"{SITE}/locks"),
        api.get("/_sandbox/config"),
    ]

    # then each Date header (a single one: uvicorn's own is off) tells the sandbox's time
    assert [r.status_code for r in answers] == [200, 200, 429, 200]
    for response in answers:
        assert_near(served_at(response), expected)
    now = datetime.fromisoformat(api.get("/_sandbox/state").json()["now"].replace("Z", "+00:00"))
    assert_near(now, expected)


def test_the_date_header_of_a_delayed_answer_is_the_time_it_is_sent(api: httpx2.Client) -> None:
    api.post("/_sandbox/faults", json={"path_contains": SITE, "delay_seconds": 1.5})
    requested = datetime.now(UTC)

    response = api.get(SITE)

    assert served_at(response) >= requested.replace(microsecond=0) + timedelta(seconds=1)


@pytest.mark.parametrize("offset", [300, -300])
def test_the_otp_window_is_around_the_sandbox_s_clock(api: httpx2.Client, offset: int) -> None:
    # given an activated account and a sandbox whose clock is 5 minutes off the machine's
    secret, pin = activate(api)
    set_offset(api, offset)
    machine_now = datetime.now(UTC)

    # when a product computes the OTP at its own (machine) time, then at the sandbox's time
    at_machine_time = open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin, machine_now))
    at_sandbox_time = open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin, served_at(at_machine_time)))

    # then only the second opens the door
    assert_salto_error(at_machine_time, 400, "3102", "Request execution failed with code: otp_invalid")
    assert at_sandbox_time.status_code == 200
    assert len(api.get("/_sandbox/opens").json()) == 1


def test_the_otp_window_edges_move_with_the_offset(api: httpx2.Client) -> None:
    # -180/+60 s around the sandbox's now, which is the machine's now + 120 s
    secret, pin = activate(api)
    set_offset(api, 120)
    sandbox_now = datetime.now(UTC) + timedelta(seconds=120)

    def status(shift: int) -> int:
        return open_lock(
            api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin, sandbox_now + timedelta(seconds=shift))
        ).status_code

    assert status(-170) == 200
    assert status(50) == 200
    assert status(-200) == 400
    assert status(80) == 400


def test_entries_and_opens_are_stamped_with_the_sandbox_s_clock(api: httpx2.Client) -> None:
    # given a sandbox running 5 minutes behind
    secret, pin = activate(api)
    set_offset(api, -300)
    sandbox_now = datetime.now(UTC) - timedelta(seconds=300)

    # when the door opens
    assert open_lock(api, demo.LOCK_STUDIO_1_ID, otp(secret, pin, sandbox_now)).status_code == 200

    # then the entry and the open carry the sandbox's time, so a filter at machine time misses them
    entry = api.get(f"{SITE}/entries").json()["items"][0]
    assert_near(datetime.fromisoformat(entry["utc_date_time"].replace("Z", "+00:00")), sandbox_now)
    opened = api.get("/_sandbox/opens").json()[0]
    assert_near(datetime.fromisoformat(opened["at"].replace("Z", "+00:00")), sandbox_now)
    since_machine = (datetime.now(UTC) - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    missed = api.get(f"{SITE}/entries", params={"$filter": f"utc_date_time ge DateTime'{since_machine}'"})
    assert missed.json()["items"] == []


def test_tokens_expire_by_the_sandbox_s_clock(api: httpx2.Client) -> None:
    assert api.get("/v1.1/sites").status_code == 200

    set_offset(api, 3601)

    assert api.get("/v1.1/sites").status_code == 401


def test_the_offset_is_added_to_the_replaceable_clock(salto_sandbox: RunningSandbox) -> None:
    fixed = datetime(2026, 12, 1, 21, 45, tzinfo=UTC)
    salto_sandbox.state.clock = lambda: fixed

    salto_sandbox.state.configure(clock_offset_seconds=300)

    assert salto_sandbox.state.now() == datetime(2026, 12, 1, 21, 50, tzinfo=UTC)
    with httpx2.Client(base_url=salto_sandbox.url, timeout=5) as http:
        assert http.get("/_sandbox/state").headers["date"] == "Tue, 01 Dec 2026 21:50:00 GMT"


def test_reset_puts_the_clock_back(http: httpx2.Client) -> None:
    set_offset(http, -300)

    http.post("/_sandbox/reset")

    assert http.get("/_sandbox/config").json()["clock_offset_seconds"] == 0.0
    assert_near(served_at(http.get("/_sandbox/state")), datetime.now(UTC))


@pytest.mark.parametrize("value", ["soon", 10 * 365 * 24 * 3600])
def test_an_unusable_offset_is_rejected(http: httpx2.Client, value: object) -> None:
    response = http.post("/_sandbox/config", json={"clock_offset_seconds": value})

    assert response.status_code == 400
    assert http.get("/_sandbox/config").json()["clock_offset_seconds"] == 0.0


def test_uvicorn_s_own_date_header_is_off() -> None:
    assert make_server(SandboxState()).config.date_header is False
