"""Opening doors: open requests as audit trail and outbox, and sending them to Salto KS exactly once.

The flow (docs/architecture.md, "Open"): `open_request_create` records the policy's answer as a pending or
refused row, queuing `perform_open` on commit; the task calls `open_request_perform`, which claims the row
with a conditional UPDATE (pending → sending: whoever updates 1 row sends, everyone else stops), refuses to
send after the freshness limit, re-checks the policy and sends. No transaction or row lock is held across
the Salto HTTP call. Every change of the row's state is a named transition of `OpenRequest.objects`.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bookings.models import Booking, BookingStatusChange
from bookings.services import Actor, acting_user, booking_change_status, booking_set_field_value
from integrations.models import CachedLock, Integration, OpenRequest
from integrations.salto import client_for
from integrations.selectors import OpenAssessment, booking_open_assessment
from integrations.services.lifecycle import integration_flag_reactivation
from locks.errors import (
    DeadlinePassed,
    DeviceOffline,
    IQOffline,
    ReactivationRequired,
    SaltoAuthError,
    SaltoError,
    SaltoPermanentError,
    SaltoTransientError,
)

logger = logging.getLogger(__name__)

State = OpenRequest.State

# The task is named, not imported: tasks.py imports this module (a task is a thin adapter over a service), and
# a service does not import its adapters back. Celery resolves the name in its registry (tasks are registered
# when the app is ready, see IntegrationsConfig.ready).
PERFORM_OPEN_TASK = "integrations.perform_open"
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
# A retry must be *sent* before the freshness limit; keep a margin for the worker picking it up.
FRESHNESS_MARGIN_SECONDS = 1.0
# A token request needs at least this long; the open command itself never outlasts the freshness limit.
MIN_SEND_TIMEOUT_SECONDS = 1.0
# Celery's countdown and this clock may differ slightly; a retry may be claimed this much before it is due.
CLAIM_EARLY_SECONDS = 0.5
# A pending row whose due time passed this long ago lost its message; the sweeper queues it again.
SWEEP_GRACE_SECONDS = 5.0
# A row stuck in "sending" this long after the freshness limit belongs to a worker that died mid-call.
SENDING_ABANDONED_SECONDS = 60.0


def _send_timeout(open_request: OpenRequest) -> float:
    """Seconds each call of this client may take (the token request too), at most what freshness is left.

    The open command itself is bounded more strictly by `not_after` (see `open_lock`).
    """
    remaining = (_not_after(open_request) - timezone.now()).total_seconds()
    return max(MIN_SEND_TIMEOUT_SECONDS, min(float(settings.SALTO_KS_HTTP_TIMEOUT_SECONDS), remaining))


def _not_after(open_request: OpenRequest) -> datetime:
    """The last moment the open command may go out: the freshness limit (ADR 0005 decision 7: never late)."""
    return open_request.created_at + _freshness()


@dataclass(frozen=True)
class OpenRequestResult:
    open_request: OpenRequest
    created: bool  # False: collapsed into an identical request inside the dedupe window


@dataclass(frozen=True)
class PerformOutcome:
    state: str
    retry_in: float | None = None


@dataclass(frozen=True)
class SweepResult:
    requeued: list[int]
    expired: int
    abandoned: int


def open_request_create(
    *, booking: Booking, trigger: str, actor: Actor = None, assessment: OpenAssessment | None = None
) -> OpenRequestResult:
    """Record the request with the policy's answer (pending, or refused with the reason).

    ASSESSMENT is the policy's answer the caller already has (the status-change receiver asks it to decide
    whether to open at all); without one the policy is evaluated here, under the booking's row lock. Either
    way it is evaluated once per request, and again just before sending (ADR 0005, decision 2).
    Identical requests for one booking inside OPEN_DEDUPE_SECONDS collapse into the first one (ADR 0005,
    decision 4; ADR 0002, point 1): a double click, an announcement delivered twice, staff and the status
    change at once. The booking row is locked while checking and inserting so two web processes cannot both
    miss each other's row. A pending request queues `perform_open` on commit.
    """
    with transaction.atomic():
        # Lock only the booking row (no joins: PostgreSQL refuses FOR UPDATE on the nullable side of a join).
        Booking.objects.select_for_update().only("pk").get(pk=booking.pk)
        now = timezone.now()
        if assessment is None:
            fresh = Booking.objects.select_related("object__parent", "status").get(pk=booking.pk)
            assessment = booking_open_assessment(booking=fresh, now=now)
        decision = assessment.decision
        lock = decision.lock

        window_start = now - timedelta(seconds=settings.OPEN_DEDUPE_SECONDS)
        recent = OpenRequest.objects.filter(booking_id=booking.pk, created_at__gte=window_start)
        if decision.allowed:
            assert lock is not None
            recent = recent.filter(state__in=[State.PENDING, State.SENDING, State.OPENED], lock_id=lock.lock_id)
        else:
            recent = recent.filter(state=State.REFUSED, outcome_code=str(decision.refusal or ""))
        existing = recent.order_by("-created_at", "-id").first()
        if existing is not None:
            logger.info(
                "Open request for booking %s collapsed into open request %s (%s)", booking.pk, existing.pk, trigger
            )
            return OpenRequestResult(existing, created=False)

        open_request = OpenRequest.objects.create(
            booking_id=booking.pk,
            integration=assessment.integration,
            lock_id=lock.lock_id if lock else "",
            lock_name=lock.lock_name if lock else "",
            rule=str(lock.rule) if lock else "",
            rule_description=lock.description if lock else "",
            trigger=trigger,
            actor=acting_user(actor),
            state=State.PENDING if decision.allowed else State.REFUSED,
            reason="" if decision.allowed else decision.reason,
            outcome_code="" if decision.allowed else str(decision.refusal or ""),
            next_attempt_at=now if decision.allowed else None,
            finished_at=None if decision.allowed else now,
        )
        if decision.allowed:
            request_id = open_request.pk
            transaction.on_commit(lambda: open_request_enqueue(open_request_id=request_id))
    logger.info(
        "Open request %s for booking %s (%s): %s%s",
        open_request.pk,
        booking.pk,
        trigger,
        open_request.state,
        f" - {open_request.reason}" if open_request.reason else "",
    )
    return OpenRequestResult(open_request, created=True)


def open_request_enqueue(*, open_request_id: int) -> None:
    """Queue the send of a pending request now (its queue comes from CELERY_TASK_ROUTES)."""
    current_app.signature(PERFORM_OPEN_TASK, args=(open_request_id,)).apply_async()


def _freshness() -> timedelta:
    return timedelta(seconds=settings.OPEN_FRESHNESS_SECONDS)


def _expire_reason() -> str:
    return (
        f"Not sent within {settings.OPEN_FRESHNESS_SECONDS} s (the freshness limit), so it was never sent: "
        "a door must not open late. Ask the guest to try again."
    )


def open_request_perform(*, open_request_id: int) -> PerformOutcome:
    """Send one pending open request to Salto KS, at most once. Safe to call any number of times."""
    now = timezone.now()
    fresh_since = now - _freshness()
    # A retry waits for its due time (Salto's Retry-After): a duplicate or early message must not jump it.
    claimed = OpenRequest.objects.claim(
        open_request_id, fresh_since=fresh_since, due_before=now + timedelta(seconds=CLAIM_EARLY_SECONDS)
    )
    if not claimed:
        expired = OpenRequest.objects.expire_stale(
            pk=open_request_id, created_before=fresh_since, reason=_expire_reason(), now=now
        )
        if expired:
            logger.warning("Open request %s expired before it was sent", open_request_id)
            return PerformOutcome(State.EXPIRED)
        current = OpenRequest.objects.filter(pk=open_request_id).values_list("state", flat=True).first()
        # Someone else claimed it, or it is finished: a redelivered task or a second worker stops here.
        logger.info("Open request %s not claimed (state %s)", open_request_id, current)
        return PerformOutcome(str(current or "missing"))

    open_request = OpenRequest.objects.select_related("booking__object__parent", "booking__status").get(
        pk=open_request_id
    )
    # ADR 0005 decision 2: the policy again, just before sending (status, window, activation may have changed).
    assessment = booking_open_assessment(booking=open_request.booking)
    decision = assessment.decision
    integration = assessment.integration
    if not decision.allowed or integration is None or decision.lock is None:
        _finish(open_request, State.REFUSED, reason=decision.reason, outcome_code=str(decision.refusal or ""))
        return PerformOutcome(State.REFUSED)

    lock = decision.lock
    if (lock.lock_id, integration.pk) != (open_request.lock_id, open_request.integration_id):
        # The mapping changed since the request was made; send to the lock that is right now, and say so.
        OpenRequest.objects.filter(pk=open_request.pk).update(
            integration=integration,
            lock_id=lock.lock_id,
            lock_name=lock.lock_name,
            rule=str(lock.rule),
            rule_description=lock.description,
        )

    sent_at = timezone.now()
    if open_request.sent_at is None:
        OpenRequest.objects.filter(pk=open_request.pk).update(sent_at=sent_at)
    attempt = open_request.attempts
    logger.info(
        "Open request %s attempt %s: opening lock %s for booking %s",
        open_request.pk,
        attempt,
        lock.lock_id,
        open_request.booking_id,
    )
    started = time.monotonic()
    try:
        with client_for(integration, timeout=_send_timeout(open_request)) as client:
            # The OTP is computed from the UTC time of this very call (docs/salto-ks.md §7.2).
            # Reference: PATCH /v1.1/sites/{site}/locks/{lock}/locking (docs/salto-ks.md §7.1)
            client.open_lock(
                integration.site_id,
                lock.lock_id,
                secret=integration.iq_secret,
                pin=integration.current_pin,
                at=timezone.now(),
                not_after=_not_after(open_request),
            )
    except SaltoTransientError as exc:
        return _after_transient(open_request, exc, started)
    except SaltoAuthError as exc:
        _finish_failed(open_request, exc, started, reason=f"Salto KS did not accept the account: {exc}")
        return PerformOutcome(State.FAILED)
    except SaltoPermanentError as exc:
        return _after_permanent(open_request, integration, lock.lock_id, exc, started)
    except Exception as exc:
        # A bug or an unexpected library error: record it on the row so staff are not left guessing.
        logger.exception("Open request %s failed unexpectedly", open_request.pk)
        _finish(
            open_request,
            State.FAILED,
            reason=f"Internal error while opening ({type(exc).__name__}); see the worker log.",
            outcome_code="internal_error",
            started=started,
        )
        return PerformOutcome(State.FAILED)
    _finish_opened(open_request, integration, started)
    return PerformOutcome(State.OPENED)


def _after_permanent(
    open_request: OpenRequest, integration: Integration, lock_id: str, exc: SaltoPermanentError, started: float
) -> PerformOutcome:
    """Salto refused (or the command was not sent in time): final, never retried."""
    if isinstance(exc, DeadlinePassed):
        # Getting a token (or re-authenticating) used up the freshness left: nothing reached Salto.
        _finish(open_request, State.EXPIRED, reason=_expire_reason(), outcome_code="expired", started=started)
        return PerformOutcome(State.EXPIRED)
    if isinstance(exc, ReactivationRequired):
        # The stored secret/PIN cannot work; repeating it gets the account blocked for ~20 minutes
        # (docs/salto-ks.md §0, §3.4), so ask for GET PIN / Set PIN again instead (ADR 0005, decision 6).
        reason = f"{exc}. The integration needs re-activation: run GET PIN and Set PIN again."
        _finish_failed(open_request, exc, started, reason=reason)
        integration_flag_reactivation(integration=integration, reason=str(exc))
        return PerformOutcome(State.FAILED)
    if isinstance(exc, DeviceOffline):
        _finish_failed(open_request, exc, started, reason=f"Salto KS reports the lock or its IQ is offline: {exc}")
        # Remembered on the cached lock so the next open is refused before sending (ADR 0002, point 9); the
        # next GET locks or beat refresh puts the real state back.
        field = "iq_online" if isinstance(exc, IQOffline) else "online"
        CachedLock.objects.filter(integration=integration, lock_id=lock_id).update(**{field: False})
        return PerformOutcome(State.FAILED)
    _finish_failed(open_request, exc, started, reason=f"Salto KS refused to open the lock: {exc}")
    return PerformOutcome(State.FAILED)


def _duration_ms(started: float | None) -> int | None:
    return None if started is None else int((time.monotonic() - started) * 1000)


def _finish(
    open_request: OpenRequest,
    state: str,
    *,
    reason: str,
    outcome_code: str,
    started: float | None = None,
    **fields: Any,
) -> bool:
    updated = OpenRequest.objects.finish(
        open_request.pk,
        state,
        reason=reason,
        outcome_code=outcome_code,
        now=timezone.now(),
        duration_ms=_duration_ms(started),
        **fields,
    )
    level = logging.INFO if state in (State.OPENED, State.REFUSED) else logging.WARNING
    logger.log(level, "Open request %s %s: %s", open_request.pk, state, reason or outcome_code)
    return bool(updated)


def _salto_fields(exc: SaltoError) -> dict[str, Any]:
    return {
        "salto_http_status": exc.http_status,
        "salto_error_code": (exc.error_code or "")[:20],
        "salto_message": exc.salto_message or "",
    }


def _finish_failed(open_request: OpenRequest, exc: SaltoError, started: float, *, reason: str) -> None:
    _finish(open_request, State.FAILED, reason=reason, outcome_code=exc.kind, started=started, **_salto_fields(exc))


def backoff_seconds(attempt: int, *, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter (half to full step), never shorter than Salto's Retry-After."""
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    delay = step * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography
    return max(delay, retry_after or 0.0)


