from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import httpx2
import pytest
import respx

from locks import errors
from locks.client import SaltoClient
from locks.environments import Environment, endpoints_for
from locks.otp import compute_otp
from tests.fake_salto import (
    API,
    CLIENT_SECRET,
    IDENTITY,
    IQ_ID,
    LOCK_ID,
    LOCKS_URL,
    PASSWORD,
    PROD_API,
    PROD_IDENTITY,
    SECRET,
    SITE_ID,
    SITE_UID,
    SITES,
    TOKEN_URL,
    USERNAME,
    assert_api_request,
    assert_token_request,
    body,
)

AT = datetime(2026, 8, 25, 7, 25, 0, tzinfo=UTC)
CF, PD, PNC = errors.CommandForbidden, errors.AccountLacksPermission, errors.PinNotChanged
IQS = f"{API}/v1.1/sites/{SITE_ID}/iqs"


def site(uid: str, id_: str = SITE_ID) -> dict[str, object]:
    return {"id": id_, "site_uid": uid, "customer_reference": "Example site", "time_zone": "Europe/Amsterdam"}


def lock(n: int, *, online: bool = True) -> dict[str, object]:
    return {
        "id": f"lock-{n}",
        "customer_reference": f"Room {n}",
        "online": online,
        "locked_state": "locked",
        "iq": {"id": IQ_ID, "customer_reference": "IQ HQ", "is_online": True, "otp_enabled": True},
    }


# --- Environments -------------------------------------------------------------------------------


def test_it_reads_the_endpoints_from_settings_at_call_time(settings: object) -> None:
    # when
    acceptance = endpoints_for(Environment.ACCEPTANCE)
    production = endpoints_for("production")
    # then
    assert (acceptance.identity_url, acceptance.api_url) == (IDENTITY, API)
    assert (production.identity_url, production.api_url) == (PROD_IDENTITY, PROD_API)


# --- Authentication errors ----------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["invalid_client", "invalid_grant", "invalid_scope"])
def test_it_names_the_oauth_error(client: SaltoClient, httpx2_mock: respx.Router, reason: str) -> None:
    # given
    route = httpx2_mock.post(TOKEN_URL).respond(400, json={"error": reason})
    # when
    with pytest.raises(errors.SaltoAuthError) as info:
        client.fetch_token()
    # then
    assert_token_request(route.calls.last.request)
    assert info.value.reason == reason
    assert info.value.http_status == 400


@pytest.mark.parametrize("status", [404, 500, 503])
def test_it_reports_the_identity_server_unreachable_on_404_and_5xx(
    client: SaltoClient, httpx2_mock: respx.Router, status: int
) -> None:
    # given
    httpx2_mock.post(TOKEN_URL).respond(status, text="<html>Not here</html>", headers={"content-type": "text/html"})
    # when
    with pytest.raises(errors.IdentityUnreachable) as info:
        client.fetch_token()
    # then it is transient (retried later), never a credential problem
    assert isinstance(info.value, errors.SaltoTransientError)
    assert not isinstance(info.value, errors.SaltoAuthError)
    assert info.value.kind == "identity_unreachable"
    assert info.value.http_status == status


@pytest.mark.parametrize("exc", [httpx2.ConnectError("refused"), httpx2.ReadTimeout("slow")])
def test_it_reports_the_identity_server_unreachable_on_network_errors(
    client: SaltoClient, httpx2_mock: respx.Router, exc: Exception
) -> None:
    # given
    httpx2_mock.post(TOKEN_URL).mock(side_effect=exc)
    # when
    with pytest.raises(errors.IdentityUnreachable) as info:
        client.fetch_token()
    # then
    assert isinstance(info.value, errors.SaltoTransientError)
    assert info.value.kind == "identity_unreachable"


def test_it_reports_an_unreadable_token_response(client: SaltoClient, httpx2_mock: respx.Router) -> None:
    # given
    httpx2_mock.post(TOKEN_URL).respond(200, json={"token_type": "Bearer"})
    # when
    with pytest.raises(errors.SaltoAuthError) as info:
        client.fetch_token()
    # then
    assert info.value.reason == "identity_error"


