"""The Celery application: configured from Django settings (CELERY_*), tasks autodiscovered."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from integrations.beat import BEAT_SCHEDULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ireserve_salto.settings")


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any) -> dict[str, str] | None:
    """CELERY_TASK_ROUTES: the opening tasks (send, and confirm against the entries) go to OPENING_TASK_QUEUE.

    Read at each send rather than once, so a test or bench can point one worker at its own queue.
    """
    from django.conf import settings

    from integrations.services.opening import CONFIRM_OPEN_TASK, PERFORM_OPEN_TASK

    if name in (PERFORM_OPEN_TASK, CONFIRM_OPEN_TASK) and settings.OPENING_TASK_QUEUE:
        return {"queue": settings.OPENING_TASK_QUEUE}
    return None


app = Celery("ireserve_salto")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = BEAT_SCHEDULE
app.autodiscover_tasks()
