"""The integration change page: labels, tabs, buttons as permission-checked CSRF-protected POSTs, activation."""

from __future__ import annotations

import re
from html import unescape as html_unescape
from typing import Any

import pytest
import respx
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from integrations.models import CachedLock, Integration, LockMapping
from tests.fake_salto import (
    ACTIVATED_IQS_URL,
    IQ_URL,
    PIN,
    SECRET,
    SITE_ID,
    SITE_UID,
    SITES,
    activated_iqs_json,
    salto_error,
)
from tests.integrations.console.conftest import make_ready

pytestmark = pytest.mark.django_db

MANUAL_LABELS = [
    "Environment",
    "Site UID",
    "Site ID",
    "Resolve site ID",
    "Username",
    "Password",
    "Test / request access",
    "IQ id",
    "GET PIN",
    "current pin",
    "new pin",
    "Set PIN",
    "Lock may open from status",
    "Time before (minutes)",
    "Save last open action in field",
    "Status after opening (check-in)",
    "GET locks",
    "Active",
]


def change_url(integration: Integration) -> str:
    return reverse("admin:integrations_integration_change", args=[integration.pk])


def action_url(integration: Integration, action: str) -> str:
    return reverse("admin:integrations_integration_action", args=[integration.pk, action])


def form_data(integration: Integration, mappings: list[tuple[Any, str]] | None = None, **overrides: Any) -> dict:
    """What the browser posts for the change page as stored (secrets blank: write-only)."""
    existing = list(integration.mappings.all())
    data: dict[str, Any] = {
        "name": integration.name,
        "environment": integration.environment,
        "site_uid": integration.site_uid,
        "username": integration.username,
        "password_input": "",
        "iq_id": integration.iq_id,
        "current_pin_input": "",
        "new_pin": "",
        "open_statuses": [s.pk for s in integration.open_statuses.all()],
        "minutes_before": integration.minutes_before,
        "last_open_field": integration.last_open_field_id or "",
        "checkin_status": integration.checkin_status_id or "",
        "open_on_status_change": "on" if integration.open_on_status_change else "",
        "mappings-INITIAL_FORMS": len(existing),
        "mappings-MIN_NUM_FORMS": 0,
        "mappings-MAX_NUM_FORMS": 1000,
    }
    if integration.is_active:
        data["activate"] = "on"
    rows = [(m.pk, m.object_id or "", m.lock_id) for m in existing]
    rows += [("", obj, lock) for obj, lock in (mappings or [])]
    for index, (pk, obj, lock) in enumerate(rows):
        data[f"mappings-{index}-id"] = pk
        data[f"mappings-{index}-integration"] = integration.pk
        data[f"mappings-{index}-object"] = obj
        data[f"mappings-{index}-lock_id"] = lock
    data["mappings-TOTAL_FORMS"] = len(rows)
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def admin_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- the page ---------------------------------------------------------------------------------------------


def test_the_change_page_shows_the_manuals_labels_and_tabs(admin_client: Client, integration: Integration) -> None:
    response = admin_client.get(change_url(integration))
    assert response.status_code == 200
    html = response.content.decode()
    for label in MANUAL_LABELS:
        assert label in html, label
    for tab in ("tab-authentication", "tab-details", "tab-mapping", "tab-activity"):
        assert tab in html
    assert "IQ OTP setup" in html
    assert "integrations/console.js" in html
    assert "Not activated" in html
    # Site ID is read-only: there is no input for it
    assert 'name="site_id"' not in html


def test_the_page_shows_the_manuals_notes(admin_client: Client, integration: Integration) -> None:
    html = admin_client.get(change_url(integration)).content.decode()
    assert (
        "Acceptance and production are separate environments with their own account, site and IQ. "
        "Test fully in acceptance before configuring production." in html
    )
    assert "The PIN + the IQ secret form the OTP that signs every open command." in html
    assert (
        "If you change the IQ PIN outside i-Reserve, you must re-activate the integration (GET PIN / Set PIN). "
        "Otherwise the OTP commands no longer match and the door will not open." in html
    )


def test_the_page_shows_iq_is_activated_with_the_time(admin_client: Client, integration: Integration) -> None:
    make_ready(integration)
    html = admin_client.get(change_url(integration)).content.decode()
    assert re.search(r"IQ is activated \(since \d\d-\d\d-\d{4} \d\d:\d\d \(Europe/Amsterdam\)\)", html)


def test_needs_reactivation_is_shown_with_its_reason(admin_client: Client, integration: Integration) -> None:
    make_ready(integration)
    integration.activation_state = Integration.ActivationState.NEEDS_REACTIVATION
    integration.reactivation_reason = "OTP rejected when opening Front door"
    integration.save()
    html = admin_client.get(change_url(integration)).content.decode()
    assert "Needs re-activation: OTP rejected when opening Front door" in html
    assert "badge-alert" in html