# --- Sites --------------------------------------------------------------------------------------


def test_it_lists_sites_from_a_bare_array(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    route = httpx2_mock.get(SITES).respond(200, json=[site(SITE_UID)])
    # when
    sites = client.list_sites()
    # then
    assert_api_request(route.calls.last.request, "GET", "/v1.1/sites")
    assert [s.id for s in sites] == [SITE_ID]


def test_it_resolves_a_site_with_the_filter(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    route = httpx2_mock.get(SITES).respond(200, json={"items": [site(SITE_UID)], "next_page_link": None})
    # when
    resolved = client.resolve_site("  " + SITE_UID.lower() + " ")
    # then
    request = route.calls.last.request
    assert_api_request(request, "GET", "/v1.1/sites")
    assert request.url.params["$filter"] == f"site_uid eq '{SITE_UID.lower()}'"
    assert route.call_count == 1
    assert resolved.id == SITE_ID


def test_it_falls_back_to_scanning_all_sites(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given: the filter is refused, the full list holds the site
    route = httpx2_mock.get(SITES)
    route.side_effect = [
        httpx.Response(400, json={"ErrorCode": "1102", "Message": "Invalid OData"}),
        httpx.Response(200, json={"items": [site("DE4520168385", "other"), site(SITE_UID)]}),
    ]
    # when
    resolved = client.resolve_site(SITE_UID)
    # then
    assert "$filter" in route.calls[0].request.url.params
    assert "$filter" not in route.calls[1].request.url.params
    assert resolved.id == SITE_ID


def test_it_raises_site_not_found(client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router) -> None:
    # given
    route = httpx2_mock.get(SITES).respond(200, json={"items": [site("DE4520168385", "other")]})
    # when
    with pytest.raises(errors.SiteNotFound):
        client.resolve_site(SITE_UID)
    # then
    assert route.call_count == 2


def test_it_raises_site_ambiguous(client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router) -> None:
    # given
    httpx2_mock.get(SITES).respond(200, json={"items": [site(SITE_UID, "a"), site(SITE_UID.lower() + " ", "b")]})
    # when / then
    with pytest.raises(errors.SiteAmbiguous):
        client.resolve_site(SITE_UID)


@pytest.mark.parametrize("uid", ["NL' or 1 eq 1 or site_uid eq '", "", "  ", "NL/../x", 'NL"1'])
def test_it_refuses_a_site_uid_that_could_inject_odata(
    client: SaltoClient, httpx2_mock: respx.Router, uid: str
) -> None:
    # when
    with pytest.raises(errors.InvalidInput):
        client.resolve_site(uid)
    # then
    assert httpx2_mock.calls.call_count == 0


# --- IQs ----------------------------------------------------------------------------------------


def test_it_lists_iqs(client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router) -> None:
    # given
    iq = {"id": IQ_ID, "customer_reference": "IQ 01", "online": True, "otp_enabled": True, "mac": "3B.9E.05"}
    route = httpx2_mock.get(IQS).respond(200, json={"items": [iq], "next_page_link": None, "count": None})
    # when
    iqs = client.list_iqs(SITE_ID)
    # then
    assert_api_request(route.calls.last.request, "GET", f"/v1.1/sites/{SITE_ID}/iqs")
    assert iqs[0].id == IQ_ID
    assert iqs[0].online is True
    assert iqs[0].otp_enabled is True


def test_it_gets_an_iq_and_raises_iq_not_found(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    route = httpx2_mock.get(f"{IQS}/{IQ_ID}").respond(200, json={"id": IQ_ID, "online": False})
    httpx2_mock.get(f"{IQS}/missing").respond(404, json={"ErrorCode": "2202", "Message": "Iq not found"})
    # when
    iq = client.get_iq(SITE_ID, IQ_ID)
    # then
    assert_api_request(route.calls.last.request, "GET", f"/v1.1/sites/{SITE_ID}/iqs/{IQ_ID}")
    assert iq.online is False
    with pytest.raises(errors.IQNotFound) as info:
        client.get_iq(SITE_ID, "missing")
    assert (info.value.http_status, info.value.error_code) == (404, "2202")


def test_it_gets_the_iq_secret(client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router) -> None:
    # given
    route = httpx2_mock.get(f"{IQS}/{IQ_ID}/secret").respond(200, json={"secret": SECRET})
    # when
    secret = client.get_iq_secret(SITE_ID, IQ_ID)
    # then
    assert_api_request(route.calls.last.request, "GET", f"/v1.1/sites/{SITE_ID}/iqs/{IQ_ID}/secret")
    assert secret == SECRET


def test_it_raises_secret_already_issued(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    httpx2_mock.get(f"{IQS}/{IQ_ID}/secret").respond(
        403, json={"ErrorCode": "2203", "Message": "Cannot get first secret for an already activated Iq."}
    )
    # when
    with pytest.raises(errors.SecretAlreadyIssued) as info:
        client.get_iq_secret(SITE_ID, IQ_ID)
    # then
    assert info.value.http_status == 403
    assert info.value.error_code == "2203"
    assert "already activated" in (info.value.salto_message or "")


@pytest.mark.parametrize("payload", [{"pin": "0123"}, "0123", 123])
def test_it_requests_the_iq_pin_in_the_body(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router, payload: object
) -> None:
    # given
    route = httpx2_mock.get(f"{IQS}/{IQ_ID}/pin").respond(200, json=payload)
    # when
    result = client.request_iq_pin(SITE_ID, IQ_ID)
    # then
    request = route.calls.last.request
    assert_api_request(request, "GET", f"/v1.1/sites/{SITE_ID}/iqs/{IQ_ID}/pin")
    assert "send_email" not in request.url.params
    assert result.sent_by == "body"
    assert result.pin is not None
    assert result.pin.get_secret_value() == "0123"


@pytest.mark.parametrize("status", [204, 200])
def test_it_reports_that_salto_sent_the_pin_by_sms(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router, status: int
) -> None:
    # given Salto answers without a PIN in the body (204, or an empty 200)
    route = httpx2_mock.get(f"{IQS}/{IQ_ID}/pin").respond(status)
    # when
    result = client.request_iq_pin(SITE_ID, IQ_ID)
    # then
    assert "send_email" not in route.calls.last.request.url.params
    assert (result.pin, result.sent_by) == (None, "sms")


def test_it_raises_command_forbidden_on_get_pin_after_activation(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    httpx2_mock.get(f"{IQS}/{IQ_ID}/pin").respond(
        403, json={"ErrorCode": 3102, "Message": "Request execution failed with code: command_forbidden"}
    )
    # when / then
    with pytest.raises(errors.CommandForbidden) as info:
        client.request_iq_pin(SITE_ID, IQ_ID)
    assert info.value.error_code == "3102"


def test_it_sets_the_iq_pin_with_otp_and_delta(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    route = httpx2_mock.put(f"{IQS}/{IQ_ID}/pin").respond(204)
    # when
    client.set_iq_pin(SITE_ID, IQ_ID, secret=SECRET, current_pin="1234", new_pin="1234", at=AT)
    # then
    request = route.calls.last.request
    assert_api_request(request, "PUT", f"/v1.1/sites/{SITE_ID}/iqs/{IQ_ID}/pin")
    assert request.headers["content-type"] == "application/json"
    assert body(request) == {"otp": "28a5a", "delta": "0000"}


def test_it_sends_the_delta_for_a_new_pin(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    route = httpx2_mock.put(f"{IQS}/{IQ_ID}/pin").respond(204)
    # when
    client.set_iq_pin(SITE_ID, IQ_ID, secret=SECRET, current_pin="6596", new_pin="0601", at=AT)
    # then
    assert body(route.calls.last.request) == {
        "otp": compute_otp(secret=SECRET, pin="6596", at=AT),
        "delta": "6995",
    }


def test_it_uses_utc_now_for_the_otp_by_default(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    route = httpx2_mock.put(f"{IQS}/{IQ_ID}/pin").respond(204)
    before = datetime.now(UTC)
    # when
    client.set_iq_pin(SITE_ID, IQ_ID, secret=SECRET, current_pin="1234", new_pin="1234")
    # then
    candidates = {compute_otp(secret=SECRET, pin="1234", at=before + timedelta(seconds=s)) for s in range(3)}
    assert body(route.calls.last.request)["otp"] in candidates


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "Request execution failed with code: otp_invalid", errors.OtpInvalid),
        (403, "Request execution failed with code: otp_blocked", errors.OtpBlocked),
        (400, "Request execution failed with code: pin_not_changed", errors.PinNotChanged),
    ],
)
def test_it_names_the_3102_failures_of_set_pin(
    client: SaltoClient,
    token_route: respx.Route,
    httpx2_mock: respx.Router,
    status: int,
    message: str,
    expected: type[errors.SaltoError],
) -> None:
    # given
    route = httpx2_mock.put(f"{IQS}/{IQ_ID}/pin").respond(status, json={"ErrorCode": "3102", "Message": message})
    # when
    with pytest.raises(expected) as info:
        client.set_iq_pin(SITE_ID, IQ_ID, secret=SECRET, current_pin="1234", new_pin="1234", at=AT)
    # then
    assert route.call_count == 1  # never retried
    assert (info.value.http_status, info.value.error_code) == (status, "3102")
    assert isinstance(info.value, errors.SaltoPermanentError)


def test_it_lists_activated_iqs(client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router) -> None:
    # given
    items = [{"iq_id": IQ_ID, "activation_date": "2026-11-01T10:00:00Z", "activated": True}]
    route = httpx2_mock.get(f"{API}/v1.1/me/{SITE_ID}/activated_iqs").respond(200, json={"items": items})
    # when
    activated = client.list_activated_iqs(SITE_ID)
    # then
    assert_api_request(route.calls.last.request, "GET", f"/v1.1/me/{SITE_ID}/activated_iqs")
    assert activated[0].iq_id == IQ_ID
    assert activated[0].activated is True
    assert activated[0].activation_date == datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


# --- Locks --------------------------------------------------------------------------------------


def test_it_follows_next_page_link_to_the_end(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given: page 2 link is http (upgraded, base is https), page 3 has no link
    third = httpx2_mock.get(LOCKS_URL, params={"$skip": "4"}).respond(
        200, json={"items": [lock(5, online=False)], "next_page_link": None}
    )
    second = httpx2_mock.get(LOCKS_URL, params={"$skip": "2"}).respond(
        200, json={"items": [lock(3), lock(4)], "next_page_link": f"{LOCKS_URL}?$skip=4"}
    )
    first = httpx2_mock.get(LOCKS_URL).respond(
        200, json={"items": [lock(1), lock(2)], "next_page_link": LOCKS_URL.replace("https://", "http://") + "?$skip=2"}
    )
    # when
    locks = client.list_locks(SITE_ID)
    # then
    assert [lk.id for lk in locks] == ["lock-1", "lock-2", "lock-3", "lock-4", "lock-5"]
    assert locks[4].online is False
    assert locks[0].iq_id == IQ_ID
    assert second.calls.last.request.url.scheme == "https"
    for route in (first, second, third):
        assert_api_request(route.calls.last.request, "GET", f"/v1.1/sites/{SITE_ID}/locks")


def test_it_stops_when_a_next_page_link_repeats(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    httpx2_mock.get(LOCKS_URL).respond(200, json={"items": [lock(1)], "next_page_link": f"{LOCKS_URL}?page=2"})
    # when / then
    with pytest.raises(errors.UnexpectedResponse, match="repeats"):
        client.list_locks(SITE_ID)


def test_it_refuses_a_next_page_link_to_another_host(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    httpx2_mock.get(LOCKS_URL).respond(200, json={"items": [lock(1)], "next_page_link": "https://evil.test/steal"})
    # when / then
    with pytest.raises(errors.UnexpectedResponse, match="another host"):
        client.list_locks(SITE_ID)


@pytest.mark.parametrize("status", [200, 202, 204])
def test_it_opens_a_lock(client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router, status: int) -> None:
    # given
    route = httpx2_mock.patch(f"{LOCKS_URL}/{LOCK_ID}/locking").respond(status)
    # when
    client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="1234", at=AT)
    # then
    request = route.calls.last.request
    assert_api_request(request, "PATCH", f"/v1.1/sites/{SITE_ID}/locks/{LOCK_ID}/locking")
    assert body(request) == {"locked_state": "unlocked", "otp": "28a5a"}
    assert_token_request(token_route.calls.last.request)


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (400, {"ErrorCode": "3102", "Message": "Request execution failed with code: otp_invalid"}, errors.OtpInvalid),
        (403, {"ErrorCode": 3102, "Message": "Request execution failed with code: otp_blocked"}, errors.OtpBlocked),
        (404, {"ErrorCode": "2202", "Message": "Otp is invalid"}, errors.OtpInvalid),
        (404, {"ErrorCode": "2202", "Message": "Lock not found"}, errors.LockNotFound),
        (
            403,
            {"ErrorCode": "3102", "Message": "Request execution failed with code: command_forbidden"},
            errors.CommandForbidden,
        ),
        (
            403,
            {"ErrorCode": "2203", "Message": "User does not have permission for this operation"},
            errors.AccountLacksPermission,
        ),
        (
            400,
            {"ErrorCode": "3102", "Message": "Request execution failed with code: pin_not_changed"},
            errors.PinNotChanged,
        ),
        (409, {"ErrorCode": "3102", "Message": "Request execution failed with code: lock_offline"}, errors.LockOffline),
        (409, {"ErrorCode": "3102", "Message": "Request execution failed with code: iq_offline"}, errors.IQOffline),
        (423, {"ErrorCode": "9999", "Message": "The IQ offline, try later"}, errors.IQOffline),
        (403, {"ErrorCode": "2203", "Message": "Lock is offline"}, errors.LockOffline),
    ],
)
def test_it_names_the_open_failures(
    client: SaltoClient,
    token_route: respx.Route,
    httpx2_mock: respx.Router,
    status: int,
    payload: dict[str, object],
    expected: type[errors.SaltoError],
) -> None:
    # given
    route = httpx2_mock.patch(f"{LOCKS_URL}/{LOCK_ID}/locking").respond(status, json=payload)
    # when
    with pytest.raises(expected) as info:
        client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="1234", at=AT)
    # then
    assert route.call_count == 1
    assert body(route.calls.last.request) == {"locked_state": "unlocked", "otp": "28a5a"}
    assert info.value.http_status == status
    assert info.value.error_code == str(payload["ErrorCode"])
    assert info.value.salto_message == payload["Message"]
    assert "28a5a" not in str(info.value)


def test_it_carries_status_code_and_message_for_unknown_4xx(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    httpx2_mock.patch(f"{LOCKS_URL}/{LOCK_ID}/locking").respond(
        409, json={"ErrorCode": "9999", "Message": "Something new"}
    )
    # when
    with pytest.raises(errors.SaltoPermanentError) as info:
        client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="1234", at=AT)
    # then
    assert type(info.value) is errors.SaltoPermanentError
    assert (info.value.http_status, info.value.error_code, info.value.salto_message) == (409, "9999", "Something new")
    assert "HTTP 409" in str(info.value)
    assert "ErrorCode 9999" in str(info.value)
    assert "Something new" in str(info.value)


@pytest.mark.parametrize(
    ("status", "headers", "text", "retry_after", "kind"),
    [
        (429, {"Retry-After": "30"}, "API calls quota exceeded! maximum admitted 3 per 1m.", 30.0, "rate_limited"),
        (503, {}, "Service Unavailable", None, "server_error"),
        (500, {"Retry-After": "1.5"}, "", 1.5, "server_error"),
    ],
)
def test_it_classifies_5xx_and_429_as_transient(
    client: SaltoClient,
    token_route: respx.Route,
    httpx2_mock: respx.Router,
    status: int,
    headers: dict[str, str],
    text: str,
    retry_after: float | None,
    kind: str,
) -> None:
    # given
    httpx2_mock.patch(f"{LOCKS_URL}/{LOCK_ID}/locking").respond(status, text=text, headers=headers)
    # when
    with pytest.raises(errors.SaltoTransientError) as info:
        client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="1234", at=AT)
    # then
    assert info.value.retry_after == retry_after
    assert info.value.kind == kind
    assert info.value.http_status == status
    assert info.value.salto_message == (text or None)


def test_it_reads_retry_after_as_an_http_date(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    when = datetime.now(UTC) + timedelta(seconds=120)
    httpx2_mock.get(SITES).respond(429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    # when
    with pytest.raises(errors.SaltoTransientError) as info:
        client.list_sites()
    # then
    assert info.value.retry_after is not None
    assert 115 <= info.value.retry_after <= 120


@pytest.mark.parametrize(
    ("exc", "kind"),
    [(httpx2.ConnectError("refused"), "connection_error"), (httpx2.ReadTimeout("slow"), "timeout")],
)
def test_it_classifies_network_errors_as_transient(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router, exc: Exception, kind: str
) -> None:
    # given
    route = httpx2_mock.patch(f"{LOCKS_URL}/{LOCK_ID}/locking").mock(side_effect=exc)
    # when
    with pytest.raises(errors.SaltoTransientError) as info:
        client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="1234", at=AT)
    # then
    assert route.call_count == 1
    assert info.value.kind == kind
    assert info.value.retry_after is None


def test_it_refuses_bad_pins_and_ids_before_sending(client: SaltoClient, httpx2_mock: respx.Router) -> None:
    with pytest.raises(errors.InvalidInput):
        client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="12", at=AT)
    with pytest.raises(errors.InvalidInput):
        client.open_lock(SITE_ID, "../../me", secret=SECRET, pin="1234", at=AT)
    with pytest.raises(errors.InvalidInput):
        client.set_iq_pin(SITE_ID, IQ_ID, secret="", current_pin="1234", new_pin="1234", at=AT)
    assert httpx2_mock.calls.call_count == 0


# --- Entries ------------------------------------------------------------------------------------


def test_it_lists_entries_since_a_time(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    since = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    items = [
        {
            "id": "e2",
            "event_category": "lock_opened",
            "utc_date_time": "2026-11-25T10:05:00Z",
            "lock_id": LOCK_ID,
            "access_by": "remote",
        },
        {"id": "e1", "event_category": "lock_opened", "utc_date_time": "2026-11-25T09:00:00Z", "lock_id": LOCK_ID},
    ]
    route = httpx2_mock.get(f"{API}/v1.1/sites/{SITE_ID}/entries").respond(
        200, json={"items": items, "continuation_token": None}
    )
    # when
    entries = client.list_entries(SITE_ID, since=since)
    # then
    request = route.calls.last.request
    assert_api_request(request, "GET", f"/v1.1/sites/{SITE_ID}/entries")
    assert request.url.params["$filter"] == "utc_date_time ge DateTime'2026-11-25T10:00:00Z'"
    assert [e.id for e in entries] == ["e2"]
    assert entries[0].access_by == "remote"


# --- Misc ---------------------------------------------------------------------------------------


def test_it_sends_explicit_client_credentials(httpx2_mock: respx.Router) -> None:
    # given
    route = httpx2_mock.post(TOKEN_URL).respond(200, json={"access_token": "t", "expires_in": 3600})
    # when
    with SaltoClient(
        environment="acceptance", username=USERNAME, password=PASSWORD, client_id="cid", client_secret="cs"
    ) as c:
        c.fetch_token()
    # then
    from tests.fake_salto import basic_auth

    assert route.calls.last.request.headers["authorization"] == basic_auth("cid", "cs")


def test_its_repr_hides_the_password(client: SaltoClient) -> None:
    assert PASSWORD not in repr(client)
    assert CLIENT_SECRET not in repr(client)


def test_it_does_not_send_an_open_after_its_deadline(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given a deadline that passed while the token was being fetched (no open route: any send would fail)
    deadline = datetime.now(UTC) - timedelta(milliseconds=1)
    # when / then
    with pytest.raises(errors.DeadlinePassed):
        client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="1234", not_after=deadline)
    assert [call.request.method for call in httpx2_mock.calls] == ["POST"]  # the token request only


def test_an_open_may_take_no_longer_than_its_deadline(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    route = httpx2_mock.patch(f"{LOCKS_URL}/{LOCK_ID}/locking").respond(200)
    client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="1234", not_after=datetime.now(UTC) + timedelta(seconds=2))
    timeouts = route.calls.last.request.extensions["timeout"]
    assert all(0 < t <= 2 for t in timeouts.values()), timeouts  # not the client's 5 s
    # and the phases before Salto has the command (pool, connect, write) share the time left, not each all of it
    assert timeouts["pool"] + timeouts["connect"] + timeouts["write"] <= 2, timeouts


P, T = errors.SaltoPermanentError, errors.SaltoTransientError


@pytest.mark.parametrize(
    ("kind", "quirk", "family"),
    [
        (errors.OtpInvalid, errors.ReactivationRequired, P),
        (errors.OtpBlocked, errors.ReactivationRequired, P),
        (errors.PinNotChanged, errors.ReactivationRequired, P),
        (errors.LockOffline, errors.DeviceOffline, P),
        (errors.IQOffline, errors.DeviceOffline, P),
        (errors.DeadlinePassed, errors.DeadlinePassed, P),
        (errors.InvalidInput, errors.InvalidInput, P),
        (errors.AccountLacksPermission, errors.AccountLacksPermission, P),
        (errors.IdentityUnreachable, errors.IdentityUnreachable, T),
    ],
)
def test_every_named_error_belongs_to_exactly_one_family(
    kind: type[errors.SaltoError], quirk: type[errors.SaltoError], family: type[errors.SaltoError]
) -> None:
    families = [errors.SaltoAuthError, errors.SaltoTransientError, errors.SaltoPermanentError]
    assert issubclass(kind, quirk)
    assert [f for f in families if issubclass(kind, f)] == [family]


def test_only_refused_input_and_a_passed_deadline_say_nothing_was_sent() -> None:
    assert errors.DeadlinePassed().sent is False
    assert errors.InvalidInput("bad").sent is False
    assert errors.OtpInvalid().sent is True
    assert errors.SaltoTransientError().sent is True


def test_a_rate_limited_identity_server_is_unreachable_with_its_retry_after(
    client: SaltoClient, httpx2_mock: respx.Router
) -> None:
    # given
    httpx2_mock.post(TOKEN_URL).respond(429, text="slow down", headers={"Retry-After": "12"})
    # when
    with pytest.raises(errors.IdentityUnreachable) as info:
        client.fetch_token()
    # then
    assert (info.value.http_status, info.value.retry_after) == (429, 12.0)


def _all_subclasses(kind: type[errors.SaltoError]) -> list[type[errors.SaltoError]]:
    return [sub for direct in kind.__subclasses__() for sub in (direct, *_all_subclasses(direct))]


def test_every_error_the_client_can_raise_is_in_exactly_one_family() -> None:
    families = [errors.SaltoAuthError, errors.SaltoTransientError, errors.SaltoPermanentError]
    named = [kind for kind in _all_subclasses(errors.SaltoError) if kind not in families]
    assert len(set(named)) >= 15  # the walk reaches the named kinds, not only the families
    for kind in named:
        assert [f for f in families if issubclass(kind, f)] != [], kind
        assert len([f for f in families if issubclass(kind, f)]) == 1, kind
