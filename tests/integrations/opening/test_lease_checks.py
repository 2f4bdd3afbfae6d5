"""The start-up checks of the lease against what one send needs and how long the claiming tasks may run."""

from __future__ import annotations

from typing import Any

from integrations.checks import check_sending_lease


def _ids(settings: Any, **values: Any) -> list[str]:
    for name, value in values.items():
        setattr(settings, name, value)
    return [problem.id for problem in check_sending_lease()]


def test_the_shipped_settings_pass(settings: Any) -> None:
    # 50 s lease; 10 s HTTP timeout (token + open = 22 s with the margin); tasks killed at 45 s
    assert _ids(settings, OPEN_SENDING_LEASE_SECONDS=50, SALTO_KS_HTTP_TIMEOUT_SECONDS=10) == []


def test_a_lease_shorter_than_one_send_is_an_error(settings: Any) -> None:
    assert "integrations.E001" in _ids(settings, OPEN_SENDING_LEASE_SECONDS=21.9, SALTO_KS_HTTP_TIMEOUT_SECONDS=10)
    assert "integrations.E001" not in _ids(settings, OPEN_SENDING_LEASE_SECONDS=22, SALTO_KS_HTTP_TIMEOUT_SECONDS=10)


def test_a_task_that_may_outlive_its_lease_is_warned_about(settings: Any) -> None:
    # perform_open and confirm_open are killed at 45 s: a 45 s lease is not longer than that
    ids = _ids(settings, OPEN_SENDING_LEASE_SECONDS=45, SALTO_KS_HTTP_TIMEOUT_SECONDS=5)
    assert ids == ["integrations.W001", "integrations.W001"]
    assert _ids(settings, OPEN_SENDING_LEASE_SECONDS=45.5, SALTO_KS_HTTP_TIMEOUT_SECONDS=5) == []