def _after_transient(open_request: OpenRequest, exc: SaltoTransientError, started: float) -> PerformOutcome:
    retry_after = exc.retry_after
    delay = backoff_seconds(open_request.attempts, retry_after=retry_after)
    deadline = open_request.created_at + _freshness() - timedelta(seconds=FRESHNESS_MARGIN_SECONDS)
    due = timezone.now() + timedelta(seconds=delay)
    if open_request.attempts >= MAX_ATTEMPTS or due > deadline:
        reason = (
            f"Salto KS stayed unavailable ({exc}); the next try would be after the "
            f"{settings.OPEN_FRESHNESS_SECONDS} s freshness limit, so the door was not opened."
        )
        _finish_failed(open_request, exc, started, reason=reason)
        return PerformOutcome(State.FAILED)
    # Back to pending, so the retry claims it again like any other worker would (and the sweeper can
    # re-queue it if the retry message is lost).
    OpenRequest.objects.retry_later(
        open_request.pk,
        due=due,
        reason=f"Attempt {open_request.attempts} failed ({exc}); retrying in {delay:.1f} s.",
        outcome_code=exc.kind,
        duration_ms=_duration_ms(started),
        **_salto_fields(exc),
    )
    logger.warning(
        "Open request %s attempt %s transient failure (%s); retry in %.1f s",
        open_request.pk,
        open_request.attempts,
        exc,
        delay,
    )
    return PerformOutcome(State.PENDING, retry_in=delay)


