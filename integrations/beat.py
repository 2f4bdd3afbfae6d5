"""Celery beat schedule of the opening flow; the Celery app reads it (`app.conf.beat_schedule = BEAT_SCHEDULE`)."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Often enough that a lost message is re-sent well inside the 120 s freshness limit.
    "sweep-open-requests": {"task": "integrations.sweep_open_requests", "schedule": 15.0},
    # Notice a PIN or secret changed outside before the next guest does.
    "check-integrations-health": {"task": "integrations.check_integrations_health", "schedule": 300.0},
    # Keep the cached online state fresh, so an offline lock is refused before anything is sent.
    "refresh-lock-lists": {"task": "integrations.refresh_lock_lists", "schedule": 600.0},
    # Forget API Idempotency-Keys past their time to live, so the table does not grow without bound.
    "purge-idempotency-keys": {"task": "integrations.purge_idempotency_keys", "schedule": 3600.0},
}
