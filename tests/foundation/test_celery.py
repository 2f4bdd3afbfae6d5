from __future__ import annotations

from ireserve_salto.celery import app


def test_celery_speaks_json_only() -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.worker_prefetch_multiplier == 1


def test_every_scheduled_task_exists() -> None:
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled == {
        "integrations.sweep_open_requests",
        "integrations.check_integrations_health",
        "integrations.refresh_lock_lists",
    }
    assert scheduled <= set(app.tasks)
