"""The sandbox's own behaviour, spoken to over loopback with plain httpx2 (no project client involved)."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from locks.sandbox import RunningSandbox, demo
from tests.sandbox.conftest import password_grant

SITE = f"/v1.1/sites/{demo.DEMO_SITE_ID}"
IQ = f"{SITE}/iqs/{demo.DEMO_IQ_ID}"


def otp(secret: str, pin: str, at: datetime | None = None) -> str:
    """The formula of API doc §7.2, written out again here on purpose."""
    at = at or datetime.now(UTC)
    return hashlib.md5((at.astimezone(UTC).strftime("%Y%m%d%H%M%S") + secret + pin).encode()).hexdigest()[:5]


def activate(api: httpx2.Client, *, delta: str = "0000") -> tuple[str, str]:
    """Secret, PIN, set PIN: returns (secret, pin now in force)."""
    secret = api.get(f"{IQ}/secret").json()["secret"]
    pin = api.get(f"{IQ}/pin").json()["pin"]
    response = api.put(f"{IQ}/pin", json={"otp": otp(secret, pin), "delta": delta})
    assert response.status_code == 204, response.text
    new_pin = "".join(str((int(o) - int(d)) % 10) for o, d in zip(pin, delta, strict=True))
    return secret, new_pin


def open_lock(api: httpx2.Client, lock_id: str, code: str | None) -> httpx2.Response:
    body: dict[str, str] = {"locked_state": "unlocked"}
    if code is not None:
        body["otp"] = code
    return api.patch(f"{SITE}/locks/{lock_id}/locking", json=body)


def assert_salto_error(response: httpx2.Response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"ErrorCode": code, "Message": message}


# --- identity ------------------------------------------------------------------------------------------------


def test_password_grant_issues_an_opaque_bearer_token(http: httpx2.Client) -> None:
    response = password_grant(http)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "user_api.full_access"
    assert len(body["access_token"]) >= 32
    assert "refresh_token" not in body
    assert http.get("/_sandbox/token-requests").json()["count"] == 1


def test_client_credentials_in_the_form_are_tolerated(http: httpx2.Client) -> None:
    response = http.post(
        "/connect/token",
        data={
            "grant_type": "password",
            "username": demo.DEMO_USERNAME,
            "password": demo.DEMO_PASSWORD,
            "scope": "user_api.full_access openid",
            "client_id": demo.DEMO_CLIENT_ID,
            "client_secret": demo.DEMO_CLIENT_SECRET,
        },
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("auth", "overrides", "status", "error"),
    [
        ((demo.DEMO_CLIENT_ID, "wrong"), {}, 401, "invalid_client"),
        (("someone-else", demo.DEMO_CLIENT_SECRET), {}, 401, "invalid_client"),
        (None, {}, 401, "invalid_client"),
        ((demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET), {"password": "wrong"}, 400, "invalid_grant"),
        ((demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET), {"username": "nobody@example.com"}, 400, "invalid_grant"),
        ((demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET), {"scope": "core_api.full"}, 400, "invalid_scope"),
        (
            (demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET),
            {"scope": "user_api.full_access hardware_api"},
            400,
            "invalid_scope",
        ),
        ((demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET), {"scope": ""}, 400, "invalid_scope"),
        (
            (demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET),
            {"grant_type": "client_credentials"},
            400,
            "unsupported_grant_type",
        ),
    ],
)
def test_identity_errors_are_oauth_json(
    http: httpx2.Client, auth: tuple[str, str] | None, overrides: dict[str, str], status: int, error: str
) -> None:
    data = {
        "grant_type": "password",
        "username": demo.DEMO_USERNAME,
        "password": demo.DEMO_PASSWORD,
        "scope": "user_api.full_access",
        **overrides,
    }
    response = http.post("/connect/token", data=data, auth=auth) if auth else http.post("/connect/token", data=data)

    assert response.status_code == status
    assert response.json()["error"] == error
    assert http.get("/_sandbox/token-requests").json()["count"] == 1


def test_refresh_token_grant_rotates_the_refresh_token(http: httpx2.Client) -> None:
    first = password_grant(http, scope="user_api.full_access offline_access").json()
    auth = (demo.DEMO_CLIENT_ID, demo.DEMO_CLIENT_SECRET)
    refreshed = http.post(
        "/connect/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=auth
    )
    reused = http.post(
        "/connect/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=auth
    )

    assert refreshed.status_code == 200
    assert refreshed.json()["access_token"] != first["access_token"]
    assert refreshed.json()["refresh_token"] != first["refresh_token"]
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert http.get("/_sandbox/token-requests").json()["by_grant_type"] == {"password": 1, "refresh_token": 2}


def test_discovery_document_names_the_token_endpoint(http: httpx2.Client, salto_sandbox: RunningSandbox) -> None:
    body = http.get("/.well-known/openid-configuration").json()

    assert body["token_endpoint"] == f"{salto_sandbox.url}/connect/token"
    assert "password" in body["grant_types_supported"]
    assert "user_api.full_access" in body["scopes_supported"]


# --- bearer tokens -------------------------------------------------------------------------------------------


def test_api_without_or_with_a_bad_token_is_401_with_an_empty_body(http: httpx2.Client) -> None:
    missing = http.get("/v1.1/sites")
    bad = http.get("/v1.1/sites", headers={"Authorization": "Bearer not-a-token"})

    for response in (missing, bad):
        assert response.status_code == 401
        assert response.content == b""
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_expires_after_an_hour(api: httpx2.Client, salto_sandbox: RunningSandbox) -> None:
    assert api.get("/v1.1/sites").status_code == 200
    salto_sandbox.state.clock = lambda: datetime.now(UTC) + timedelta(seconds=3601)

    assert api.get("/v1.1/sites").status_code == 401


def test_control_surface_can_expire_all_tokens(api: httpx2.Client) -> None:
    assert api.post("/_sandbox/tokens/expire").json() == {"expired": 1}
    assert api.get("/v1.1/sites").status_code == 401


# --- sites, IQs, locks ---------------------------------------------------------------------------------------


def test_sites_filter_by_site_uid(api: httpx2.Client) -> None:
    found = api.get("/v1.1/sites", params={"$filter": f"site_uid eq '{demo.DEMO_SITE_UID}'"}).json()
    other = api.get("/v1.1/sites", params={"$filter": "site_uid eq 'DE4520168385'"}).json()

    assert [site["id"] for site in found["items"]] == [demo.DEMO_SITE_ID]
    assert found["items"][0]["installation_state"] == "released"
    assert found["next_page_link"] is None
    assert other["items"] == []


def test_v1_2_sites_is_a_bare_array(api: httpx2.Client) -> None:
    body = api.get("/v1.2/sites").json()

    assert isinstance(body, list)
    assert body[0]["site_uid"] == demo.DEMO_SITE_UID


def test_a_site_uid_in_the_path_is_400_1100(api: httpx2.Client) -> None:
    response = api.get(f"/v1.1/sites/{demo.DEMO_SITE_UID}")

    assert response.status_code == 400
    assert response.json()["ErrorCode"] == "1100"


def test_unknown_site_is_404_2202(api: httpx2.Client) -> None:
    assert_salto_error(api.get("/v1.1/sites/00000000-0000-0000-0000-000000000000/locks"), 404, "2202", "Site not found")


def test_get_site_and_iqs(api: httpx2.Client) -> None:
    site = api.get(SITE).json()
    iqs = api.get(f"{SITE}/iqs").json()
    iq = api.get(IQ).json()

    assert site["site_uid"] == demo.DEMO_SITE_UID
    assert [i["customer_reference"] for i in iqs["items"]] == ["IQ Reception", "IQ Garage"]
    assert iq["online"] is True
    assert iq["otp_enabled"] is True


def test_locks_are_paged_by_three_with_absolute_next_links(api: httpx2.Client, salto_sandbox: RunningSandbox) -> None:
    pages = []
    url: str | None = f"{SITE}/locks"
    while url:
        body = api.get(url).json()
        pages.append(body)
        url = body["next_page_link"]

    assert [len(page["items"]) for page in pages] == [3, 3, 2]
    assert pages[0]["next_page_link"] == f"{salto_sandbox.url}{SITE}/locks?$skip=3&$top=3"
    names = [lock["customer_reference"] for page in pages for lock in page["items"]]
    assert names == [lock.name for lock in demo.DEMO_LOCKS]
    garage = pages[2]["items"][1]
    assert garage["iq"]["id"] == demo.DEMO_IQ2_ID
    assert set(garage["iq"]) >= {"id", "customer_reference", "is_online", "otp_enabled"}


def test_locks_filter_count_and_orderby(api: httpx2.Client) -> None:
    offline = api.get(f"{SITE}/locks", params={"$filter": "online eq false", "$inlinecount": "allpages"}).json()
    ordered = api.get(f"{SITE}/locks", params={"$orderby": "customer_reference desc"}).json()
    bad = api.get(f"{SITE}/locks", params={"$orderby": "colour asc"})

    assert [lock["customer_reference"] for lock in offline["items"]] == ["Storage"]
    assert offline["count"] == 1
    assert ordered["items"][0]["customer_reference"] == "Studio 3"
    assert bad.status_code == 400
    assert bad.json()["ErrorCode"] == "1102"


def test_unknown_lock_is_404_2202(api: httpx2.Client) -> None:
    assert_salto_error(api.get(f"{SITE}/locks/00000000-0000-4000-8000-000000000000"), 404, "2202", "Lock not found")


# --- secret, PIN, activation ---------------------------------------------------------------------------------


def test_secret_is_given_until_the_account_is_activated(api: httpx2.Client) -> None:
    first = api.get(f"{IQ}/secret").json()["secret"]
    again = api.get(f"{IQ}/secret").json()["secret"]
    activate(api)

    assert len(first) == 16
    assert again == first
    assert_salto_error(api.get(f"{IQ}/secret"), 403, "2203", "Cannot get first secret for an already activated Iq.")


def test_get_pin_in_the_body_or_by_email(api: httpx2.Client) -> None:
    in_body = api.get(f"{IQ}/pin")
    by_email = api.get(f"{IQ}/pin", params={"send_email": "true"})

    assert in_body.json() == {"pin": demo.DEMO_INITIAL_PIN}
    assert by_email.status_code == 204
    outbox = api.get("/_sandbox/state").json()["outbox"]
    assert outbox[0]["to"] == demo.DEMO_USERNAME
    assert outbox[0]["pin"] == demo.DEMO_INITIAL_PIN


def test_set_pin_with_a_correct_otp_activates_the_account(api: httpx2.Client) -> None:
    assert api.get(f"/v1.1/me/{demo.DEMO_SITE_ID}/activated_iqs").json()["items"] == []

    activate(api)

    items = api.get(f"/v1.1/me/{demo.DEMO_SITE_ID}/activated_iqs").json()["items"]
    assert [(i["iq_id"], i["activated"]) for i in items] == [(demo.DEMO_IQ_ID, True)]
    assert items[0]["activation_date"].endswith("Z")
    assert_salto_error(api.get(f"{IQ}/pin"), 403, "3102", "Request execution failed with code: command_forbidden")


def test_set_pin_applies_the_delta_digit_wise(api: httpx2.Client, salto_sandbox: RunningSandbox) -> None:
    # 1234 with delta 1119: new digit = (old - delta) mod 10 → 0125
    secret, pin = activate(api, delta="1119")

    assert pin == "0125"
    assert salto_sandbox.state.activation_view(demo.DEMO_IQ_ID)["pin"] == "0125"
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, "0125")).status_code == 200


def test_set_pin_with_a_wrong_or_missing_otp(api: httpx2.Client) -> None:
    api.get(f"{IQ}/secret")

    assert_salto_error(
        api.put(f"{IQ}/pin", json={"otp": "00000", "delta": "0000"}),
        400,
        "3102",
        "Request execution failed with code: otp_invalid",
    )
    assert_salto_error(api.put(f"{IQ}/pin", json={"delta": "0000"}), 400, "1100", "The otp field is required.")
    assert api.get(f"/v1.1/me/{demo.DEMO_SITE_ID}/activated_iqs").json()["items"] == []


# --- opening -------------------------------------------------------------------------------------------------


def test_open_with_a_valid_otp_is_recorded_as_an_open_and_an_entry(api: httpx2.Client) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    secret, pin = activate(api)

    response = open_lock(api, demo.LOCK_STUDIO_2_ID, otp(secret, pin))

    assert response.status_code == 200
    assert response.content == b""
    opens = api.get("/_sandbox/opens").json()
    assert [(o["lock_id"], o["username"]) for o in opens] == [(demo.LOCK_STUDIO_2_ID, demo.DEMO_USERNAME)]
    since = before.strftime("%Y-%m-%dT%H:%M:%SZ")
    entries = api.get(f"{SITE}/entries", params={"$filter": f"utc_date_time ge DateTime'{since}'"}).json()
    assert entries["continuation_token"] is None
    assert [(e["event_category"], e["access_by"], e["lock_id"]) for e in entries["items"]] == [
        ("lock_opened", "remote", demo.LOCK_STUDIO_2_ID)
    ]
    later = (before + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert api.get(f"{SITE}/entries", params={"$filter": f"utc_date_time ge DateTime'{later}'"}).json()["items"] == []


def test_entries_are_v1_1_only(api: httpx2.Client) -> None:
    assert api.get(f"/v1.2/sites/{demo.DEMO_SITE_ID}/entries").status_code == 405


def test_otp_window_is_three_minutes_back_and_one_minute_ahead(api: httpx2.Client) -> None:
    secret, pin = activate(api)
    now = datetime.now(UTC)

    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin, now - timedelta(seconds=170))).status_code == 200
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin, now + timedelta(seconds=50))).status_code == 200
    # Outside the window, by a code that no second inside it (give or take the test's own seconds) also has:
    # five hex characters collide with one of the window's ~240 codes about once in 4,000 runs.
    inside = {otp(secret, pin, now + timedelta(seconds=s)) for s in range(-190, 71)}

    def outside(seconds: range) -> str:
        return next(c for s in seconds if (c := otp(secret, pin, now + timedelta(seconds=s))) not in inside)

    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, outside(range(-200, -260, -1))).status_code == 400
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, outside(range(90, 150))).status_code == 400


def test_open_without_otp_is_404_otp_is_invalid(api: httpx2.Client) -> None:
    activate(api)
    assert_salto_error(open_lock(api, demo.LOCK_FRONT_DOOR_ID, None), 404, "2202", "Otp is invalid")


def test_open_before_activation_is_pin_not_changed(api: httpx2.Client) -> None:
    assert_salto_error(
        open_lock(api, demo.LOCK_FRONT_DOOR_ID, "12345"),
        400,
        "3102",
        "Request execution failed with code: pin_not_changed",
    )


def test_wrong_otps_get_the_account_blocked_for_twenty_minutes(
    api: httpx2.Client, salto_sandbox: RunningSandbox
) -> None:
    secret, pin = activate(api)
    for _ in range(5):
        assert_salto_error(
            open_lock(api, demo.LOCK_FRONT_DOOR_ID, "00000"),
            400,
            "3102",
            "Request execution failed with code: otp_invalid",
        )

    blocked = open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin))

    assert_salto_error(blocked, 403, "3102", "Request execution failed with code: otp_blocked")
    assert api.get("/_sandbox/opens").json() == []
    later = datetime.now(UTC) + timedelta(minutes=20, seconds=1)
    salto_sandbox.state.clock = lambda: later
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin, later)).status_code == 200


def test_block_threshold_is_configurable(api: httpx2.Client) -> None:
    api.post("/_sandbox/config", json={"otp_block_threshold": 2})
    activate(api)

    open_lock(api, demo.LOCK_FRONT_DOOR_ID, "00000")
    open_lock(api, demo.LOCK_FRONT_DOOR_ID, "00000")

    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, "00000").status_code == 403


def test_offline_lock_and_offline_iq_are_refused_with_our_409(api: httpx2.Client) -> None:
    secret, pin = activate(api)

    assert_salto_error(
        open_lock(api, demo.LOCK_STORAGE_ID, otp(secret, pin)),
        409,
        "3102",
        "Request execution failed with code: lock_offline",
    )
    api.post(f"/_sandbox/iqs/{demo.DEMO_IQ_ID}/online", json={"online": False})
    assert api.get(f"{SITE}/locks/{demo.LOCK_FRONT_DOOR_ID}").json()["online"] is False
    assert_salto_error(
        open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin)),
        409,
        "3102",
        "Request execution failed with code: iq_offline",
    )
    api.post(f"/_sandbox/iqs/{demo.DEMO_IQ_ID}/online", json={"online": True})
    api.post(f"/_sandbox/locks/{demo.LOCK_STORAGE_ID}/online", json={"online": True})
    assert open_lock(api, demo.LOCK_STORAGE_ID, otp(secret, pin)).status_code == 200
    assert api.get("/_sandbox/state").json()["activations"][0]["failed_otp_count"] == 0


def test_the_garage_needs_its_own_activation(api: httpx2.Client) -> None:
    secret, pin = activate(api)

    assert open_lock(api, demo.LOCK_GARAGE_ID, otp(secret, pin)).json()["Message"].endswith("pin_not_changed")


def test_pin_changed_outside_makes_stored_otps_fail(api: httpx2.Client) -> None:
    secret, pin = activate(api)

    changed = api.post(f"/_sandbox/iqs/{demo.DEMO_IQ_ID}/pin", json={}).json()

    assert changed["pin"] != pin
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, pin)).json()["Message"].endswith("otp_invalid")
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(secret, changed["pin"])).status_code == 200


# --- faults --------------------------------------------------------------------------------------------------


def test_fault_503_twice_then_normal(api: httpx2.Client) -> None:
    api.post("/_sandbox/faults", json={"path_contains": "/locks", "status": 503, "times": 2})

    statuses = [api.get(f"{SITE}/locks").status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert api.get(f"{SITE}/iqs").status_code == 200
    logged = [r["status"] for r in api.get("/_sandbox/requests").json()["requests"] if r["path"].endswith("/locks")]
    assert logged == [503, 503, 200]
    assert api.get("/_sandbox/faults").json()["faults"] == []


def test_fault_429_with_retry_after(api: httpx2.Client) -> None:
    api.post("/_sandbox/faults", json={"path_contains": "/locking", "status": 429, "retry_after": 1})

    response = open_lock(api, demo.LOCK_FRONT_DOOR_ID, "12345")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.text == "API calls quota exceeded! maximum admitted 3 per 1m."


def test_fault_on_the_token_endpoint(http: httpx2.Client) -> None:
    http.post("/_sandbox/faults", json={"path_contains": "/connect/token", "status": 500})

    assert password_grant(http).status_code == 500
    assert password_grant(http).status_code == 200


def test_fault_delay(api: httpx2.Client) -> None:
    api.post("/_sandbox/faults", json={"path_contains": "/iqs", "delay_seconds": 0.3})

    started = time.monotonic()
    response = api.get(f"{SITE}/iqs")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fault_dropped_connection(api: httpx2.Client) -> None:
    api.post("/_sandbox/faults", json={"path_contains": "/sites", "drop_connection": True})

    with pytest.raises(httpx2.RemoteProtocolError):
        api.get("/v1.1/sites")
    assert api.get("/v1.1/sites").status_code == 200


def test_bad_fault_is_rejected(http: httpx2.Client) -> None:
    assert http.post("/_sandbox/faults", json={"path_contains": "/x"}).status_code == 400
    assert http.post("/_sandbox/faults", json={"status": 200}).status_code == 400
    assert http.post("/_sandbox/faults", json={"colour": "red", "status": 500}).status_code == 400


# --- control surface and page --------------------------------------------------------------------------------


def test_reset_restores_the_demo(api: httpx2.Client, salto_sandbox: RunningSandbox) -> None:
    activate(api)
    api.post(f"/_sandbox/locks/{demo.LOCK_FRONT_DOOR_ID}/online", json={"online": False})

    api.post("/_sandbox/reset")

    state = api.get("/_sandbox/state").json()
    assert state["activations"] == []
    assert all(lock["online"] for lock in state["locks"] if lock["id"] != demo.LOCK_STORAGE_ID)
    assert state["tokens"]["count"] == 0


def test_iq_reset_and_activation_shortcuts(api: httpx2.Client) -> None:
    activated = api.post(f"/_sandbox/iqs/{demo.DEMO_IQ_ID}/activation").json()
    assert open_lock(api, demo.LOCK_FRONT_DOOR_ID, otp(activated["secret"], activated["pin"])).status_code == 200

    api.post(f"/_sandbox/iqs/{demo.DEMO_IQ_ID}/reset")

    assert api.get(f"{IQ}/secret").json()["secret"] != activated["secret"]


def test_opens_page_shows_each_lock_and_its_opens(api: httpx2.Client) -> None:
    secret, pin = activate(api)
    open_lock(api, demo.LOCK_STUDIO_1_ID, otp(secret, pin))

    page = api.get("/_sandbox/")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh"' in page.text
    for lock in demo.DEMO_LOCKS:
        assert lock.name in page.text
    assert f'class="lock opened" data-lock-id="{demo.LOCK_STUDIO_1_ID}"' in page.text
    assert demo.DEMO_USERNAME in page.text


def test_state_is_usable_in_process(salto_sandbox: RunningSandbox) -> None:
    salto_sandbox.state.set_lock_online(demo.LOCK_GARAGE_ID, False)

    summary = salto_sandbox.state.summary()

    assert {lock["name"]: lock["online"] for lock in summary["locks"]}["Garage"] is False
    assert summary["site"]["site_uid"] == demo.DEMO_SITE_UID
