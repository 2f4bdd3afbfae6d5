from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import pytest
import pytest_httpx2  # noqa: F401  (registers the httpcore2 mocker with respx)
import respx
from django.core.management import CommandError, call_command

from tests.fake_salto import (
    API,
    IQ_ID,
    LOCKS_URL,
    PASSWORD,
    SITE_ID,
    SITE_UID,
    SITES,
    TOKEN_URL,
    USERNAME,
    assert_token_request,
    token_body,
)

ARGS = ["--environment", "acceptance", "--site-uid", SITE_UID, "--username", USERNAME]


def _lock(n: int, online: bool = True) -> dict[str, object]:
    return {
        "id": f"lock-{n}",
        "customer_reference": f"Room {n}",
        "online": online,
        "iq": {"id": IQ_ID, "is_online": True},
    }


@pytest.fixture
def salto(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.Router]:
    # Like the httpx2_mock fixture, but a failing step leaves the later routes of the site unused.
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        monkeypatch.setenv("SALTO_KS_PASSWORD", PASSWORD)
        _mock_site(router)
        yield router


def _mock_site(httpx2_mock: respx.Router) -> None:
    httpx2_mock.get(SITES).respond(
        200, json={"items": [{"id": SITE_ID, "site_uid": SITE_UID, "customer_reference": "Example"}]}
    )
    httpx2_mock.get(f"{API}/v1.1/sites/{SITE_ID}/iqs").respond(
        200, json={"items": [{"id": IQ_ID, "customer_reference": "IQ 01", "online": True, "otp_enabled": True}]}
    )
    httpx2_mock.get(LOCKS_URL, params={"$skip": "3"}).respond(
        200, json={"items": [_lock(4), _lock(5, online=False)], "next_page_link": None}
    )
    httpx2_mock.get(LOCKS_URL).respond(
        200, json={"items": [_lock(1), _lock(2), _lock(3)], "next_page_link": f"{LOCKS_URL}?$skip=3"}
    )


def test_check_prints_token_site_iqs_and_all_locks(salto: respx.Router) -> None:
    # given
    token = salto.post(TOKEN_URL).respond(200, json=token_body())
    out = StringIO()
    # when
    call_command("salto_ks", "check", *ARGS, stdout=out)
    # then
    text = out.getvalue()
    assert_token_request(token.calls.last.request)
    assert "token: OK" in text
    assert f"resolved to {SITE_ID}" in text
    assert "IQ 01  online" in text
    for n in range(1, 6):
        assert f"lock-{n}  Room {n}" in text
    assert "lock-5  Room 5  OFFLINE" in text
    assert "all steps OK" in text
    assert PASSWORD not in text


def test_check_with_a_wrong_password_names_the_failing_step(salto: respx.Router) -> None:
    # given
    salto.post(TOKEN_URL).respond(
        400, json={"error": "invalid_grant", "error_description": "invalid_username_or_password"}
    )
    out = StringIO()
    # when
    with pytest.raises(CommandError) as info:
        call_command("salto_ks", "check", *ARGS, stdout=out)
    # then
    message = str(info.value)
    assert "step 'token' failed" in message
    assert "username or password" in message
    assert PASSWORD not in message
    assert PASSWORD not in out.getvalue()


def test_check_names_an_unknown_site(salto: respx.Router) -> None:
    # given
    salto.post(TOKEN_URL).respond(200, json=token_body())
    # when
    with pytest.raises(CommandError, match="step 'site' failed"):
        call_command(
            "salto_ks",
            "check",
            "--environment",
            "acceptance",
            "--site-uid",
            "DE4520168385",
            "--username",
            USERNAME,
            stdout=StringIO(),
        )


def test_locks_lists_the_locks_only(salto: respx.Router) -> None:
    # given
    salto.post(TOKEN_URL).respond(200, json=token_body())
    out = StringIO()
    # when
    call_command("salto_ks", "locks", *ARGS, stdout=out)
    # then
    text = out.getvalue()
    assert "locks: 5" in text
    assert "token:" not in text
    assert "iqs:" not in text
