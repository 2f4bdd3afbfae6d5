"""No stored secret (password, IQ secret, PIN) appears in any rendered admin page, API response or history row."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from bookings.models import Booking
from integrations.models import Integration, LockMapping, OpenRequest
from tests.fake_salto import IQ_ID, PASSWORD, PIN, SECRET, SITE_UID, USERNAME
from tests.integrations.console.conftest import make_ready
from tests.integrations.console.test_admin import change_url, form_data

pytestmark = pytest.mark.django_db

SECRETS = (PASSWORD, SECRET, PIN, "brand-new-password", "7391")


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        if secret.isdigit():
            # A 4-digit PIN shown stands on its own; inside a longer number (an id, a timestamp's microseconds)
            # it is that number, not the PIN.
            shown = re.search(rf"(?<![0-9]){secret}(?![0-9])", text)
            assert shown is None, (
                f"{secret!r} shown on {where}: …{text[max(0, shown.start() - 40) : shown.end() + 40]}…"
            )
        else:
            assert secret not in text, f"{secret!r} shown on {where}"


@pytest.fixture
def busy_integration(superuser: User, objects: dict, statuses: dict) -> Integration:
    """An integration with every secret set, changed twice through the admin, a mapping and an open request."""
    integration = make_ready(
        Integration.objects.create(
            name="Salto KS acceptance",
            environment="acceptance",
            site_uid=SITE_UID,
            username=USERNAME,
            password=PASSWORD,
            iq_id=IQ_ID,
        )
    )
    client = Client()
    client.force_login(superuser)
    client.post(
        change_url(integration), {**form_data(integration, password_input="brand-new-password"), "_continue": "1"}
    )
    client.post(change_url(integration), {**form_data(integration, current_pin_input="7391"), "_continue": "1"})
    booking = Booking.objects.create(
        object=objects["hall"],
        start="2026-11-25T10:00:00Z",
        end="2026-11-25T11:00:00Z",
        status=statuses["paid"],
        customer_name="Ann",
    )
    OpenRequest.objects.create(booking=booking, integration=integration, trigger="staff", state="opened")
    return integration


def admin_pages(integration: Integration) -> list[str]:
    pk = integration.pk
    pages = [
        reverse("admin:index"),
        reverse("admin:integrations_integration_changelist"),
        reverse("admin:integrations_integration_add"),
        change_url(integration),
        reverse("admin:integrations_integration_history", args=[pk]),
        reverse("admin:integrations_lockmapping_changelist"),
    ]
    for record in integration.history.all():  # type: ignore[attr-defined]
        pages.append(reverse("admin:integrations_integration_simple_history", args=[pk, record.history_id]))
    for mapping in LockMapping.objects.all():
        pages.append(reverse("admin:integrations_lockmapping_history", args=[mapping.pk]))
        pages.append(reverse("admin:integrations_lockmapping_change", args=[mapping.pk]))
    for open_request in OpenRequest.objects.all():
        pages.append(reverse("admin:integrations_openrequest_changelist"))
        pages.append(reverse("admin:integrations_openrequest_change", args=[open_request.pk]))
    for booking in Booking.objects.all():
        pages.append(reverse("admin:bookings_booking_change", args=[booking.pk]))
    return pages


def test_no_admin_page_shows_a_stored_secret(superuser: User, busy_integration: Integration) -> None:
    integration = Integration.objects.get(pk=busy_integration.pk)
    assert integration.password == "brand-new-password"
    assert integration.current_pin == "7391"
    client = Client()
    client.force_login(superuser)
    for url in admin_pages(integration):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content.decode(), url)


def test_no_history_row_holds_a_secret(busy_integration: Integration) -> None:
    records = list(busy_integration.history.all())  # type: ignore[attr-defined]
    assert len(records) >= 3
    for record in records:
        values = {f.attname: getattr(record, f.attname) for f in record._meta.concrete_fields}
        assert not {"password", "iq_secret", "current_pin"} & set(values)
        assert_no_secret(repr(values), "a history row")
    reasons = [r.history_change_reason for r in records]
    assert "Password changed" in reasons
    assert "current pin changed" in reasons
    for record in LockMapping.history.all():  # type: ignore[attr-defined]
        assert_no_secret(repr(record.__dict__), "a mapping history row")


def test_no_api_response_shows_a_secret(superuser: User, busy_integration: Integration) -> None:
    token = Token.objects.create(user=superuser)
    client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    booking = Booking.objects.get()
    urls = [
        reverse("api-booking-list"),
        reverse("api-booking-detail", args=[booking.pk]),
        reverse("api-open-request-detail", args=[OpenRequest.objects.get().pk]),
        reverse("api-schema"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content.decode(), url)


def test_messages_never_carry_a_secret(superuser: User, busy_integration: Integration, httpx2_mock: Any) -> None:
    # every button, with Salto unreachable or refusing, on a fully configured integration
    import httpx2

    httpx2_mock.route().mock(side_effect=httpx2.ConnectError("refused"))
    client = Client()
    client.force_login(superuser)
    integration = Integration.objects.get(pk=busy_integration.pk)
    for action in ("resolve-site", "test-access", "get-pin", "set-pin", "get-locks"):
        url = reverse("admin:integrations_integration_action", args=[integration.pk, action])
        response = client.post(url, form_data(integration, new_pin="1357"), follow=True)
        assert_no_secret(response.content.decode(), action)