def _finish_opened(open_request: OpenRequest, integration: Integration, started: float) -> None:
    opened_at = timezone.now()
    with transaction.atomic():
        if not _finish(
            open_request,
            State.OPENED,
            reason="",
            outcome_code="opened",
            started=started,
            salto_http_status=200,
            salto_error_code="",
            salto_message="",
        ):
            # Salto opened the door, but the row is no longer ours (the sweeper gave it up as abandoned):
            # the audit trail now understates what happened, which someone must know.
            logger.error(
                "Open request %s: lock %s WAS opened, but the request had already been closed as %s",
                open_request.pk,
                open_request.lock_id,
                OpenRequest.objects.filter(pk=open_request.pk).values_list("state", flat=True).first(),
            )
            return
        booking = Booking.objects.get(pk=open_request.booking_id)
        # ADR 0005 decision 5: the *last* open, timezone-aware; then check-in, marked as the integration's own
        # change so the receiver does not open again.
        if integration.last_open_field_id is not None:
            assert integration.last_open_field is not None
            booking_set_field_value(booking=booking, field=integration.last_open_field, value=opened_at)
        if integration.checkin_status_id is not None and booking.status_id != integration.checkin_status_id:
            assert integration.checkin_status is not None
            booking_change_status(
                booking=booking,
                status=integration.checkin_status,
                actor=open_request.actor,
                source=BookingStatusChange.Source.INTEGRATION,
            )


