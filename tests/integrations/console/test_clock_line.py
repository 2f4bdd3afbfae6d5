"""The console's red line when this server's clock is off Salto's: the figure, and how fresh it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from integrations.models import Integration
from locks.clock import _last_written, record_offset
from locks.environments import endpoints_for

pytestmark = pytest.mark.django_db


def _salto_answered(integration: Integration, *, offset: float, seconds_ago: float) -> None:
    received_at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    api_url = endpoints_for(integration.environment).api_url
    record_offset(cache, api_url, server_date=received_at + timedelta(seconds=offset), received_at=received_at)


def test_the_console_says_the_clock_is_off_and_when_that_was_measured(
    admin_client: Client, integration: Integration
) -> None:
    _last_written.clear()
    _salto_answered(integration, offset=180, seconds_ago=30)
    page = admin_client.get(reverse("admin:integrations_integration_change", args=[integration.pk])).content.decode()
    assert 'data-testid="clock-off"' in page
    assert "This server&#x27;s clock is 180 s off Salto&#x27;s (behind) (measured 30 s ago)" in page


def test_no_line_within_the_tolerance(admin_client: Client, integration: Integration) -> None:
    _last_written.clear()
    _salto_answered(integration, offset=12, seconds_ago=5)
    page = admin_client.get(reverse("admin:integrations_integration_change", args=[integration.pk])).content.decode()
    assert 'data-testid="clock-off"' not in page
