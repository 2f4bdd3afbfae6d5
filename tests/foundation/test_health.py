from __future__ import annotations

import pytest
from django.test import Client, override_settings


@pytest.mark.django_db
def test_it_reports_a_healthy_database(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_it_answers_503_when_the_broker_is_unreachable(client: Client) -> None:
    # given a Redis URL where nothing listens
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        # when
        response = client.get("/healthz")
    # then
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert response.json()["checks"]["broker"] == "ConnectionError"


@pytest.mark.django_db
def test_it_checks_the_configured_broker(client: Client, settings: object) -> None:
    from django.conf import settings as django_settings

    if not django_settings.REDIS_URL:
        pytest.skip("no broker configured in this pass")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "ok"


def test_it_only_answers_get(client: Client) -> None:
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_a_clock_off_salto_is_degraded_with_the_readings_age(client: Client) -> None:
    from datetime import UTC, datetime, timedelta

    from django.core.cache import cache

    from locks.clock import _last_written, record_offset
    from locks.environments import Environment, endpoints_for

    api_url = endpoints_for(Environment.ACCEPTANCE).api_url
    now = datetime.now(UTC)
    _last_written.clear()
    received_at = now - timedelta(seconds=42)
    record_offset(cache, api_url, server_date=received_at - timedelta(seconds=300), received_at=received_at)
    try:
        response = client.get("/healthz")
    finally:
        cache.clear()
    # the process stays in service (opens still work at Salto's time), but it says so, and how sure it is
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    line = body["checks"]["salto_clock_acceptance"]
    assert line.startswith("this server's clock is 300 s off Salto's (ahead), measured 4")
    assert line.endswith(" s ago")
