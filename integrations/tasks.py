"""Celery tasks of the opening flow: thin adapters taking ids and calling one service each.

`perform_open` is idempotent (the conditional claim lets exactly one caller send), which is what makes
`acks_late` safe: a task redelivered after a worker crash finds the row no longer pending and stops.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, shared_task
from django.utils import timezone

from integrations.idempotency import idempotency_keys_purge
from integrations.models import Integration
from integrations.services.confirming import open_request_confirm
from integrations.services.console import locks_refresh
from integrations.services.health import integration_health_check
from integrations.services.opening import (
    CONFIRM_OPEN_TASK,
    PERFORM_OPEN_TASK,
    open_request_perform,
    open_requests_sweep,
)

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name=PERFORM_OPEN_TASK,
    acks_late=True,
    ignore_result=True,
    soft_time_limit=30,
    time_limit=45,
)
def perform_open(self: Task[Any, Any], open_request_id: int) -> None:
    if self.request.is_eager:
        _perform_in_process(open_request_id)
        return
    outcome = open_request_perform(open_request_id=open_request_id)
    if outcome.confirm_in is not None:
        confirm_open.apply_async(args=(open_request_id,), countdown=outcome.confirm_in, **_same_queue(self))
    if outcome.retry_in is not None:
        # A fresh message rather than self.retry(): the row is pending again, so whichever delivery comes
        # first claims it (ADR 0002, point 2). Stay on the queue this message came from; without one
        # CELERY_TASK_ROUTES decides.
        perform_open.apply_async(args=(open_request_id,), countdown=outcome.retry_in, **_same_queue(self))


# Without a broker (the demo) the task runs inside the web request: it may wait out a Retry-After or an entries
# check, but never longer than this, and never by recursion. What is still open then stays pending or
# unconfirmed on the row, for the sweeper of a deployment with a worker and beat.
EAGER_MAX_WAIT_SECONDS = 25.0


def _perform_in_process(open_request_id: int) -> None:
    waited = 0.0
    outcome = open_request_perform(open_request_id=open_request_id)
    while outcome.retry_in is not None and waited + outcome.retry_in <= EAGER_MAX_WAIT_SECONDS:
        time.sleep(outcome.retry_in)
        waited += outcome.retry_in
        outcome = open_request_perform(open_request_id=open_request_id)
    if outcome.confirm_in is not None:
        confirm_open.apply(args=(open_request_id,), kwargs={"again": False})


def _same_queue(task: Task[Any, Any]) -> dict[str, Any]:
    """Stay on the queue this message came from (the worker consumes it); without one the route decides."""
    delivery_info = getattr(task.request, "delivery_info", None) or {}
    return {"queue": delivery_info["routing_key"]} if delivery_info.get("routing_key") else {}


@shared_task(bind=True, name=CONFIRM_OPEN_TASK, acks_late=True, ignore_result=True, soft_time_limit=30, time_limit=45)
def confirm_open(self: Task[Any, Any], open_request_id: int, again: bool = True) -> None:
    """Check an opened request against Salto's entries; look again later while they may still lag."""
    retry_in = open_request_confirm(open_request_id=open_request_id)
    if retry_in is not None and again and not self.request.is_eager:
        confirm_open.apply_async(args=(open_request_id,), countdown=retry_in, **_same_queue(self))


@shared_task(
    name="integrations.sweep_open_requests", acks_late=True, ignore_result=True, soft_time_limit=20, time_limit=30
)
def sweep_open_requests() -> None:
    open_requests_sweep()


@shared_task(
    name="integrations.check_integration_health", acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90
)
def check_integration_health(integration_id: int) -> None:
    integration = Integration.objects.filter(pk=integration_id, is_active=True).first()
    if integration is not None:
        integration_health_check(integration=integration)


@shared_task(name="integrations.check_integrations_health", ignore_result=True, soft_time_limit=20, time_limit=30)
def check_integrations_health() -> None:
    for integration_id in Integration.objects.filter(is_active=True).values_list("pk", flat=True):
        check_integration_health.delay(integration_id)


@shared_task(name="integrations.refresh_lock_lists", ignore_result=True, soft_time_limit=20, time_limit=30)
def refresh_lock_lists() -> None:
    for integration_id in Integration.objects.filter(is_active=True).exclude(site_id="").values_list("pk", flat=True):
        refresh_lock_list.delay(integration_id)


@shared_task(
    name="integrations.refresh_lock_list", acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90
)
def refresh_lock_list(integration_id: int) -> None:
    # The cached online state is what refuses an open to an offline lock before anything is sent.
    integration = Integration.objects.filter(pk=integration_id, is_active=True).first()
    if integration is not None:
        outcome = locks_refresh(integration=integration)
        if not outcome.ok:
            logger.warning("Lock list of integration %s not refreshed: %s", integration_id, outcome.text)


@shared_task(name="integrations.purge_idempotency_keys", ignore_result=True, soft_time_limit=60, time_limit=90)
def purge_idempotency_keys() -> None:
    removed = idempotency_keys_purge(now=timezone.now())
    if removed:
        logger.info("Purged %s expired Idempotency-Keys", removed)