def test_the_object_search_lists_sub_objects_under_their_parent(
    admin_client: Client, integration: Integration, objects: dict
) -> None:
    url = reverse("admin:integrations_integration_mapping_objects", args=[integration.pk])
    results = admin_client.get(url).json()["results"]
    assert results[0] == {"id": "*", "text": "* Wildcard (default for objects without their own mapping)"}
    assert [r["text"] for r in results[1:]] == ["Building A", "Building A › Studio 2", "Hall"]
    assert [r["id"] for r in results[1:]] == [str(objects[k].pk) for k in ("building", "studio", "hall")]


def test_a_mapping_row_renders_only_its_chosen_object_and_lock(
    admin_client: Client, integration: Integration, objects: dict
) -> None:
    make_ready(integration, with_mapping=False)
    LockMapping.objects.create(integration=integration, object=objects["studio"], lock_id="lock-1")
    html = admin_client.get(change_url(integration)).content.decode()
    select = html[html.index('name="mappings-0-object"') :]
    select = select[: select.index("</select>")]
    assert re.findall(r"<option[^>]*>([^<]*)</option>", select) == ["Building A › Studio 2"]
    assert "admin-autocomplete" in select
    lock = html[html.index('name="mappings-0-lock_id"') :]
    lock = lock[: lock.index("</select>")]
    assert re.findall(r"<option[^>]*>([^<]*)</option>", lock) == ["Front door — online"]


def test_rendering_the_page_never_calls_salto(
    admin_client: Client, httpx2_mock: respx.Router, integration: Integration
) -> None:
    make_ready(integration)
    admin_client.get(change_url(integration))
    assert not httpx2_mock.calls


def test_locks_on_another_iq_are_not_selectable(admin_client: Client, integration: Integration) -> None:
    from django.utils import timezone

    make_ready(integration)
    CachedLock.objects.create(
        integration=integration, lock_id="lock-9", name="Garage", iq_id="other-iq", refreshed_at=timezone.now()
    )
    url = reverse("admin:integrations_integration_mapping_locks", args=[integration.pk])
    results = admin_client.get(url).json()["results"]
    assert results == [
        {"id": "lock-1", "text": "Front door — online", "online": True, "disabled": False},
        {"id": "lock-9", "text": "Garage — on another IQ, cannot be mapped", "online": True, "disabled": True},
    ]


# --- buttons ----------------------------------------------------------------------------------------------


def test_resolve_button_saves_the_form_then_calls_the_service(
    admin_client: Client, salto: respx.Router, integration: Integration
) -> None:
    # given the operator corrected the Site UID without saving
    integration.site_uid = "XX0000000000"
    integration.save()
    route = salto.get(SITES).respond(200, json={"items": [{"id": SITE_ID, "site_uid": SITE_UID}]})
    # when
    response = admin_client.post(action_url(integration, "resolve-site"), form_data(integration, site_uid=SITE_UID))
    # then
    assert response.status_code == 302
    assert response["Location"] == change_url(integration) + "#tab-authentication"
    assert route.calls.last.request.url.params["$filter"] == f"site_uid eq '{SITE_UID}'"
    integration.refresh_from_db()
    assert integration.site_uid == SITE_UID
    assert integration.site_id == SITE_ID
    page = admin_client.get(response["Location"])
    assert any(m.startswith("Site ID resolved") for m in messages_of(page))
    assert SITE_ID in page.content.decode()


def test_set_pin_button_uses_new_pin_and_reports_salto_reason(
    admin_client: Client, salto: respx.Router, integration: Integration
) -> None:
    integration.site_id, integration.iq_secret, integration.current_pin = SITE_ID, SECRET, PIN
    integration.save()
    salto.put(IQ_URL + "/pin").respond(400, json=salto_error("3102", "Request execution failed with code: otp_invalid"))
    response = admin_client.post(
        action_url(integration, "set-pin"), form_data(integration, new_pin="9876"), follow=True
    )
    [message] = [m for m in messages_of(response) if "Set PIN" in m]
    assert message.startswith("Set PIN failed — OTP rejected: the current pin is wrong")
    integration.refresh_from_db()
    assert integration.current_pin == PIN
    assert not integration.is_activated


def test_set_pin_button_activates(admin_client: Client, salto: respx.Router, integration: Integration) -> None:
    integration.site_id, integration.iq_secret = SITE_ID, SECRET
    integration.save()
    salto.put(IQ_URL + "/pin").respond(204)
    salto.get(ACTIVATED_IQS_URL).respond(200, json=activated_iqs_json())
    # the operator types the PIN Salto e-mailed into current pin, and the new one into new pin
    response = admin_client.post(
        action_url(integration, "set-pin"), form_data(integration, current_pin_input=PIN, new_pin="9876"), follow=True
    )
    assert any(m.startswith("IQ is activated (since") for m in messages_of(response))
    integration.refresh_from_db()
    assert integration.current_pin == "9876"
    assert integration.is_activated


