"""Start-up checks of the opening settings that only make sense together (`manage.py check`, every command).

A worker holds a row it is sending for OPEN_SENDING_LEASE_SECONDS; after that the sweeper hands it to another
worker, which asks Salto's entries and may send again (ADR 0002, points 15 and 19). The lease must therefore
outlast what one hold legitimately needs, or slow but healthy sends would be cut and handed over.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from integrations.services.sending import LEASE_MARGIN_SECONDS

# The tasks that claim open requests, by name (tasks.py registers them when the app is ready).
CLAIMING_TASKS = ("integrations.perform_open", "integrations.confirm_open")


@register("opening")
def check_sending_lease(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    lease = float(settings.OPEN_SENDING_LEASE_SECONDS)
    timeout = float(settings.SALTO_KS_HTTP_TIMEOUT_SECONDS)
    problems: list[CheckMessage] = []
    one_send = 2 * timeout + LEASE_MARGIN_SECONDS  # a token request and the open command, each up to the timeout
    if lease < one_send:
        problems.append(
            Error(
                f"OPEN_SENDING_LEASE_SECONDS ({lease:g}) is shorter than one send may take: a token request and the "
                f"open command of SALTO_KS_HTTP_TIMEOUT_SECONDS ({timeout:g}) each, plus {LEASE_MARGIN_SECONDS:g} s.",
                hint=f"Set OPEN_SENDING_LEASE_SECONDS to at least {one_send:g}, or lower the HTTP timeout.",
                id="integrations.E001",
            )
        )
    for name in CLAIMING_TASKS:
        task = current_app.tasks.get(name)
        time_limit = getattr(task, "time_limit", None) or current_app.conf.task_time_limit
        if time_limit is not None and float(time_limit) >= lease:
            problems.append(
                Warning(
                    f"Task {name} may run {time_limit:g} s, as long as or longer than the {lease:g} s lease on the "
                    "row it holds: a slow run loses its row to the sweeper (it can no longer send or finish it, "
                    "the claim token fences it) and another worker settles it from Salto's entries.",
                    hint="Keep the task's hard time limit below OPEN_SENDING_LEASE_SECONDS.",
                    id="integrations.W001",
                )
            )
    return problems
