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