def test_a_button_does_nothing_while_the_form_is_invalid(
    admin_client: Client, httpx2_mock: respx.Router, integration: Integration
) -> None:
    response = admin_client.post(action_url(integration, "resolve-site"), form_data(integration, minutes_before=2000))
    assert response.status_code == 200
    assert "Resolve site ID was not run: correct the errors below first." in messages_of(response)
    assert "Time before (minutes) must be a whole number from 0 to 1440" in response.content.decode()
    assert not httpx2_mock.calls
    # the re-rendered form posts to the change page, not to the button's URL
    assert f'action="{change_url(integration)}"' in response.content.decode()


def test_buttons_only_answer_post(admin_client: Client, integration: Integration) -> None:
    assert admin_client.get(action_url(integration, "resolve-site")).status_code == 405


def test_unknown_actions_are_404(admin_client: Client, integration: Integration) -> None:
    assert admin_client.post(action_url(integration, "format-disk"), {}).status_code == 404


def test_buttons_are_csrf_protected(superuser: User, httpx2_mock: respx.Router, integration: Integration) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post(action_url(integration, "test-access"), form_data(integration))
    assert response.status_code == 403
    assert not httpx2_mock.calls


# --- roles ------------------------------------------------------------------------------------------------


def test_booking_staff_cannot_see_or_change_integrations(
    staff: User, httpx2_mock: respx.Router, integration: Integration
) -> None:
    client = Client()
    client.force_login(staff)
    assert client.get(reverse("admin:integrations_integration_changelist")).status_code == 403
    assert client.get(change_url(integration)).status_code == 403
    assert client.post(action_url(integration, "test-access"), form_data(integration)).status_code == 403
    # Staff see the Integrations section of the index, but no link to the integrations themselves.
    assert "/admin/integrations/integration/" not in client.get(reverse("admin:index")).content.decode()
    assert not httpx2_mock.calls


def test_operators_can_configure_integrations(operator: User, salto: respx.Router, integration: Integration) -> None:
    client = Client()
    client.force_login(operator)
    assert client.get(reverse("admin:integrations_integration_changelist")).status_code == 200
    assert client.get(change_url(integration)).status_code == 200
    response = client.post(action_url(integration, "test-access"), form_data(integration))
    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.access_test_ok is True


# --- saving, activation -----------------------------------------------------------------------------------


