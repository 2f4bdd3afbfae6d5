"""The booking page (open button, bulk action, explain line), the Activity template and the health check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import respx
from django.template.loader import render_to_string
from django.test import Client
from django.utils import timezone

from integrations.models import Integration, OpenRequest
from integrations.selectors import open_requests_recent
from integrations.services.health import integration_health_check
from tests.fake_salto import API, IQ_ID, IQ_URL, SITE_ID, salto_that_opens_the_front_door
from tests.integrations.opening.builders import World, make_booking, make_user, make_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def salto(settings: Any) -> Iterator[respx.Router]:
    with salto_that_opens_the_front_door(settings) as router:
        yield router


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
def desk(client: Client) -> Client:
    client.force_login(make_user("desk", group="Booking staff"))
    return client


def test_the_booking_page_explains_the_door_and_offers_the_button(world: World, desk: Client) -> None:
    booking = make_booking(world, status=world.paid)
    page = desk.get(f"/admin/bookings/booking/{booking.pk}/change/").content.decode()
    assert (
        "Would open now: Building A › Studio 2 → lock &#x27;Front door&#x27; via parent &#x27;Building A&#x27;" in page
    )
    assert 'data-testid="open-door"' in page


def test_the_open_button_opens_and_says_so(
    world: World, desk: Client, salto: respx.Router, django_capture_on_commit_callbacks: Any
) -> None:
    booking = make_booking(world, status=world.paid)
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(f"/admin/bookings/booking/{booking.pk}/open/", follow=True)
    assert OpenRequest.objects.get().state == OpenRequest.State.OPENED
    assert salto.routes["open"].call_count == 1
    text = " ".join(str(m) for m in response.context["messages"])
    assert f"Booking #{booking.pk} (Guest): opening lock 'Front door'" in text
    assert "Open requests" in response.content.decode()  # the open requests inline on the booking page


def test_the_open_button_shows_a_refusal(world: World, desk: Client) -> None:
    booking = make_booking(world, status=world.new)
    response = desk.post(f"/admin/bookings/booking/{booking.pk}/open/", follow=True)
    text = " ".join(str(m) for m in response.context["messages"])
    assert f"Booking #{booking.pk} (Guest): not opened: status '10 Option' does not allow opening." in text


def test_an_open_on_a_booking_id_that_is_not_a_number_is_404_not_500(world: World, desk: Client) -> None:
    assert desk.post("/admin/bookings/booking/abc/open/").status_code == 404
    assert desk.post("/admin/bookings/booking/999999/open/").status_code == 404
    assert not OpenRequest.objects.exists()


def test_a_repeated_refused_open_still_says_why_not(world: World, desk: Client) -> None:
    booking = make_booking(world, status=world.new)
    desk.post(f"/admin/bookings/booking/{booking.pk}/open/")
    response = desk.post(f"/admin/bookings/booking/{booking.pk}/open/", follow=True)
    text = " ".join(str(m) for m in response.context["messages"])
    # The repeat collapsed into the first refusal (dedupe); staff must see the reason, not "being opened".
    assert OpenRequest.objects.count() == 1
    assert f"Booking #{booking.pk} (Guest): not opened: status '10 Option' does not allow opening." in text
    assert "being opened" not in text


def test_a_repeated_open_inside_the_dedupe_window_says_it_was_not_sent_again(
    world: World, desk: Client, salto: respx.Router, django_capture_on_commit_callbacks: Any
) -> None:
    booking = make_booking(world, status=world.paid)
    with django_capture_on_commit_callbacks(execute=True):
        desk.post(f"/admin/bookings/booking/{booking.pk}/open/")
    assert OpenRequest.objects.get().state == OpenRequest.State.OPENED
    response = desk.post(f"/admin/bookings/booking/{booking.pk}/open/", follow=True)
    text = " ".join(str(m) for m in response.context["messages"])
    assert salto.routes["open"].call_count == 1
    assert "lock 'Front door' was opened just now" in text
    assert "not sent again" in text


def test_without_the_right_there_is_no_button_and_no_open(world: World, client: Client) -> None:
    user = make_user("viewer")
    from django.contrib.auth.models import Permission

    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_booking", "change_booking"]))
    client.force_login(user)
    booking = make_booking(world, status=world.paid)
    assert 'data-testid="open-door"' not in client.get(f"/admin/bookings/booking/{booking.pk}/change/").content.decode()
    assert client.post(f"/admin/bookings/booking/{booking.pk}/open/").status_code == 403
    assert not OpenRequest.objects.exists()


def test_the_bulk_action_opens_each_booking_and_reports(
    world: World, desk: Client, salto: respx.Router, django_capture_on_commit_callbacks: Any
) -> None:
    allowed = make_booking(world, status=world.paid)
    refused = make_booking(world, status=world.new)
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(
            "/admin/bookings/booking/",
            {"action": "open_doors", "_selected_action": [allowed.pk, refused.pk]},
            follow=True,
        )
    text = " | ".join(str(m) for m in response.context["messages"])
    assert f"Booking #{allowed.pk} (Guest): opening lock 'Front door'" in text
    assert f"Booking #{refused.pk} (Guest): not opened" in text
    assert salto.routes["open"].call_count == 1


def test_the_activity_template_shows_requests_and_the_flag(world: World) -> None:
    booking = make_booking(world, status=world.new)
    OpenRequest.objects.create(
        booking=booking, integration=world.integration, trigger="staff", state="failed", reason="Salto said no"
    )
    Integration.objects.filter(pk=world.integration.pk).update(
        activation_state="needs_reactivation", reactivation_reason="OTP rejected", health_ok=False
    )
    integration = Integration.objects.get()
    html = render_to_string(
        "integrations/_activity.html",
        {"integration": integration, "requests": open_requests_recent(integration=integration)},
    )
    assert "Salto said no" in html
    assert "Needs re-activation" in html
    assert "OTP rejected" in html


@pytest.mark.parametrize(
    ("activated_iqs", "iq_online", "ok", "flagged"),
    [
        ([{"iq_id": IQ_ID, "activated": True}], True, True, False),
        ([], True, False, True),
        ([{"iq_id": IQ_ID, "activated": True}], False, False, False),
    ],
    ids=["healthy", "no-longer-activated", "iq-offline"],
)
def test_the_health_check(
    world: World, salto: respx.Router, activated_iqs: list[dict[str, Any]], iq_online: bool, ok: bool, flagged: bool
) -> None:
    salto.get(IQ_URL).respond(200, json={"id": IQ_ID, "online": iq_online})
    salto.get(f"{API}/v1.1/me/{SITE_ID}/activated_iqs").respond(200, json={"items": activated_iqs})

    result = integration_health_check(integration=world.integration)

    assert (result.ok, result.flagged) == (ok, flagged)
    integration = Integration.objects.get()
    assert integration.health_ok is ok
    assert integration.health_checked_at is not None
    assert (integration.activation_state == "needs_reactivation") is flagged


def _change_form_data(booking: Any, status: Any) -> dict[str, str]:
    local_start, local_end = (timezone.localtime(booking.start), timezone.localtime(booking.end))
    data = {
        "object": str(booking.object_id),
        "start_0": local_start.strftime("%Y-%m-%d"),
        "start_1": local_start.strftime("%H:%M:%S"),
        "end_0": local_end.strftime("%Y-%m-%d"),
        "end_1": local_end.strftime("%H:%M:%S"),
        "status": str(status.pk),
        "customer_name": booking.customer_name,
        "customer_email": "",
        "_continue": "Save and continue editing",
    }
    for prefix in ("field_values", "status_changes", "open_requests"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})
    return data


@pytest.mark.django_db(transaction=True)
def test_a_status_change_in_the_booking_page_says_what_happened_to_the_door(
    salto: respx.Router, client: Client
) -> None:
    # given an allowed status change, saved for real (committed), as front desk does it on the booking page
    world = make_world()
    booking = make_booking(world, status=world.new)
    client.force_login(make_user("desk", is_superuser=True))
    # when
    response = client.post(
        f"/admin/bookings/booking/{booking.pk}/change/", _change_form_data(booking, world.paid), follow=True
    )
    # then the page says the door was opened, not only that the booking was saved
    texts = [str(m) for m in response.context["messages"]]
    assert any("was changed successfully" in t for t in texts)
    assert f"Status change: Booking #{booking.pk} (Guest): lock 'Front door' opened" in " ".join(texts), texts
    assert salto.routes["open"].call_count == 1


@pytest.mark.django_db(transaction=True)
def test_a_status_change_that_is_refused_says_why(client: Client) -> None:
    # given an integration flagged for re-activation: automatic opens are refused, with the reason
    world = make_world(activation_state=Integration.ActivationState.NEEDS_REACTIVATION, reactivation_reason="otp")
    booking = make_booking(world, status=world.new)
    client.force_login(make_user("desk", is_superuser=True))
    response = client.post(
        f"/admin/bookings/booking/{booking.pk}/change/", _change_form_data(booking, world.paid), follow=True
    )
    texts = " ".join(str(m) for m in response.context["messages"])
    assert f"Status change: Booking #{booking.pk} (Guest): not opened:" in texts
    assert "re-activation" in texts


def test_a_stale_rejection_does_not_undo_a_fresh_set_pin(world: World) -> None:
    # given a worker holding the integration as it was when its open was rejected ...
    from datetime import timedelta

    from integrations.services.lifecycle import integration_flag_reactivation

    stale = Integration.objects.get(pk=world.integration.pk)
    # ... while the operator ran GET PIN / Set PIN successfully
    Integration.objects.filter(pk=stale.pk).update(activated_at=stale.activated_at + timedelta(seconds=5))  # type: ignore[operator]
    # when the worker flags the rejection
    integration_flag_reactivation(integration=stale, reason="OTP rejected")
    # then the fresh activation stands
    assert Integration.objects.get(pk=stale.pk).activation_state == Integration.ActivationState.ACTIVATED


def test_a_rejection_of_the_current_pin_flags_the_integration(world: World) -> None:
    from integrations.services.lifecycle import integration_flag_reactivation

    integration_flag_reactivation(integration=world.integration, reason="OTP rejected")
    fresh = Integration.objects.get(pk=world.integration.pk)
    assert fresh.activation_state == Integration.ActivationState.NEEDS_REACTIVATION
    assert fresh.reactivation_reason == "OTP rejected"


def test_with_the_broker_down_the_open_button_says_the_request_waits(
    world: World, desk: Client, salto: respx.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.services import opening
    from tests.api.test_api import _BrokerDown

    monkeypatch.setattr(opening, "current_app", _BrokerDown())
    # the test's transaction never commits: run the on-commit queueing at once, as a real commit would
    monkeypatch.setattr(opening.transaction, "on_commit", lambda func, *args, **kwargs: func())
    booking = make_booking(world, status=world.paid)
    response = desk.post(f"/admin/bookings/booking/{booking.pk}/open/", follow=True)
    assert response.status_code == 200
    text = " ".join(str(m) for m in response.context["messages"])
    assert f"Booking #{booking.pk} (Guest): opening lock 'Front door'" in text
    assert opening.QUEUE_DOWN_REASON in text


def test_the_open_request_page_shows_every_send(world: World, salto: respx.Router, client: Client) -> None:
    from integrations.services.opening import open_request_create, open_request_perform

    salto.routes["open"].side_effect = [
        respx.MockResponse(429, text="quota"),
        respx.MockResponse(200, json={}),
    ]
    booking = make_booking(world, status=world.paid)
    open_request = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF).open_request
    open_request_perform(open_request_id=open_request.pk)
    OpenRequest.objects.filter(pk=open_request.pk).update(next_attempt_at=timezone.now())
    open_request_perform(open_request_id=open_request.pk)
    client.force_login(make_user("auditor", is_superuser=True))
    page = client.get(f"/admin/integrations/openrequest/{open_request.pk}/change/").content.decode()
    assert "Sends to Salto KS" in page
    assert page.index("Rejected by Salto") < page.index("Accepted (Salto opened)")  # oldest send first
    activity = render_to_string(
        "integrations/_activity.html",
        {"integration": world.integration, "requests": open_requests_recent(integration=world.integration)},
    )
    assert "#1 rejected by salto (429)" in activity
    assert "#2 accepted (salto opened) (200)" in activity
