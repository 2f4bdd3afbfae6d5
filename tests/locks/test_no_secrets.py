from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import respx

from locks import errors
from locks.client import SaltoClient
from locks.otp import compute_otp
from tests.fake_salto import (
    ACCESS_TOKEN,
    API,
    CLIENT_SECRET,
    IQ_ID,
    LOCK_ID,
    PASSWORD,
    PIN,
    SECRET,
    SITE_ID,
    SITE_UID,
    SITES,
    TOKEN_URL,
    USERNAME,
    token_body,
)

NEW_PIN = "8152"
AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_it_leaks_no_secret_into_logs_errors_or_reprs(
    httpx2_mock: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    # given: a full flow with success and failure answers, some echoing what we sent
    caplog.set_level(logging.DEBUG)
    otp = compute_otp(secret=SECRET, pin=PIN, at=AT)
    httpx2_mock.post(TOKEN_URL).respond(200, json=token_body())
    httpx2_mock.get(SITES).respond(200, json={"items": [{"id": SITE_ID, "site_uid": SITE_UID}]})
    base = f"{API}/v1.1/sites/{SITE_ID}"
    httpx2_mock.get(f"{base}/iqs/{IQ_ID}/secret").respond(200, json={"secret": SECRET})
    httpx2_mock.get(f"{base}/iqs/{IQ_ID}/pin").respond(200, json={"pin": PIN})
    httpx2_mock.put(f"{base}/iqs/{IQ_ID}/pin").respond(
        400, json={"ErrorCode": "3102", "Message": f"Request execution failed with code: otp_invalid ({otp}, {PIN})"}
    )
    httpx2_mock.get(f"{base}/locks").respond(200, json={"items": [{"id": LOCK_ID, "iq": {"id": IQ_ID}}]})
    httpx2_mock.patch(f"{base}/locks/{LOCK_ID}/locking").respond(
        500, text=f"boom: token {ACCESS_TOKEN} secret {SECRET} password {PASSWORD}"
    )
    seen: list[str] = []
    # when
    with SaltoClient(environment="acceptance", username=USERNAME, password=PASSWORD) as client:
        seen.append(repr(client))
        token = client.fetch_token()
        seen += [repr(token), str(token), repr(client.tokens)]
        site = client.resolve_site(SITE_UID)
        secret = client.get_iq_secret(site.id, IQ_ID)
        pin_result = client.request_iq_pin(site.id, IQ_ID)
        seen += [repr(pin_result), str(pin_result)]
        for action in (
            lambda: client.set_iq_pin(site.id, IQ_ID, secret=secret, current_pin=PIN, new_pin=NEW_PIN, at=AT),
            lambda: client.open_lock(site.id, LOCK_ID, secret=secret, pin=PIN, at=AT),
        ):
            with pytest.raises(errors.SaltoError) as info:
                action()
            seen += [str(info.value), repr(info.value), repr(info.value.args), str(info.value.salto_message)]
        client.list_locks(site.id)
    httpx2_mock.post(TOKEN_URL).respond(400, json={"error": "invalid_grant", "error_description": PASSWORD})
    with SaltoClient(environment="acceptance", username="x@example.com", password=PASSWORD) as other:
        with pytest.raises(errors.SaltoAuthError) as auth_info:
            other.fetch_token()
        seen += [str(auth_info.value), repr(auth_info.value)]
    # then
    seen += [record.getMessage() for record in caplog.records]
    seen += [str(record.args) for record in caplog.records]
    text = "\n".join(seen)
    assert "salto_ks PATCH" in text  # the calls were logged
    for value in (PASSWORD, CLIENT_SECRET, ACCESS_TOKEN, SECRET, PIN, NEW_PIN, otp):
        assert value not in text, f"a secret leaked: {value[:2]}…"