def test_activation_is_refused_on_the_page_with_every_missing_step(
    admin_client: Client, integration: Integration
) -> None:
    response = admin_client.post(change_url(integration), form_data(integration, activate="on", _continue="1"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "The integration cannot be activated yet. Missing steps:" in html
    for step in ("Site resolved:", "Access tested OK:", "IQ activated:", "At least one mapping:"):
        assert step in html
    integration.refresh_from_db()
    assert integration.is_active is False


def test_mapping_and_activating_in_one_save(admin_client: Client, integration: Integration, objects: dict) -> None:
    make_ready(integration, with_mapping=False)
    data = form_data(integration, mappings=[(objects["studio"].pk, "lock-1"), ("", "lock-1")], activate="on")
    response = admin_client.post(change_url(integration), {**data, "_continue": "1"})
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    integration.refresh_from_db()
    assert integration.is_active is True
    assert sorted((m.object_id or 0, m.lock_name) for m in integration.mappings.all()) == [
        (0, "Front door"),
        (objects["studio"].pk, "Front door"),
    ]


def test_unticking_active_deactivates(admin_client: Client, integration: Integration) -> None:
    make_ready(integration)
    integration.is_active = True
    integration.save()
    data = form_data(integration)
    data.pop("activate")
    response = admin_client.post(change_url(integration), {**data, "_continue": "1"}, follow=True)
    assert any("is inactive: no new doors will be opened" in m for m in messages_of(response))
    integration.refresh_from_db()
    assert integration.is_active is False
    assert integration.is_activated  # configuration kept


def test_changing_the_environment_warns_and_resets(admin_client: Client, integration: Integration) -> None:
    make_ready(integration)
    response = admin_client.post(
        change_url(integration), {**form_data(integration, environment="production"), "_continue": "1"}, follow=True
    )
    assert any(
        m.startswith("Environment changed, so the Site ID, access test, IQ activation") for m in messages_of(response)
    )
    integration.refresh_from_db()
    assert integration.site_id == ""
    assert not integration.is_activated
    assert integration.mappings.count() == 1
    assert "not in the lock list" in response.content.decode()  # the kept mapping is flagged


def test_duplicate_objects_are_rejected_with_a_message(
    admin_client: Client, integration: Integration, objects: dict
) -> None:
    make_ready(integration, with_mapping=False)
    hall = objects["hall"].pk
    response = admin_client.post(
        change_url(integration),
        {**form_data(integration, mappings=[(hall, "lock-1"), (hall, "lock-1")]), "_continue": "1"},
    )
    assert response.status_code == 200
    assert "Hall is mapped more than once; each object may have only one lock." in response.content.decode()
    assert LockMapping.objects.count() == 0


def test_the_history_records_who_changed_what_and_secrets_as_changed(
    admin_client: Client, superuser: User, integration: Integration
) -> None:
    admin_client.post(
        change_url(integration),
        {**form_data(integration, password_input="brand-new-password", minutes_before=15), "_continue": "1"},
    )
    record = integration.history.first()  # type: ignore[attr-defined]
    assert record.history_user == superuser
    assert record.history_change_reason == "Password changed"
    assert record.minutes_before == 15
    page = admin_client.get(reverse("admin:integrations_integration_history", args=[integration.pk]))
    html = page.content.decode()
    assert "Password changed" in html
    assert "brand-new-password" not in html


def test_a_check_in_status_that_may_not_open_is_warned_about(admin_client: Client, integration: Integration) -> None:
    from bookings.models import BookingStatus

    paid = BookingStatus.objects.get(code=30)
    checked_in = BookingStatus.objects.get_or_create(code=55, defaults={"name": "Checked in (test)"})[0]
    data = {**form_data(integration), "open_statuses": [paid.pk], "checkin_status": checked_in.pk, "_continue": "1"}
    response = admin_client.post(change_url(integration), data, follow=True)
    text = " ".join(str(m) for m in response.context["messages"])
    assert "is not ticked under Lock may open from status" in text
    assert "will not open again" in text

    data["open_statuses"] = [paid.pk, checked_in.pk]
    response = admin_client.post(change_url(integration), data, follow=True)
    assert "is not ticked" not in " ".join(str(m) for m in response.context["messages"])


def test_history_cannot_revert_past_the_activation_checks(admin_client: Client, integration: Integration) -> None:
    # given an activated integration that was later flagged: Salto rejected its PIN
    integration.activation_state = Integration.ActivationState.ACTIVATED
    integration.save()
    old_version = integration.history.first()  # type: ignore[attr-defined]
    integration.activation_state = Integration.ActivationState.NEEDS_REACTIVATION
    integration.save()
    url = reverse("admin:integrations_integration_simple_history", args=[integration.pk, old_version.history_id])
    # when someone tries to revert to the activated version
    page = admin_client.get(url)
    response = admin_client.post(url, {**form_data(integration), "_continue": "1"})
    # then the old version can be read but not saved back
    assert page.status_code == 200
    assert "Revert" not in page.content.decode()
    assert response.status_code == 403
    integration.refresh_from_db()
    assert integration.activation_state == Integration.ActivationState.NEEDS_REACTIVATION


def test_the_mapping_rows_show_their_lock_state(admin_client: Client, integration: Integration, objects: dict) -> None:
    # given five mappings: to an online lock, an offline one, one gone from the list, one on another IQ
    make_ready(integration, with_mapping=False)
    for lock_id, name, iq_id, online in (
        ("lock-8", "Storage", integration.iq_id, False),
        ("lock-9", "Garage", "another-iq", True),
    ):
        CachedLock.objects.create(
            integration=integration,
            lock_id=lock_id,
            name=name,
            iq_id=iq_id,
            online=online,
            refreshed_at=integration.updated_at,
        )
    LockMapping.objects.create(integration=integration, object=None, lock_id="lock-1", lock_name="Front door")
    LockMapping.objects.create(integration=integration, object=objects["building"], lock_id="lock-8")
    LockMapping.objects.create(integration=integration, object=objects["studio"], lock_id="gone")
    LockMapping.objects.create(integration=integration, object=objects["hall"], lock_id="lock-9")
    # when
    html = admin_client.get(change_url(integration)).content.decode()
    # then each row (wildcard first, then in tree order) says what its lock can do now
    states = re.findall(r'<td class="field-mapping_status">\s*<p>(.*?)</p>', html)
    assert [html_unescape(re.sub(r"<[^>]+>", "", state)) for state in states] == [
        "✔ online",
        "⚠ offline",
        "⚠ not in the lock list — click GET locks (and map another lock if it is gone)",
        "⚠ on another IQ — this integration's OTP is not accepted there",
        "",  # the blank row for a new mapping
        "",  # the template row of "Add another mapping"
    ]
