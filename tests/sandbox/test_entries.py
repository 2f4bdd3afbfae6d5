"""GET /v1.1/sites/{site}/entries as the product asks it to confirm an open: filtered by lock and time, newest
first, paged with the continuation_token; and the lag before an entry shows up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2

from locks.sandbox import RunningSandbox, demo
from tests.sandbox.test_sandbox import SITE, activate, open_lock, otp

ENTRIES = f"{SITE}/entries"


def stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def open_at(api: httpx2.Client, sandbox: RunningSandbox, lock_id: str, at: datetime, secret: str, pin: str) -> None:
    sandbox.state.clock = lambda: at
    response = open_lock(api, lock_id, otp(secret, pin, at))
    assert response.status_code == 200, response.text


def product_query(lock_id: str, since: datetime, top: int) -> dict[str, str]:
    return {
        "$filter": f"lock_id eq '{lock_id}' and utc_date_time ge DateTime'{stamp(since)}'",
        "$orderby": "utc_date_time desc",
        "$top": str(top),
    }


def all_pages(api: httpx2.Client, params: dict[str, str]) -> list[dict[str, Any]]:
    pages = []
    token: str | None = None
    while True:
        body = api.get(ENTRIES, params={**params, **({"continuation_token": token} if token else {})}).json()
        pages.append(body)
        token = body["continuation_token"]
        if token is None:
            return pages


def test_entries_by_lock_and_time_newest_first_over_several_pages(
    api: httpx2.Client, salto_sandbox: RunningSandbox
) -> None:
    # given five opens of the front door ten seconds apart, one before the window, and studio 1 opens in between
    secret, pin = activate(api)
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    open_at(api, salto_sandbox, demo.LOCK_FRONT_DOOR_ID, base - timedelta(seconds=60), secret, pin)
    front_times = [base + timedelta(seconds=10 * i) for i in range(5)]
    for i, at in enumerate(front_times):
        open_at(api, salto_sandbox, demo.LOCK_FRONT_DOOR_ID, at, secret, pin)
        open_at(api, salto_sandbox, demo.LOCK_STUDIO_1_ID, at + timedelta(seconds=1 + i), secret, pin)
    salto_sandbox.state.clock = lambda: base + timedelta(minutes=2)

    # when the product pages by two through the front door's entries since `base`
    pages = all_pages(api, product_query(demo.LOCK_FRONT_DOOR_ID, base, top=2))

    # then three pages, newest first, only the front door, nothing from before the window
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert [page["continuation_token"] is None for page in pages] == [False, False, True]
    items = [e for page in pages for e in page["items"]]
    assert [e["utc_date_time"] for e in items] == [
        at.strftime("%Y-%m-%dT%H:%M:%S.000Z") for at in reversed(front_times)
    ]
    assert {e["lock_id"] for e in items} == {demo.LOCK_FRONT_DOOR_ID}
    assert len({e["id"] for e in items}) == 5
    assert all(e["event_category"] == "lock_opened" for e in items)


def test_one_page_when_top_covers_everything(api: httpx2.Client, salto_sandbox: RunningSandbox) -> None:
    secret, pin = activate(api)
    base = datetime.now(UTC).replace(microsecond=0)
    open_at(api, salto_sandbox, demo.LOCK_STUDIO_2_ID, base, secret, pin)
    open_at(api, salto_sandbox, demo.LOCK_STUDIO_2_ID, base + timedelta(seconds=3), secret, pin)

    body = api.get(ENTRIES, params=product_query(demo.LOCK_STUDIO_2_ID, base, top=10)).json()
    other_lock = api.get(ENTRIES, params=product_query(demo.LOCK_STUDIO_3_ID, base, top=10)).json()
    too_late = api.get(ENTRIES, params=product_query(demo.LOCK_STUDIO_2_ID, base + timedelta(seconds=4), top=10))

    assert [e["utc_date_time"] for e in body["items"]] == [
        stamp(base + timedelta(seconds=3)).replace("Z", ".000Z"),
        stamp(base).replace("Z", ".000Z"),
    ]
    assert body["continuation_token"] is None
    assert other_lock == {"items": [], "continuation_token": None}
    assert too_late.json()["items"] == []


def test_a_bad_continuation_token_is_400_1102(api: httpx2.Client) -> None:
    response = api.get(ENTRIES, params={"continuation_token": "not-a-token"})

    assert response.status_code == 400
    assert response.json()["ErrorCode"] == "1102"


def test_entries_lag_behind_the_open(api: httpx2.Client, salto_sandbox: RunningSandbox) -> None:
    # given entries that show up 30 s after the open
    secret, pin = activate(api)
    config = api.post("/_sandbox/config", json={"entries_delay_seconds": 30}).json()
    opened_at = datetime.now(UTC).replace(microsecond=0)
    open_at(api, salto_sandbox, demo.LOCK_FRONT_DOOR_ID, opened_at, secret, pin)
    query = product_query(demo.LOCK_FRONT_DOOR_ID, opened_at - timedelta(seconds=5), top=10)

    # when the product looks 29 s and 30 s later
    salto_sandbox.state.clock = lambda: opened_at + timedelta(seconds=29)
    early = api.get(ENTRIES, params=query).json()
    salto_sandbox.state.clock = lambda: opened_at + timedelta(seconds=30)
    later = api.get(ENTRIES, params=query).json()

    # then the open is physical at once, the entry only after the lag
    assert config["entries_delay_seconds"] == 30.0
    assert [o["lock_id"] for o in api.get("/_sandbox/opens").json()] == [demo.LOCK_FRONT_DOOR_ID]
    assert early["items"] == []
    assert [e["lock_id"] for e in later["items"]] == [demo.LOCK_FRONT_DOOR_ID]
    assert later["items"][0]["utc_date_time"] == stamp(opened_at).replace("Z", ".000Z")


def test_entries_show_at_once_by_default(api: httpx2.Client) -> None:
    secret, pin = activate(api)

    open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin))

    assert api.get("/_sandbox/config").json()["entries_delay_seconds"] == 0.0
    assert [e["lock_id"] for e in api.get(ENTRIES).json()["items"]] == [demo.LOCK_FRONT_DOOR_ID]


def test_a_negative_entries_delay_is_rejected(http: httpx2.Client) -> None:
    response = http.post("/_sandbox/config", json={"entries_delay_seconds": -1})

    assert response.status_code == 400
    assert http.get("/_sandbox/config").json()["entries_delay_seconds"] == 0.0