def open_requests_sweep() -> SweepResult:
    """Expire stale pending rows, re-queue pending rows whose message was lost, fail abandoned sends."""
    now = timezone.now()
    fresh_since = now - _freshness()
    expired = OpenRequest.objects.expire_stale(created_before=fresh_since, reason=_expire_reason(), now=now)
    overdue = now - timedelta(seconds=SWEEP_GRACE_SECONDS)
    candidates = list(
        OpenRequest.objects.filter(state=State.PENDING, created_at__gte=fresh_since)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=overdue))
        .values_list("pk", flat=True)
    )
    requeued: list[int] = []
    for pk in candidates:
        if OpenRequest.objects.mark_due(pk, overdue_before=overdue, now=now):
            open_request_enqueue(open_request_id=pk)
            requeued.append(pk)
    abandoned = OpenRequest.objects.abandon_stale(
        created_before=fresh_since - timedelta(seconds=SENDING_ABANDONED_SECONDS),
        reason="The worker stopped while sending; whether the door opened is unknown. Check the lock's entries.",
        now=now,
    )
    if expired or requeued or abandoned:
        logger.warning("Open sweep: %s expired, %s re-queued, %s abandoned", expired, len(requeued), abandoned)
    return SweepResult(requeued=requeued, expired=expired, abandoned=abandoned)
