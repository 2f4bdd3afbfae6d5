"""Faults after acting: the door opens at Salto, then the answer is late, wrong or missing (the outcome is unclear).

Each test checks both halves: what the client saw, and that the open really happened (GET /_sandbox/opens, the
entry on GET .../entries, the opens page), because that is what the product must learn to confirm.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from locks.sandbox import RunningSandbox, demo
from tests.sandbox.test_sandbox import SITE, activate, open_lock, otp

LOCKING = "/locking"


def add_fault(http: httpx2.Client, **fields: Any) -> dict[str, Any]:
    response = http.post("/_sandbox/faults", json=fields)
    assert response.status_code == 201, response.text
    fault: dict[str, Any] = response.json()["fault"]
    return fault


def physical_opens(http: httpx2.Client) -> list[str]:
    return [o["lock_id"] for o in http.get("/_sandbox/opens").json()]


def entry_locks(http: httpx2.Client) -> list[str]:
    return [e["lock_id"] for e in http.get(f"{SITE}/entries").json()["items"]]


def logged_statuses(http: httpx2.Client) -> list[int]:
    return [r["status"] for r in http.get("/_sandbox/requests").json()["requests"] if r["path"].endswith(LOCKING)]


def test_a_fault_before_acting_stays_the_default_and_nothing_opens(api: httpx2.Client) -> None:
    # given an activated account and a plain 503 fault on the locking call
    secret, pin = activate(api)
    fault = add_fault(api, path_contains=LOCKING, status=503)

    # when the client opens
    response = open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin))

    # then it gets the 503 and the door stayed shut
    assert fault["after_acting"] is False
    assert response.status_code == 503
    assert physical_opens(api) == []
    assert entry_locks(api) == []


def test_503_after_acting_opens_the_door_then_answers_503(api: httpx2.Client) -> None:
    # given
    secret, pin = activate(api)
    add_fault(api, path_contains=LOCKING, status=503, after_acting=True)

    # when
    response = open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin))

    # then the client saw Service Unavailable, yet the door opened and Salto has the entry
    assert response.status_code == 503
    assert response.text == "Service Unavailable"
    assert physical_opens(api) == [demo.LOCK_FRONT_DOOR_ID]
    assert entry_locks(api) == [demo.LOCK_FRONT_DOOR_ID]
    assert logged_statuses(api) == [503]
    # and the fault was used up: the next open is answered normally
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin)).status_code == 200
    assert physical_opens(api) == [demo.LOCK_FRONT_DOOR_ID, demo.LOCK_FRONT_DOOR_ID]


def test_after_acting_with_salto_s_json_error_body(api: httpx2.Client) -> None:
    secret, pin = activate(api)
    body = '{"ErrorCode":"3102","Message":"Request execution failed with code: timeout"}'
    add_fault(api, path_contains=LOCKING, status=504, body=body, content_type="application/json", after_acting=True)

    response = open_lock(api, demo.LOCK_STUDIO_1_ID, otp(secret, pin))

    assert response.status_code == 504
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"ErrorCode": "3102", "Message": "Request execution failed with code: timeout"}
    assert physical_opens(api) == [demo.LOCK_STUDIO_1_ID]


def test_dropped_connection_after_acting(api: httpx2.Client) -> None:
    # given
    secret, pin = activate(api)
    add_fault(api, path_contains=LOCKING, drop_connection=True, after_acting=True)

    # when the connection is closed without any answer
    with pytest.raises(httpx2.RemoteProtocolError):
        open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin))

    # then the door opened all the same
    assert physical_opens(api) == [demo.LOCK_FRONT_DOOR_ID]
    assert entry_locks(api) == [demo.LOCK_FRONT_DOOR_ID]
    assert logged_statuses(api) == [0]


def test_delay_after_acting_opens_first_and_answers_late(api: httpx2.Client, salto_sandbox: RunningSandbox) -> None:
    # given a client that gives up after 0.3 s and an answer held back for 1 s after the open
    secret, pin = activate(api)
    add_fault(api, path_contains=LOCKING, delay_seconds=1.0, after_acting=True)
    code = otp(secret, pin)
    started = time.monotonic()

    # when
    with (
        httpx2.Client(base_url=salto_sandbox.url, headers=api.headers, timeout=0.3) as impatient,
        pytest.raises(httpx2.ReadTimeout),
    ):
        open_lock(impatient, demo.LOCK_FRONT_DOOR_ID, code)

    # then the door was already open while the answer was still pending
    assert physical_opens(api) == [demo.LOCK_FRONT_DOOR_ID]
    assert time.monotonic() - started < 1.0
    assert logged_statuses(api) == []
    # and the normal answer does go out once the delay is over (into a closed connection)
    deadline = time.monotonic() + 5
    while not logged_statuses(api) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged_statuses(api) == [200]
    assert time.monotonic() - started >= 1.0


def test_delay_after_acting_then_the_real_answer(api: httpx2.Client) -> None:
    secret, pin = activate(api)
    add_fault(api, path_contains=LOCKING, delay_seconds=0.4, after_acting=True)

    started = time.monotonic()
    response = open_lock(api, demo.LOCK_STUDIO_2_ID, otp(secret, pin))

    assert response.status_code == 200
    assert response.content == b""
    assert time.monotonic() - started >= 0.4
    assert physical_opens(api) == [demo.LOCK_STUDIO_2_ID]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html><body><h1>Please wait</h1></body></html>", "text/html"),
        ('{"items": [', "application/json"),
    ],
)
def test_200_with_a_body_that_is_not_the_answer(api: httpx2.Client, body: str, content_type: str) -> None:
    # given a gateway that answers 200 with an HTML page or truncated JSON after the door opened
    secret, pin = activate(api)
    add_fault(api, path_contains=LOCKING, status=200, body=body, content_type=content_type, after_acting=True)

    # when
    response = open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin))

    # then
    assert response.status_code == 200
    assert response.text == body
    assert response.headers["content-type"].startswith(content_type)
    assert physical_opens(api) == [demo.LOCK_FRONT_DOOR_ID]


def test_after_acting_replaces_a_refusal_too(api: httpx2.Client) -> None:
    # given a wrong OTP: the handler refuses, nothing opens, and the fault hides the refusal behind a 503
    activate(api)
    add_fault(api, path_contains=LOCKING, status=503, after_acting=True)

    response = open_lock(api, demo.LOCK_FRONT_DOOR_ID, "00000")

    assert response.status_code == 503
    assert physical_opens(api) == []
    assert api.get("/_sandbox/state").json()["activations"][0]["failed_otp_count"] == 1


def test_after_acting_keeps_times_method_and_path_contains(api: httpx2.Client) -> None:
    # given a fault for two PATCHes on lock paths
    secret, pin = activate(api)
    add_fault(api, path_contains="/locks/", method="PATCH", status=502, after_acting=True, times=2)

    # when a GET on a lock path, then three opens
    lock = api.get(f"{SITE}/locks/{demo.LOCK_FRONT_DOOR_ID}")
    listed = api.get("/_sandbox/faults").json()["faults"]
    statuses = [open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin)).status_code for _ in range(3)]

    # then the GET was untouched, the first two opens answered 502, and all three doors opened
    assert lock.status_code == 200
    assert [(f["after_acting"], f["times"], f["served"]) for f in listed] == [(True, 2, 0)]
    assert statuses == [502, 502, 200]
    assert physical_opens(api) == [demo.LOCK_FRONT_DOOR_ID] * 3
    assert api.get("/_sandbox/faults").json()["faults"] == []


def test_after_acting_until_cleared(api: httpx2.Client) -> None:
    secret, pin = activate(api)
    add_fault(api, path_contains=LOCKING, status=503, after_acting=True, times=None)

    statuses = [open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin)).status_code for _ in range(3)]
    api.delete("/_sandbox/faults")

    assert statuses == [503, 503, 503]
    assert len(physical_opens(api)) == 3
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin)).status_code == 200


def test_an_open_under_an_after_acting_fault_shows_on_the_opens_page(api: httpx2.Client) -> None:
    secret, pin = activate(api)
    add_fault(api, path_contains=LOCKING, drop_connection=True, after_acting=True)
    with pytest.raises(httpx2.RemoteProtocolError):
        open_lock(api, demo.LOCK_STUDIO_3_ID, otp(secret, pin))

    page = api.get("/_sandbox/").text
    state = api.get("/_sandbox/state").json()

    assert f'class="lock opened" data-lock-id="{demo.LOCK_STUDIO_3_ID}"' in page
    assert {lock["id"]: lock["opens"] for lock in state["locks"]}[demo.LOCK_STUDIO_3_ID] == 1
    assert [o["lock_id"] for o in state["opens"]] == [demo.LOCK_STUDIO_3_ID]


@pytest.mark.parametrize(
    "fields",
    [
        {"status": 200},
        {"status": 204, "after_acting": True},
        {"status": 302, "body": "moved"},
        {"status": 503, "after_acting": "yes"},
        {"after_acting": True},
    ],
)
def test_bad_after_acting_faults_are_rejected(http: httpx2.Client, fields: dict[str, Any]) -> None:
    response = http.post("/_sandbox/faults", json={"path_contains": LOCKING, **fields})

    assert response.status_code == 400
    assert http.get("/_sandbox/faults").json()["faults"] == []


def test_a_2xx_with_a_body_is_accepted_and_listed(http: httpx2.Client) -> None:
    response = http.post(
        "/_sandbox/faults", json={"path_contains": LOCKING, "status": 200, "body": "<html>", "after_acting": True}
    )

    assert response.status_code == 201
    assert response.json()["faults"] == [
        {
            "path_contains": LOCKING,
            "method": None,
            "status": 200,
            "retry_after": None,
            "delay_seconds": 0.0,
            "drop_connection": False,
            "body": "<html>",
            "content_type": None,
            "after_acting": True,
            "act_late": False,
            "times": 1,
            "served": 0,
        }
    ]


def test_act_late_opens_after_the_client_gave_up(api: httpx2.Client) -> None:
    # given Salto takes 1.5 s to act, and the client waits only 0.5 s
    secret, pin = activate(api)
    add_fault(api, path_contains=LOCKING, delay_seconds=1.5, act_late=True)

    # when the client opens and times out
    with pytest.raises(httpx2.ReadTimeout):
        api.patch(
            f"{SITE}/locks/{demo.LOCK_FRONT_DOOR_ID}/locking",
            json={"locked_state": "unlocked", "otp": otp(secret, pin)},
            timeout=0.5,
        )

    # then the door is still shut when the client gives up, and opens once Salto gets to it
    assert physical_opens(api) == []
    deadline = time.monotonic() + 5
    while not physical_opens(api) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert physical_opens(api) == [demo.LOCK_FRONT_DOOR_ID]
    assert entry_locks(api) == [demo.LOCK_FRONT_DOOR_ID]


@pytest.mark.parametrize(
    "fields",
    [
        {"act_late": True},
        {"act_late": True, "delay_seconds": 1, "after_acting": True},
        {"act_late": True, "delay_seconds": 1, "status": 503},
        {"act_late": "yes", "delay_seconds": 1},
    ],
    ids=["no-delay", "with-after-acting", "with-status", "not-a-bool"],
)
def test_act_late_is_refused_when_it_cannot_mean_anything(api: httpx2.Client, fields: dict[str, Any]) -> None:
    response = api.post("/_sandbox/faults", json={"path_contains": LOCKING, **fields})
    assert response.status_code == 400
