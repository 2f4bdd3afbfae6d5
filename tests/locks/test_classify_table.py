"""The classification table of locks/classify.py, row by row: every identity-server and API status (and the
statuses next to each bound), Salto's words and codes in their order of precedence, transport failures, and the
readers of Salto's headers and bodies. The client's own tests (tests/locks/test_client.py) cover the same
answers through HTTP; these name each row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import pytest
import time_machine

from locks import errors
from locks.classify import (
    MAX_MESSAGE_CHARS,
    api_error,
    error_fields,
    json_or_none,
    retry_after,
    server_date,
    short,
    token_error,
    transport_error,
)


def scrub(text: str) -> str:
    return text.replace("hunter2", "***")


def token_answer(status: int, body: object = None, *, text: str | None = None, **headers: str) -> errors.SaltoError:
    response = (
        httpx2.Response(status, text=text, headers=headers)
        if text is not None
        else httpx2.Response(status, json=body, headers=headers)
    )
    return token_error(response, scrub=scrub)


def api_answer(
    status: int,
    code: str | int | None = None,
    message: str | None = None,
    *,
    not_found: type[errors.SaltoPermanentError] | None = None,
    **headers: str,
) -> errors.SaltoError:
    body: dict[str, object] = {}
    if code is not None:
        body["ErrorCode"] = code
    if message is not None:
        body["Message"] = message
    return api_error(httpx2.Response(status, json=body, headers=headers), not_found=not_found, scrub=scrub)


# --- the identity server (token endpoint) ------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["invalid_client", "invalid_grant", "invalid_scope"])
def test_an_oauth_error_names_the_credential_whatever_the_status(reason: str) -> None:
    for status in (400, 401, 404, 503):
        # when
        error = token_answer(status, {"error": reason, "error_description": "says hunter2"})
        # then
        assert type(error) is errors.SaltoAuthError
        assert (error.reason, error.kind, error.http_status, error.error_code) == (
            reason,
            f"auth_{reason}",
            status,
            reason,
        )
        assert error.salto_message == "says ***"
        assert error.sent is False


def test_an_oauth_error_without_a_description_has_no_message() -> None:
    error = token_answer(400, {"error": "invalid_grant"})
    assert isinstance(error, errors.SaltoAuthError)
    assert error.salto_message is None
    assert "username or password" in str(error)


@pytest.mark.parametrize("status", [404, 429, 500, 502, 503, 599])
def test_an_identity_server_that_answers_404_429_or_5xx_is_unreachable(status: int) -> None:
    # when
    error = token_answer(status, text="  try   later  ", **{"Retry-After": "12"})
    # then
    assert type(error) is errors.IdentityUnreachable
    assert isinstance(error, errors.SaltoTransientError)
    assert (error.kind, error.http_status, error.salto_message, error.retry_after) == (
        "identity_unreachable",
        status,
        "try later",
        12.0,
    )
    assert error.sent is False


@pytest.mark.parametrize("status", [400, 401, 403, 405, 428, 430, 499])
def test_any_other_identity_server_refusal_is_an_identity_error(status: int) -> None:
    # when
    error = token_answer(status, {"error": "unsupported_grant_type"})
    # then
    assert type(error) is errors.SaltoAuthError
    assert (error.reason, error.http_status, error.error_code) == ("identity_error", status, "unsupported_grant_type")
    assert error.salto_message == '{"error":"unsupported_grant_type"}'
    assert error.sent is False


def test_an_identity_error_without_a_body_has_no_code_or_message() -> None:
    error = token_answer(403, text="")
    assert isinstance(error, errors.SaltoAuthError)
    assert (error.reason, error.error_code, error.salto_message) == ("identity_error", None, None)


def test_an_unreachable_identity_server_without_a_body_has_no_message_or_retry_after() -> None:
    error = token_answer(503, text="")
    assert isinstance(error, errors.IdentityUnreachable)
    assert (error.salto_message, error.retry_after) == (None, None)


def test_the_identity_servers_text_is_scrubbed() -> None:
    error = token_answer(403, text="password hunter2 refused")
    assert error.salto_message == "password *** refused"


# --- the Connect API ---------------------------------------------------------------------------------------


def test_a_429_was_refused_before_acting_and_carries_retry_after() -> None:
    error = api_answer(429, None, "quota exceeded", **{"Retry-After": "7"})
    assert type(error) is errors.SaltoTransientError
    assert (error.kind, error.http_status, error.retry_after, error.salto_message) == (
        "rate_limited",
        429,
        7.0,
        "quota exceeded",
    )
    assert error.sent is True


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_a_5xx_may_have_acted(status: int) -> None:
    error = api_answer(status, "9999", "boom", **{"Retry-After": "3"})
    assert type(error) is errors.OutcomeUnknown
    assert (error.kind, error.http_status, error.error_code, error.retry_after) == ("server_error", status, "9999", 3.0)


def test_a_401_is_a_rejected_token() -> None:
    error = api_answer(401, None, "expired")
    assert type(error) is errors.SaltoAuthError
    assert (error.reason, error.http_status, error.salto_message) == ("unauthorized", 401, "expired")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Request execution failed with code: otp_blocked", errors.OtpBlocked),
        ("Request execution failed with code: otp_invalid", errors.OtpInvalid),
        ("Request execution failed with code: pin_not_changed", errors.PinNotChanged),
        ("Request execution failed with code: command_forbidden", errors.CommandForbidden),
        ("REQUEST EXECUTION FAILED WITH CODE: OTP_INVALID", errors.OtpInvalid),
        # the first word of the table wins, and an OTP word wins over "offline"
        ("otp_invalid then otp_blocked", errors.OtpBlocked),
        ("pin_not_changed and command_forbidden", errors.PinNotChanged),
        ("otp_invalid while the lock is offline", errors.OtpInvalid),
    ],
)
@pytest.mark.parametrize("status", [400, 403, 404, 409])
def test_salto_s_words_decide_before_the_status(
    message: str, kind: type[errors.SaltoPermanentError], status: int
) -> None:
    error = api_answer(status, "3102", message, not_found=errors.LockNotFound)
    assert type(error) is kind
    assert (error.http_status, error.error_code) == (status, "3102")


def test_2202_with_otp_is_an_invalid_otp_and_without_it_is_not() -> None:
    assert type(api_answer(404, "2202", "Otp is invalid")) is errors.OtpInvalid
    assert type(api_answer(404, 2202, "Otp is invalid")) is errors.OtpInvalid
    assert type(api_answer(404, "2202", "Lock not found", not_found=errors.LockNotFound)) is errors.LockNotFound
    assert type(api_answer(404, "2201", "Otp is invalid", not_found=errors.LockNotFound)) is errors.LockNotFound


def test_2203_with_secret_was_already_issued_and_without_it_lacks_permission() -> None:
    assert type(api_answer(403, "2203", "Cannot get first secret for an already activated Iq.")) is (
        errors.SecretAlreadyIssued
    )
    assert type(api_answer(403, "2203", "Forbidden")) is errors.AccountLacksPermission
    assert type(api_answer(403, "2204", "the secret")) is errors.AccountLacksPermission


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Request execution failed with code: lock_offline", errors.LockOffline),
        ("Request execution failed with code: iq_offline", errors.IQOffline),
        ("The IQ offline, try later", errors.IQOffline),
        ("Device is OFFLINE", errors.LockOffline),
    ],
)
@pytest.mark.parametrize("status", [400, 403, 404, 409])
def test_offline_in_the_message_is_the_lock_or_its_iq_whatever_the_status(
    message: str, kind: type[errors.SaltoPermanentError], status: int
) -> None:
    error = api_answer(status, "3102", message, not_found=errors.LockNotFound)
    assert type(error) is kind
    assert isinstance(error, errors.DeviceOffline)


def test_a_403_is_a_missing_permission() -> None:
    error = api_answer(403, "2203", "Forbidden")
    assert (type(error), error.kind, error.salto_message) == (
        errors.AccountLacksPermission,
        "permission_denied",
        "Forbidden",
    )


def test_a_404_is_the_callers_not_found_or_a_plain_not_found() -> None:
    assert type(api_answer(404, None, "nope", not_found=errors.IQNotFound)) is errors.IQNotFound
    plain = api_answer(404, None, "nope")
    assert (type(plain), plain.kind, plain.http_status) == (errors.SaltoPermanentError, "not_found", 404)


@pytest.mark.parametrize("status", [400, 405, 409, 422, 499])
def test_any_other_answer_is_a_plain_refusal(status: int) -> None:
    error = api_answer(status, "1234", "no", not_found=errors.LockNotFound)
    assert (type(error), error.kind, error.http_status, error.error_code, error.salto_message) == (
        errors.SaltoPermanentError,
        "permanent",
        status,
        "1234",
        "no",
    )
    assert error.sent is True


def test_an_api_message_is_scrubbed_and_an_empty_one_is_none() -> None:
    assert api_answer(409, None, "pin hunter2").salto_message == "pin ***"
    assert api_answer(409, None, None).salto_message is None
    assert api_answer(409, None, None).error_code is None


# --- transport failures --------------------------------------------------------------------------------------

REQUEST = httpx2.Request("PATCH", "https://api.test/v1.1/sites/s/locks/l/locking")


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ConnectError("refused", request=REQUEST),
        httpx2.ConnectTimeout("slow", request=REQUEST),
        httpx2.ReadTimeout("slow", request=REQUEST),
        httpx2.RemoteProtocolError("closed", request=REQUEST),
    ],
)
def test_any_transport_failure_of_the_identity_server_is_unreachable_and_sent_nothing(
    exc: httpx2.TransportError,
) -> None:
    error = transport_error(exc, identity=True)
    assert type(error) is errors.IdentityUnreachable
    assert error.sent is False
    timeout = isinstance(exc, httpx2.TimeoutException)
    assert ("did not answer in time" in str(error)) is timeout
    assert (type(exc).__name__ in str(error)) is not timeout


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx2.ConnectError("refused", request=REQUEST), "connection_error"),
        (httpx2.UnsupportedProtocol("ftp", request=REQUEST), "connection_error"),
        (httpx2.ConnectTimeout("slow", request=REQUEST), "connect_timeout"),
        (httpx2.PoolTimeout("busy", request=REQUEST), "connect_timeout"),
    ],
)
def test_an_api_request_that_never_connected_sent_nothing(exc: httpx2.TransportError, kind: str) -> None:
    error = transport_error(exc, identity=False)
    assert type(error) is errors.SaltoTransientError
    assert (error.kind, error.sent) == (kind, False)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx2.ReadTimeout("slow", request=REQUEST), "timeout"),
        (httpx2.WriteTimeout("slow", request=REQUEST), "timeout"),
        (httpx2.RemoteProtocolError("closed", request=REQUEST), "connection_lost"),
        (httpx2.ReadError("reset", request=REQUEST), "connection_lost"),
    ],
)
def test_an_api_request_lost_after_it_may_have_been_written_may_have_acted(
    exc: httpx2.TransportError, kind: str
) -> None:
    error = transport_error(exc, identity=False)
    assert type(error) is errors.OutcomeUnknown
    assert (error.kind, error.sent) == (kind, True)


# --- reading bodies ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"ErrorCode": 3102, "Message": "m"}, ("3102", "m")),
        ({"errorcode": "3102", "detail": "d"}, ("3102", "d")),
        ({"ERRORCODE": "1", "title": "t"}, ("1", "t")),
        ({"Message": "", "detail": "second"}, (None, "second")),
        ({"other": 1}, (None, "")),
        ("a plain JSON string", (None, "a plain JSON string")),
    ],
)
def test_error_fields_read_salto_s_code_and_message(body: object, expected: tuple[str | None, str]) -> None:
    assert error_fields(httpx2.Response(400, json=body)) == expected


def test_error_fields_read_plain_text_but_not_html() -> None:
    quota = "API calls quota exceeded! maximum admitted 3 per 1m."
    assert error_fields(httpx2.Response(429, text=quota)) == (None, quota)
    html = httpx2.Response(502, text="<html>bad gateway</html>", headers={"content-type": "text/html; charset=utf-8"})
    assert error_fields(html) == (None, "")
    assert error_fields(httpx2.Response(400, json=[1, 2])) == (None, "[1,2]")


def test_json_or_none() -> None:
    assert json_or_none(httpx2.Response(200)) is None
    assert json_or_none(httpx2.Response(200, text="{not json")) is None
    assert json_or_none(httpx2.Response(200, json={"a": 1})) == {"a": 1}


def test_short_collapses_spaces_and_cuts_at_300_characters() -> None:
    assert short("  a \n\t b  ") == "a b"
    exactly = "x" * MAX_MESSAGE_CHARS
    assert short(exactly) == exactly
    assert short(exactly + "y") == exactly + "…"
    assert MAX_MESSAGE_CHARS == 300


# --- reading headers --------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 7.5 ", 7.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("3600", 3600.0),
        ("3601", 3600.0),
        ("1e20", 3600.0),
        ("inf", 3600.0),
        ("-inf", 0.0),
        ("nan", None),
        ("soon", None),
        ("Wed, 25 Nov 2026 12:00:10 GMT", 10.0),
        ("Wed, 25 Nov 2026 12:00:10 -0000", 10.0),
        ("Wed, 25 Nov 2026 11:59:00 GMT", 0.0),
        ("Wed, 25 Nov 2026 14:00:00 GMT", 3600.0),
    ],
)
def test_retry_after_is_seconds_or_a_date_clamped_to_an_hour(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, now=NOW) == seconds


def test_retry_after_as_a_date_counts_from_the_given_moment_or_from_now() -> None:
    date = "Wed, 25 Nov 2026 12:00:10 GMT"
    assert retry_after(date, now=NOW - timedelta(seconds=20)) == 30.0
    with time_machine.travel(NOW, tick=False):
        assert retry_after(date) == 10.0


def test_server_date_reads_salto_s_date_header() -> None:
    assert server_date(httpx2.Response(200)) is None
    assert server_date(httpx2.Response(200, headers={"Date": "yesterday"})) is None
    assert server_date(httpx2.Response(200, headers={"Date": "Wed, 25 Nov 2026 12:00:10 GMT"})) == NOW + timedelta(
        seconds=10
    )
    naive = server_date(httpx2.Response(200, headers={"Date": "Wed, 25 Nov 2026 12:00:10 -0000"}))
    assert naive == NOW + timedelta(seconds=10)
    assert naive is not None
    assert naive.tzinfo is not None
