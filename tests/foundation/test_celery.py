from __future__ import annotations

from typing import Any

from ireserve_salto.celery import app


def test_celery_speaks_json_only() -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]


def test_the_worker_is_the_one_the_burst_benchmark_chose() -> None:
    # ADR 0007: threads (opening a door is waiting for Salto), 32 of them, 4 messages reserved per thread
    assert (app.conf.worker_pool, app.conf.worker_concurrency, app.conf.worker_prefetch_multiplier) == (
        "threads",
        32,
        4,
    )


def test_every_scheduled_task_exists() -> None:
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled == {
        "integrations.sweep_open_requests",
        "integrations.check_integrations_health",
        "integrations.refresh_lock_lists",
        "integrations.purge_idempotency_keys",
    }
    assert scheduled <= set(app.tasks)


def test_the_opening_task_is_routed_to_its_queue_when_one_is_set(settings: Any) -> None:
    from ireserve_salto.celery import app

    router = app.amqp.router
    settings.OPENING_TASK_QUEUE = ""
    default = router.route({}, "integrations.perform_open", args=(1,), kwargs={})
    settings.OPENING_TASK_QUEUE = "doors"
    routed = router.route({}, "integrations.perform_open", args=(1,), kwargs={})
    confirm = router.route({}, "integrations.confirm_open", args=(1,), kwargs={})
    other = router.route({}, "integrations.sweep_open_requests", args=(), kwargs={})
    # a retry names the queue its message came from: that wins over the route
    retry = router.route({"queue": "opening-e2e"}, "integrations.perform_open", args=(1,), kwargs={})
    assert default["queue"].name == app.conf.task_default_queue
    assert routed["queue"].name == confirm["queue"].name == "doors"
    assert other["queue"].name == app.conf.task_default_queue
    assert retry["queue"].name == "opening-e2e"
