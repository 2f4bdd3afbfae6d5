"""Every console button's service against Salto KS mocked at the transport, including each failure message."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import respx
import time_machine

from integrations.demo import demo_integration_prefill
from integrations.models import CachedLock, Integration, LockMapping
from integrations.selectors import activation_missing_steps
from integrations.services.console import access_test, iq_pin_get, iq_pin_set, locks_refresh, site_resolve_id
from integrations.services.lifecycle import integration_activate, integration_config_save, integration_deactivate
from locks.otp import compute_otp, pin_delta
from tests.fake_salto import (
    ACCESS_TOKEN,
    ACTIVATED_IQS_URL,
    IQ_ID,
    IQ_URL,
    LOCKS_URL,
    OTHER_IQ_ID,
    PASSWORD,
    PIN,
    PROD_TOKEN_URL,
    SECRET,
    SITE_ID,
    SITE_UID,
    SITES,
    TOKEN_URL,
    USERNAME,
    activated_iqs_json,
    lock_json,
    salto_error,
    token_body,
)
from tests.integrations.console.conftest import make_integration, make_ready

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=UTC)


def site(uid: str = SITE_UID, id_: str = SITE_ID) -> dict[str, object]:
    return {"id": id_, "site_uid": uid, "customer_reference": "Studios Amsterdam"}


# --- Resolve site ID ----------------------------------------------------------------------------------


def test_resolve_stores_the_site_id(salto: respx.Router, integration: Integration) -> None:
    # given
    route = salto.get(SITES).respond(200, json={"items": [site()], "next_page_link": None})
    # when
    outcome = site_resolve_id(integration=integration)
    # then
    assert outcome.ok
    assert outcome.message == f"Site ID resolved: Site UID {SITE_UID} is site “Studios Amsterdam” with id {SITE_ID}."
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.url.params["$filter"] == f"site_uid eq '{SITE_UID}'"
    integration.refresh_from_db()
    assert integration.site_id == SITE_ID
    assert integration.site_resolved_at is not None


def test_resolve_says_not_found_with_the_manuals_hint(salto: respx.Router, integration: Integration) -> None:
    salto.get(SITES).respond(200, json={"items": [site("DE4520168385")]})
    outcome = site_resolve_id(integration=integration)
    assert not outcome.ok
    assert f"Site UID {SITE_UID} was not found" in outcome.message
    assert "Environment matches it" in outcome.message
    assert "No site id after resolving → check the client credentials" in outcome.message
    integration.refresh_from_db()
    assert integration.site_id == ""


def test_resolve_says_found_more_than_once(salto: respx.Router, integration: Integration) -> None:
    salto.get(SITES).respond(200, json={"items": [site(), site(id_="00000000-0000-0000-0000-000000000bad")]})
    outcome = site_resolve_id(integration=integration)
    assert not outcome.ok
    assert f"Site UID {SITE_UID} was found more than once" in outcome.message
    assert "The Site ID was not changed" in outcome.message


def test_resolve_reports_a_bad_account(httpx2_mock: respx.Router, integration: Integration) -> None:
    httpx2_mock.post(TOKEN_URL).respond(400, json={"error": "invalid_grant"})
    outcome = site_resolve_id(integration=integration)
    assert not outcome.ok
    assert outcome.message.startswith("Bad account: Salto KS rejected the username or password in Acceptance")
    assert "an acceptance account does not exist in production" in outcome.message


def test_resolve_in_the_wrong_environment_names_the_environment(httpx2_mock: respx.Router) -> None:
    # given an acceptance account configured as Production
    integration = make_integration(environment=Integration.EnvironmentChoice.PRODUCTION)
    route = httpx2_mock.post(PROD_TOKEN_URL).respond(400, json={"error": "invalid_grant"})
    # when
    outcome = site_resolve_id(integration=integration)
    # then it asked production's identity server, and says so
    assert route.called
    assert "in Production (live)" in outcome.message
    assert "belongs to the selected Environment" in outcome.message


def test_resolve_reports_bad_client_credentials(httpx2_mock: respx.Router, integration: Integration) -> None:
    httpx2_mock.post(TOKEN_URL).respond(401, json={"error": "invalid_client"})
    outcome = site_resolve_id(integration=integration)
    assert "does not accept the platform's client credentials for Acceptance (testing) (invalid_client)" in (
        outcome.message
    )
    assert "Check the client credentials" in outcome.message


def test_resolve_error_points_at_the_accounts_rights(salto: respx.Router, integration: Integration) -> None:
    salto.get(SITES).respond(403, json=salto_error("2203", "User does not have permission for this operation"))
    outcome = site_resolve_id(integration=integration)
    assert not outcome.ok
    assert outcome.message.startswith("Error while resolving the site:")
    assert "Check the account's rights in Salto" in outcome.message


def test_resolve_other_error_says_check_the_rights(salto: respx.Router, integration: Integration) -> None:
    salto.get(SITES).respond(409, json=salto_error("9999", "Something odd"))
    outcome = site_resolve_id(integration=integration)
    assert "Salto says: Something odd" in outcome.message
    assert "An error while resolving → check the account's rights in Salto." in outcome.message


def test_resolve_when_salto_is_down(salto: respx.Router, integration: Integration) -> None:
    salto.get(SITES).respond(503, text="Service Unavailable")
    outcome = site_resolve_id(integration=integration)
    assert outcome.message.startswith("Salto KS could not be reached while resolving the site")
    assert "try again in a moment" in outcome.message


def test_resolve_refuses_a_malformed_site_uid_without_calling_salto(httpx2_mock: respx.Router) -> None:
    integration = make_integration(site_uid="NL' or 1 eq 1")
    outcome = site_resolve_id(integration=integration)
    assert not outcome.ok
    assert "check the Site UID" in outcome.message
    assert not httpx2_mock.calls


def test_resolve_discards_the_answer_when_the_identity_changed_meanwhile(
    salto: respx.Router, integration: Integration
) -> None:
    # given: another tab switches to production while Salto answers
    def answer(request: object) -> respx.MockResponse:
        Integration.objects.filter(pk=integration.pk).update(environment="production")
        return respx.MockResponse(200, json={"items": [site()]})

    salto.get(SITES).mock(side_effect=answer)
    outcome = site_resolve_id(integration=integration)
    assert not outcome.ok
    assert "the answer was discarded" in outcome.message
    integration.refresh_from_db()
    assert integration.site_id == ""


# --- Test / request access ----------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_access_ok_shows_the_expiry_in_local_time(salto: respx.Router, integration: Integration) -> None:
    outcome = access_test(integration=integration)
    assert outcome.ok
    # 13:00 UTC + 1 h is 15:00 in Amsterdam in November
    assert outcome.message == (
        f"Access OK: Salto KS issued a token for {USERNAME} in Acceptance (testing), "
        "valid until 25-11-2026 15:00 (Europe/Amsterdam)."
    )
    integration.refresh_from_db()
    assert integration.access_test_ok is True
    assert integration.access_tested_at == NOW
    assert integration.access_test_message == outcome.message
    form = dict(x.split("=", 1) for x in salto["token"].calls.last.request.content.decode().split("&"))
    assert form["grant_type"] == "password"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "invalid_grant"}, "Access failed: Bad account: Salto KS rejected the username or password"),
        (401, {"error": "invalid_client"}, "Access failed: Salto KS does not accept the platform's client credentials"),
        (400, {"error": "invalid_scope"}, "Access failed: The platform's client may not request the Connect API scope"),
        (503, {"x": 1}, "Access failed: The Salto KS identity server for Acceptance (testing) cannot be reached"),
        (418, {"error": "teapot"}, "Access failed: Salto KS refused access: The Salto KS identity server refused"),
    ],
)
def test_access_failure_gives_the_exact_reason(
    httpx2_mock: respx.Router, integration: Integration, status: int, body: dict[str, object], expected: str
) -> None:
    httpx2_mock.post(TOKEN_URL).respond(status, json=body)
    outcome = access_test(integration=integration)
    assert not outcome.ok
    assert outcome.message.startswith(expected)
    integration.refresh_from_db()
    assert integration.access_test_ok is False
    assert integration.access_test_message.startswith(expected)


def test_access_test_never_reuses_a_cached_token(salto: respx.Router, integration: Integration) -> None:
    access_test(integration=integration)
    access_test(integration=integration)
    assert salto["token"].call_count == 2


# --- GET PIN ------------------------------------------------------------------------------------------


def test_get_pin_fetches_the_secret_once_and_fills_current_pin(salto: respx.Router, resolved: Integration) -> None:
    # given
    secret_route = salto.get(IQ_URL + "/secret").respond(200, json={"secret": SECRET})
    pin_route = salto.get(IQ_URL + "/pin").respond(200, json={"pin": PIN})
    # when
    outcome = iq_pin_get(integration=resolved)
    # then
    assert outcome.ok
    assert outcome.message.startswith("GET PIN: the IQ's current PIN was filled into current pin")
    assert outcome.details == ["The IQ secret was fetched and stored encrypted."]
    assert PIN not in outcome.text
    assert SECRET not in outcome.text
    assert secret_route.call_count == 1
    assert pin_route.call_count == 1
    resolved.refresh_from_db()
    assert (resolved.iq_secret, resolved.current_pin) == (SECRET, PIN)
    # when clicked again, the stored secret is used, not fetched
    iq_pin_get(integration=resolved)
    assert secret_route.call_count == 1
    assert pin_route.call_count == 2


def test_get_pin_stores_the_secret_encrypted(salto: respx.Router, resolved: Integration) -> None:
    from django.db import connection

    salto.get(IQ_URL + "/secret").respond(200, json={"secret": SECRET})
    salto.get(IQ_URL + "/pin").respond(200, json={"pin": PIN})
    iq_pin_get(integration=resolved)
    with connection.cursor() as cursor:
        cursor.execute("SELECT iq_secret, current_pin FROM integrations_integration WHERE id = %s", [resolved.pk])
        raw_secret, raw_pin = cursor.fetchone()
    assert SECRET not in raw_secret
    assert raw_secret.startswith("gAAAA")
    assert PIN not in raw_pin


def test_get_pin_when_the_account_was_already_activated(salto: respx.Router, resolved: Integration) -> None:
    salto.get(IQ_URL + "/secret").respond(
        403, json=salto_error("2203", "Cannot get first secret for an already activated Iq.")
    )
    pin_route = salto.get(IQ_URL + "/pin")
    outcome = iq_pin_get(integration=resolved)
    assert not outcome.ok
    assert f"account {USERNAME} was already activated at IQ {IQ_ID}" in outcome.message
    assert "Reset the IQ user of this account in Salto KS, then click GET PIN again." in outcome.message
    assert not pin_route.called
    resolved.refresh_from_db()
    assert resolved.iq_secret == ""


def test_get_pin_204_says_where_salto_sent_the_pin(salto: respx.Router, resolved: Integration) -> None:
    resolved.iq_secret = SECRET
    resolved.save()
    route = salto.get(IQ_URL + "/pin").respond(204)
    outcome = iq_pin_get(integration=resolved)
    assert "send_email" not in route.calls.last.request.url.params
    assert outcome.ok
    assert outcome.level == "warning"
    assert outcome.message == (
        f"GET PIN: Salto KS sent the current PIN by SMS to the phone number of account {USERNAME}. Type it into "
        "current pin, enter the desired 4-digit PIN in new pin and click Set PIN."
    )
    resolved.refresh_from_db()
    assert resolved.current_pin == ""


def test_get_pin_keeps_the_secret_when_the_pin_request_fails(salto: respx.Router, resolved: Integration) -> None:
    salto.get(IQ_URL + "/secret").respond(200, json={"secret": SECRET})
    salto.get(IQ_URL + "/pin").respond(
        403, json=salto_error("3102", "Request execution failed with code: command_forbidden")
    )
    outcome = iq_pin_get(integration=resolved)
    assert not outcome.ok
    assert "refuses to send the PIN because account" in outcome.message
    assert "type it into current pin" in outcome.message
    resolved.refresh_from_db()
    assert resolved.iq_secret == SECRET


def test_get_pin_with_an_unknown_iq(salto: respx.Router, resolved: Integration) -> None:
    salto.get(IQ_URL + "/secret").respond(404, json=salto_error("2202", "Iq not found"))
    outcome = iq_pin_get(integration=resolved)
    assert outcome.message.startswith(f"GET PIN: IQ id {IQ_ID} was not found on this site")


def test_get_pin_needs_a_site_and_an_iq(httpx2_mock: respx.Router) -> None:
    integration = make_integration(iq_id="")
    outcome = iq_pin_get(integration=integration)
    assert outcome.message == (
        "GET PIN: Resolve site ID first (Authentication tab). Enter the IQ id (the UUID of the IQ gateway) first."
    )
    assert not httpx2_mock.calls


def test_get_pin_when_salto_is_down(salto: respx.Router, resolved: Integration) -> None:
    salto.get(IQ_URL + "/secret").respond(502)
    outcome = iq_pin_get(integration=resolved)
    assert outcome.message.startswith("GET PIN failed: Salto KS could not be reached while getting the PIN")


# --- Set PIN ------------------------------------------------------------------------------------------


@pytest.fixture
def pin_ready(resolved: Integration) -> Integration:
    resolved.iq_secret = SECRET
    resolved.current_pin = PIN
    resolved.save()
    return resolved


@time_machine.travel(NOW, tick=False)
def test_set_pin_signs_with_the_otp_and_activates(salto: respx.Router, pin_ready: Integration) -> None:
    # given
    route = salto.put(IQ_URL + "/pin").respond(204)
    confirmation = salto.get(ACTIVATED_IQS_URL).respond(200, json=activated_iqs_json(at="2026-11-25T13:00:00Z"))
    # when
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    # then the request proves the current PIN and carries the delta to the new one
    assert json.loads(route.calls.last.request.content) == {
        "otp": compute_otp(secret=SECRET, pin=PIN, at=NOW),
        "delta": pin_delta(old_pin=PIN, new_pin="9876"),
    }
    assert outcome.ok
    assert outcome.message == (
        "IQ is activated (since 25-11-2026 14:00 (Europe/Amsterdam)). The new PIN is stored as current pin."
    )
    pin_ready.refresh_from_db()
    assert pin_ready.current_pin == "9876"
    assert pin_ready.activation_state == Integration.ActivationState.ACTIVATED
    assert pin_ready.activated_at == NOW
    # and Salto's own record of the activation was asked before the new PIN became the current one
    assert confirmation.call_count == 1


@pytest.mark.parametrize(
    ("answer", "listed", "fragment"),
    [
        ({"status_code": 200, "json": [1, 2, 3]}, activated_iqs_json(activated=False), "does not show this account"),
        ({"status_code": 200, "json": [1, 2, 3]}, activated_iqs_json(at="2026-01-01T00:00:00Z"), "does not show"),
        # a listing that does not say when (or whether) the account was activated proves nothing either
        ({"status_code": 200, "json": [1, 2, 3]}, {"items": [{"iq_id": IQ_ID}]}, "does not show"),
        ({"status_code": 200, "text": "<html>proxy</html>"}, None, "may or may not have taken the new PIN"),
        ({"status_code": 200, "text": "x" * 5_000_000}, None, "may or may not have taken the new PIN"),
    ],
    ids=["json-junk-not-activated", "json-junk-stale-activation", "json-junk-no-date", "html", "5-mb-of-text"],
)
def test_set_pin_keeps_the_old_pin_unless_salto_confirms_the_activation(
    salto: respx.Router, pin_ready: Integration, answer: dict[str, Any], listed: dict[str, Any] | None, fragment: str
) -> None:
    # given Set PIN answered with something that is not Salto's documented 204
    salto.put(IQ_URL + "/pin").mock(return_value=respx.MockResponse(**answer))
    if listed is not None:
        salto.get(ACTIVATED_IQS_URL).respond(200, json=listed)
    # when
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    # then the operator is told, and the stored PIN is still the one the IQ had
    assert not outcome.ok
    assert fragment in outcome.message
    assert "old PIN is kept as current pin" in outcome.message
    pin_ready.refresh_from_db()
    assert (pin_ready.current_pin, pin_ready.is_activated) == (PIN, False)


def test_set_pin_with_the_identity_server_down_says_nothing_was_sent(
    salto: respx.Router, pin_ready: Integration
) -> None:
    salto["token"].respond(503, text="down")
    route = salto.put(IQ_URL + "/pin").respond(204)
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    assert not outcome.ok
    assert "cannot be reached" in outcome.message
    assert outcome.message.endswith("The new PIN was not sent; the current pin is unchanged.")
    assert route.call_count == 0


def test_set_pin_with_a_wrong_current_pin_changes_nothing(salto: respx.Router, pin_ready: Integration) -> None:
    salto.put(IQ_URL + "/pin").respond(400, json=salto_error("3102", "Request execution failed with code: otp_invalid"))
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    assert not outcome.ok
    assert outcome.message.startswith("Set PIN failed — OTP rejected: the current pin is wrong")
    assert "Nothing was changed." in outcome.message
    assert "Salto KS said: Request execution failed with code: otp_invalid." in outcome.message
    pin_ready.refresh_from_db()
    assert pin_ready.current_pin == PIN
    assert pin_ready.activation_state == Integration.ActivationState.NOT_ACTIVATED
    assert pin_ready.activated_at is None


def _otp_invalid_dated(seconds_off: float) -> respx.MockResponse:
    from email.utils import format_datetime

    from django.utils import timezone

    salto_date = format_datetime(timezone.now() + timedelta(seconds=seconds_off), usegmt=True)
    return respx.MockResponse(
        400,
        json=salto_error("3102", "Request execution failed with code: otp_invalid"),
        headers={"Date": salto_date},
    )


def test_set_pin_rejected_while_the_clocks_disagree_is_reported_as_the_clock_not_the_pin(
    salto: respx.Router, pin_ready: Integration
) -> None:
    # given Salto's clock is 5 minutes behind, which only the rejection's Date header shows
    salto.put(IQ_URL + "/pin").mock(return_value=_otp_invalid_dated(-300))
    # when
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    # then the operator is not sent retyping PINs: the code was built for the wrong time
    assert not outcome.ok
    assert "this server's clock is -300 s off Salto's" in outcome.message
    assert "the current pin may well be right" in outcome.message
    assert "the current pin is wrong" not in outcome.message
    pin_ready.refresh_from_db()
    assert (pin_ready.current_pin, pin_ready.is_activated) == (PIN, False)


def test_set_pin_rejected_with_an_otp_built_at_saltos_time_is_the_pin(
    salto: respx.Router, pin_ready: Integration
) -> None:
    from email.utils import format_datetime

    from django.utils import timezone

    # given the token's answer already told Salto's time (5 minutes behind), so the OTP was built at that time
    behind = format_datetime(timezone.now() - timedelta(seconds=300), usegmt=True)
    salto["token"].mock(return_value=respx.MockResponse(200, json=token_body(), headers={"Date": behind}))
    route = salto.put(IQ_URL + "/pin").mock(return_value=_otp_invalid_dated(-300))
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    # then the OTP carried Salto's time and its rejection is the PIN's
    sent = json.loads(route.calls.last.request.content)["otp"]
    assert sent != compute_otp(secret=SECRET, pin=PIN, at=timezone.now())
    assert outcome.message.startswith("Set PIN failed — OTP rejected: the current pin is wrong")


def test_set_pin_when_otps_are_blocked(salto: respx.Router, pin_ready: Integration) -> None:
    salto.put(IQ_URL + "/pin").respond(403, json=salto_error("3102", "Request execution failed with code: otp_blocked"))
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    assert outcome.message.startswith("Set PIN failed: Salto KS has blocked OTPs for this account")
    assert "wait about 20 minutes" in outcome.message


def test_set_pin_when_salto_times_out_explains_the_uncertainty(salto: respx.Router, pin_ready: Integration) -> None:
    salto.put(IQ_URL + "/pin").respond(504)
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    assert "The IQ may or may not have taken the new PIN" in outcome.message
    pin_ready.refresh_from_db()
    assert pin_ready.current_pin == PIN


def test_set_pin_other_refusal_shows_salto_reason(salto: respx.Router, pin_ready: Integration) -> None:
    salto.put(IQ_URL + "/pin").respond(400, json=salto_error("1101", "Validation failed: delta must be 4 digits."))
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    assert outcome.message.startswith("Set PIN failed: Error while setting the PIN:")
    assert "Salto says: Validation failed: delta must be 4 digits." in outcome.message
    assert outcome.message.endswith("Nothing was changed.")


@pytest.mark.parametrize("new_pin", ["", "123", "12345", "12a4"])
def test_set_pin_requires_four_digits_in_new_pin(
    httpx2_mock: respx.Router, pin_ready: Integration, new_pin: str
) -> None:
    outcome = iq_pin_set(integration=pin_ready, new_pin=new_pin)
    assert outcome.message == "Set PIN: Enter the desired 4-digit PIN in new pin. Nothing was changed."
    assert not httpx2_mock.calls


def test_set_pin_requires_a_current_pin_and_a_secret(httpx2_mock: respx.Router, resolved: Integration) -> None:
    outcome = iq_pin_set(integration=resolved, new_pin="9876")
    assert outcome.message == (
        "Set PIN: There is no IQ secret yet: click GET PIN first. The current pin is empty: click GET PIN, or type "
        "the PIN Salto KS sent you into current pin. Nothing was changed."
    )
    assert not httpx2_mock.calls


# --- GET locks ----------------------------------------------------------------------------------------


def test_get_locks_follows_every_page_and_reports(salto: respx.Router, resolved: Integration, objects: dict) -> None:
    # given: a mapping to a lock that was removed from the site, and one to a renamed lock
    LockMapping.objects.create(integration=resolved, object=objects["hall"], lock_id="lock-gone", lock_name="Old door")
    LockMapping.objects.create(integration=resolved, object=None, lock_id="lock-1", lock_name="Old name")
    page2 = LOCKS_URL + "?page=2"
    salto.get(LOCKS_URL, params={"page": "2"}).respond(
        200,
        json={"items": [lock_json(3, name="Storage", online=False), lock_json(4, name="Garage", iq=OTHER_IQ_ID)]},
    )
    salto.get(LOCKS_URL).respond(
        200, json={"items": [lock_json(1, name="Front door"), lock_json(2, name="Studio 1")], "next_page_link": page2}
    )
    # when
    outcome = locks_refresh(integration=resolved)
    # then
    assert outcome.level == "warning"
    assert outcome.message == "GET locks: 4 locks in the site."
    assert outcome.details == [
        "Offline: Storage.",
        "On another IQ (cannot be mapped): Garage.",
        "Mapped locks that no longer exist in the site: Hall → Old door.",
    ]
    assert sorted(CachedLock.objects.values_list("name", flat=True)) == ["Front door", "Garage", "Storage", "Studio 1"]
    assert CachedLock.objects.get(lock_id="lock-4").iq_id == OTHER_IQ_ID
    assert LockMapping.objects.get(lock_id="lock-1").lock_name == "Front door"
    resolved.refresh_from_db()
    assert resolved.locks_refresh_message == outcome.text
    assert resolved.locks_refreshed_at is not None


def test_get_locks_replaces_the_cache(salto: respx.Router, resolved: Integration) -> None:
    salto.get(LOCKS_URL).respond(200, json={"items": [lock_json(1)]})
    locks_refresh(integration=resolved)
    salto.get(LOCKS_URL).respond(200, json={"items": [lock_json(2), lock_json(3)]})
    outcome = locks_refresh(integration=resolved)
    assert outcome.ok
    assert outcome.message == "GET locks: 2 locks in the site."
    assert sorted(CachedLock.objects.values_list("lock_id", flat=True)) == ["lock-2", "lock-3"]


def test_get_locks_failure_keeps_the_list(salto: respx.Router, resolved: Integration) -> None:
    salto.get(LOCKS_URL).respond(200, json={"items": [lock_json(1)]})
    locks_refresh(integration=resolved)
    salto.get(LOCKS_URL).respond(403, json=salto_error("2203", "User does not have permission"))
    outcome = locks_refresh(integration=resolved)
    assert not outcome.ok
    assert outcome.message.startswith("GET locks failed: Error while fetching the locks")
    assert "Check the account's rights in Salto" in outcome.message
    assert outcome.message.endswith("The lock list was not changed.")
    assert CachedLock.objects.count() == 1


def test_get_locks_needs_a_resolved_site(httpx2_mock: respx.Router, integration: Integration) -> None:
    outcome = locks_refresh(integration=integration)
    assert outcome.message == "GET locks: Resolve site ID first (Authentication tab)."


# --- Activate / deactivate ----------------------------------------------------------------------------


def test_activation_is_refused_listing_every_missing_step(integration: Integration) -> None:
    outcome = integration_activate(integration=integration)
    assert not outcome.ok
    assert outcome.message == "The integration cannot be activated yet. Missing steps:"
    assert outcome.details == [
        "Site resolved: click Resolve site ID on the Authentication tab.",
        "Access tested OK: click Test / request access on the Authentication tab.",
        "IQ activated: use GET PIN and Set PIN in the IQ OTP setup block until “IQ is activated”.",
        "At least one mapping: click GET locks and map an object (or the wildcard) on the Mapping tab.",
    ]
    integration.refresh_from_db()
    assert integration.is_active is False


def test_activation_refused_when_the_iq_needs_reactivation(integration: Integration) -> None:
    make_ready(integration)
    integration.activation_state = Integration.ActivationState.NEEDS_REACTIVATION
    integration.reactivation_reason = "OTP rejected when opening Front door"
    integration.save()
    assert activation_missing_steps(integration=integration) == [
        "IQ activated: the IQ needs re-activation (OTP rejected when opening Front door); "
        "use GET PIN and Set PIN again."
    ]


def test_activation_succeeds_when_complete(integration: Integration) -> None:
    make_ready(integration)
    outcome = integration_activate(integration=integration)
    assert outcome.ok, outcome.details
    integration.refresh_from_db()
    assert integration.is_active is True
    # The manual's step 4: how to test it end to end.
    assert outcome.details == [
        "Test it: move a booking to a status under Lock may open from status and run the open action (Open door on "
        "the booking); verify the lock opens and (if configured) the open time and the check-in status are updated."
    ]


def test_activation_refused_when_an_object_is_mapped_by_another_active_integration(objects: dict) -> None:
    other = make_ready(make_integration(name="Production"), with_mapping=False)
    LockMapping.objects.create(integration=other, object=objects["hall"], lock_id="lock-1")
    integration_activate(integration=other)
    mine = make_ready(make_integration(name="Acceptance"))
    LockMapping.objects.create(integration=mine, object=objects["hall"], lock_id="lock-1")
    outcome = integration_activate(integration=mine)
    assert outcome.details == [
        "Hall is already mapped by the active integration “Production”; an object may be mapped by at most one "
        "active integration."
    ]


def test_activation_refused_for_a_mapping_on_another_iq(integration: Integration) -> None:
    from django.utils import timezone

    make_ready(integration, with_mapping=False)
    CachedLock.objects.create(
        integration=integration, lock_id="lock-9", name="Garage", iq_id=OTHER_IQ_ID, refreshed_at=timezone.now()
    )
    LockMapping.objects.create(integration=integration, lock_id="lock-9")
    assert activation_missing_steps(integration=integration) == [
        "Mapping to lock Garage: on another IQ — this integration's OTP is not accepted there."
    ]


def test_deactivation_stops_opens_and_keeps_the_configuration(integration: Integration) -> None:
    make_ready(integration)
    integration_activate(integration=integration)
    outcome = integration_deactivate(integration=integration)
    assert outcome.ok
    assert "no new doors will be opened" in outcome.message
    integration.refresh_from_db()
    assert integration.is_active is False
    assert integration.site_id == SITE_ID
    assert integration.is_activated
    assert integration.current_pin == PIN
    assert integration.mappings.count() == 1
    assert integration.history.first().history_change_reason == "deactivated"  # type: ignore[attr-defined]


# --- Identity changes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "label"),
    [
        ("environment", "production", "Environment"),
        ("site_uid", "DE4520168385", "Site UID"),
        ("username", "other@example.com", "Username"),
    ],
)
def test_changing_the_identity_resets_what_belonged_to_it(
    integration: Integration, field: str, value: str, label: str
) -> None:
    # given a complete, active integration
    make_ready(integration)
    integration_activate(integration=integration)
    integration.refresh_from_db()
    # when
    setattr(integration, field, value)
    result = integration_config_save(integration=integration, changed_fields=[field])
    outcomes = result.outcomes
    # then
    assert (result.identity_reset, result.activation_reset) == (True, True)
    assert len(outcomes) == 1
    assert outcomes[0].level == "warning"
    assert outcomes[0].message.startswith(f"{label} changed, so the Site ID, access test, IQ activation")
    assert outcomes[0].message.endswith("The integration was deactivated.")
    integration.refresh_from_db()
    assert integration.site_id == ""
    assert integration.access_test_ok is None
    assert integration.activation_state == Integration.ActivationState.NOT_ACTIVATED
    assert (integration.iq_secret, integration.current_pin) == ("", "")
    assert integration.is_active is False
    assert integration.cached_locks.count() == 0
    assert integration.mappings.count() == 1  # kept, flagged until GET locks
    assert "reset" in integration.history.first().history_change_reason  # type: ignore[attr-defined]


def test_changing_the_password_only_resets_the_access_test(integration: Integration) -> None:
    make_ready(integration)
    integration.password = "a-new-password"
    result = integration_config_save(integration=integration, changed_fields=[], secrets_changed=["password"])
    assert [o.message for o in result.outcomes] == ["Password changed: click Test / request access to check it."]
    assert (result.identity_reset, result.activation_reset) == (False, False)
    integration.refresh_from_db()
    assert integration.password == "a-new-password"
    assert integration.access_test_ok is None
    assert integration.site_id == SITE_ID
    assert integration.is_activated
    assert integration.history.first().history_change_reason == "Password changed"  # type: ignore[attr-defined]


def test_changing_the_iq_resets_the_activation(integration: Integration) -> None:
    make_ready(integration)
    integration.iq_id = OTHER_IQ_ID
    result = integration_config_save(integration=integration, changed_fields=["iq_id"])
    assert result.outcomes[0].message.startswith("IQ id changed: the IQ secret, current pin and IQ activation")
    assert (result.identity_reset, result.activation_reset) == (False, True)
    integration.refresh_from_db()
    assert integration.activation_state == Integration.ActivationState.NOT_ACTIVATED
    assert integration.iq_secret == ""
    assert integration.site_id == SITE_ID


def test_saving_other_fields_resets_nothing(integration: Integration) -> None:
    make_ready(integration)
    integration.minutes_before = 30
    result = integration_config_save(integration=integration, changed_fields=["minutes_before"])
    assert (result.outcomes, result.identity_reset, result.activation_reset) == ([], False, False)
    integration.refresh_from_db()
    assert integration.is_activated
    assert integration.site_id == SITE_ID


def test_password_is_the_accounts_only_secret_sent(salto: respx.Router, integration: Integration) -> None:
    access_test(integration=integration)
    body = salto["token"].calls.last.request.content.decode()
    assert f"password={PASSWORD}" in body
    assert integration.password == PASSWORD


def test_the_demo_prefill_is_an_acceptance_integration_not_yet_resolved() -> None:
    from locks.sandbox.demo import DEMO_PASSWORD, DEMO_SITE_UID

    integration = demo_integration_prefill()
    assert integration.environment == "acceptance"
    assert integration.site_uid == DEMO_SITE_UID
    assert integration.password == DEMO_PASSWORD
    assert integration.site_id == ""
    assert not integration.is_activated
    assert not integration.is_active
    assert demo_integration_prefill().pk == integration.pk  # idempotent


def test_credentials_are_stored_trimmed_whichever_way_they_arrive(db: None) -> None:
    integration = make_integration(site_uid=f"  {SITE_UID} ", username=f" {USERNAME}\t", iq_id=f" {IQ_ID}")
    integration.refresh_from_db()
    assert (integration.site_uid, integration.username, integration.iq_id) == (SITE_UID, USERNAME, IQ_ID)


@pytest.mark.parametrize(
    ("state", "needs"),
    [
        (Integration.ActivationState.NOT_ACTIVATED, False),
        (Integration.ActivationState.ACTIVATED, False),
        (Integration.ActivationState.NEEDS_REACTIVATION, True),
    ],
)
def test_needs_reactivation_is_one_answer(integration: Integration, state: str, needs: bool) -> None:
    integration.activation_state = state
    assert integration.needs_reactivation is needs


def test_set_pin_accepted_but_not_verifiable_keeps_the_old_pin_and_says_the_new_one_is_probably_active(
    salto: respx.Router, pin_ready: Integration
) -> None:
    salto.put(IQ_URL + "/pin").respond(204)
    salto.get(ACTIVATED_IQS_URL).respond(503, text="down")
    outcome = iq_pin_set(integration=pin_ready, new_pin="9876")
    assert not outcome.ok
    assert outcome.message.startswith(
        "Set PIN: Salto KS accepted the new PIN, but the activation could not be verified"
    )
    assert "the IQ probably has the new one" in outcome.message
    pin_ready.refresh_from_db()
    assert pin_ready.current_pin == PIN
