"""Opening doors: open requests as audit trail and outbox, sent to Salto KS once and never late.

The flow (docs/architecture.md, "Open"): `open_request_create` records the policy's answer as a pending or
refused row, queuing `perform_open` on commit; the task calls `open_request_perform`, which claims the row
with a conditional UPDATE (pending → sending: whoever updates 1 row sends, everyone else stops), refuses to
send after the freshness limit, re-checks the policy and sends (`services.sending`). A send whose answer was
lost leaves the row unconfirmed; the same task then asks Salto's entries (`services.confirming`) before it
would ever send again. No transaction or row lock is held across a Salto HTTP call. Every change of the row's
state is a named transition of `OpenRequest.objects`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from bookings.models import Booking
from bookings.services import Actor, acting_user
from integrations.models import OpenRequest
from integrations.selectors import OpenAssessment, booking_open_assessment
from integrations.services.confirming import (
    UNCONFIRMED_GIVE_UP_SECONDS,
    confirmation_of,
    entries_verdict,
    grace,
    last_send,
    opened_reason,
)
from integrations.services.sending import (
    BACKOFF_BASE_SECONDS,
    FRESHNESS_MARGIN_SECONDS,
    MAX_ATTEMPTS,
    PerformOutcome,
    expire_reason,
    finish,
    finish_opened,
    freshness,
    hold_for_entries,
    lease_until,
    lost_hold,
    not_after,
    resent_expire_reason,
    send_open,
)

logger = logging.getLogger(__name__)

State = OpenRequest.State

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "MAX_ATTEMPTS",
    "PerformOutcome",
    "open_request_create",
    "open_request_enqueue",
    "open_request_perform",
    "open_requests_sweep",
]

# The task is named, not imported: tasks.py imports this module (a task is a thin adapter over a service), and
# a service does not import its adapters back. Celery resolves the name in its registry (tasks are registered
# when the app is ready, see IntegrationsConfig.ready).
PERFORM_OPEN_TASK = "integrations.perform_open"
CONFIRM_OPEN_TASK = "integrations.confirm_open"
# Celery's countdown and this clock may differ slightly; a retry may be claimed this much before it is due.
CLAIM_EARLY_SECONDS = 0.5
# A pending row whose due time passed this long ago lost its message; the sweeper queues it again.
SWEEP_GRACE_SECONDS = 5.0
QUEUE_DOWN_REASON = (
    "The task queue could not be reached; the request is kept and the sweeper sends it within about 20 s "
    "(if the worker runs)."
)


@dataclass(frozen=True)
class OpenRequestResult:
    open_request: OpenRequest
    created: bool  # False: collapsed into an identical request inside the dedupe window


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
    way it is evaluated once per request, and again just before sending (ADR 0005, decision 2). A passed
    assessment was made just before the row lock: a status change in between can record a pending row the
    policy would now refuse, and the check just before sending refuses it then, before anything is sent.
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
        elif assessment.booking_id != booking.pk:
            raise ValueError(f"the assessment of booking {assessment.booking_id} was passed for booking {booking.pk}")
        decision = assessment.decision
        lock = decision.lock

        window_start = now - timedelta(seconds=settings.OPEN_DEDUPE_SECONDS)
        recent = OpenRequest.objects.filter(booking_id=booking.pk, created_at__gte=window_start)
        if decision.allowed:
            assert lock is not None
            in_flight = [State.PENDING, State.SENDING, State.UNCONFIRMED, State.OPENED]
            recent = recent.filter(state__in=in_flight, lock_id=lock.lock_id)
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
        queued: list[bool] = []
        if decision.allowed:
            request_id = open_request.pk
            transaction.on_commit(lambda: queued.append(open_request_enqueue(open_request_id=request_id)))
    if queued and (queued == [False] or current_app.conf.task_always_eager):
        # The queue was down (the row now says why it waits), or the task ran in-process (the send is over):
        # the caller's answer must say so. Otherwise the row is as created: pending, queued.
        open_request.refresh_from_db(fields=["state", "reason"])
    logger.info(
        "Open request %s for booking %s (%s): %s%s",
        open_request.pk,
        booking.pk,
        trigger,
        open_request.state,
        f" - {open_request.reason}" if open_request.reason else "",
    )
    return OpenRequestResult(open_request, created=True)


def open_request_enqueue(*, open_request_id: int) -> bool:
    """Queue the send of a pending (or unconfirmed) request now; its queue comes from CELERY_TASK_ROUTES.

    The row is committed before this runs, so a broker that is down loses nothing: the sweeper dispatches the
    row later. The caller is answered as for any pending request, and the row says why it waits.
    """
    # From the registry, not by signature: an unregistered name must fail loudly (NotRegistered), never fall back
    # to a silent send_task that no eager run would execute.
    task = current_app.tasks[PERFORM_OPEN_TASK]
    try:
        task.apply_async(args=(open_request_id,))
    except (OperationalError, OSError):
        logger.exception("Open request %s: the task queue could not be reached; left to the sweeper", open_request_id)
        OpenRequest.objects.filter(pk=open_request_id, state=State.PENDING).update(reason=QUEUE_DOWN_REASON)
        return False
    return True


def open_request_perform(*, open_request_id: int) -> PerformOutcome:
    """Send one pending open request to Salto KS, at most once; settle an unconfirmed one. Safe to repeat."""
    now = timezone.now()
    fresh_since = now - freshness()
    lease_end = lease_until()
    # A retry waits for its due time (Salto's Retry-After): a duplicate or early message must not jump it.
    due_before = now + timedelta(seconds=CLAIM_EARLY_SECONDS)
    # Most deliveries are a pending request's first send: that claim first, one query in the common case.
    token = OpenRequest.objects.claim(
        open_request_id, fresh_since=fresh_since, due_before=due_before, lease_until=lease_end
    )
    checking = False
    if not token:
        token = OpenRequest.objects.claim_unconfirmed(open_request_id, due_before=due_before, lease_until=lease_end)
        checking = bool(token)
    if not token:
        expired = OpenRequest.objects.expire_stale(
            pk=open_request_id,
            created_before=fresh_since,
            reason=expire_reason(),
            resent_reason=resent_expire_reason(),
            now=now,
        )
        if expired:
            logger.warning("Open request %s expired before it was sent", open_request_id)
            return PerformOutcome(State.EXPIRED)
        current = OpenRequest.objects.filter(pk=open_request_id).values_list("state", flat=True).first()
        # Someone else claimed it, it is not due yet, or it is finished: a redelivered task stops here.
        logger.info("Open request %s not claimed (state %s)", open_request_id, current)
        return PerformOutcome(str(current or "missing"))

    open_request = (
        OpenRequest.objects.select_related("booking__object__parent", "booking__status", "integration")
        .annotate(sends_so_far=Count("sends"))
        .get(pk=open_request_id)
    )
    # This claim's own token and lease, never ones read back (another claim could have written them since).
    open_request.claim_token = token
    open_request.lease_ends_at = lease_end  # type: ignore[attr-defined]
    try:
        if checking:
            return _settle_unconfirmed(open_request)
        return _policy_then_send(open_request)
    except Exception as exc:
        # Whatever went wrong (a bug, the database), the row must not stay "sending": if anything may have
        # been sent, the entries decide; if nothing was, it failed with a reason.
        logger.exception("Open request %s failed unexpectedly", open_request.pk)
        give_up = not_after(open_request) + timedelta(seconds=UNCONFIRMED_GIVE_UP_SECONDS)
        may_have_opened = open_request.sends.exclude(outcome__in=["rejected", "not_sent"]).exists()
        if may_have_opened and timezone.now() < give_up:
            return hold_for_entries(
                open_request,
                reason=f"Internal error ({type(exc).__name__}); checking Salto's entries.",
                outcome_code="internal_error",
            )
        unknown = " Whether the door opened is unknown; check the lock's entries." if may_have_opened else ""
        finish(
            open_request,
            State.FAILED,
            reason=f"Internal error while opening ({type(exc).__name__}); see the worker log.{unknown}",
            outcome_code="internal_error",
        )
        return PerformOutcome(State.FAILED)


def _policy_then_send(open_request: OpenRequest) -> PerformOutcome:
    # ADR 0005 decision 2: the policy again, just before sending (status, window, activation may have changed).
    assessment = booking_open_assessment(booking=open_request.booking)
    decision = assessment.decision
    integration = assessment.integration
    if not decision.allowed or integration is None or decision.lock is None:
        finish(open_request, State.REFUSED, reason=decision.reason, outcome_code=str(decision.refusal or ""))
        return PerformOutcome(State.REFUSED)
    lock = decision.lock
    if (lock.lock_id, integration.pk) != (open_request.lock_id, open_request.integration_id):
        # The mapping changed since the request was made; send to the lock that is right now, and say so.
        moved = OpenRequest.objects.held(open_request.pk, open_request.claim_token).update(
            integration=integration,
            lock_id=lock.lock_id,
            lock_name=lock.lock_name,
            rule=str(lock.rule),
            rule_description=lock.description,
        )
        if not moved:
            return lost_hold(open_request, doing="send it")
        open_request.integration, open_request.lock_id = integration, lock.lock_id
    return send_open(open_request, integration, lock.lock_id)


def _settle_unconfirmed(open_request: OpenRequest) -> PerformOutcome:
    """Did the door open? Salto's entries say; only when they show nothing, long enough, is it sent again."""
    seen, problem = entries_verdict(open_request)
    entries = seen.mine if seen is not None else None
    now = timezone.now()
    integration = open_request.integration
    if entries and integration is not None:
        finish_opened(open_request, integration, reason=opened_reason(entries), http_status=None)
        OpenRequest.objects.record_confirmation(
            open_request.pk, confirmation=confirmation_of(entries), entry_ids=[e.id for e in entries], now=now
        )
        return PerformOutcome(State.OPENED)
    sent = last_send(open_request) or open_request.created_at
    if entries is None:
        if now < not_after(open_request) + timedelta(seconds=UNCONFIRMED_GIVE_UP_SECONDS):
            return hold_for_entries(
                open_request,
                reason=f"Salto's entries could not be read ({problem}); asking again shortly.",
                outcome_code="entries_unreadable",
            )
        finish(
            open_request,
            State.FAILED,
            reason=f"Whether the door opened is unknown: Salto's entries could not be read ({problem}).",
            outcome_code="outcome_unknown",
        )
        return PerformOutcome(State.FAILED)
    if now < sent + grace():
        # Entries may lag behind the open: look again before concluding anything.
        return hold_for_entries(
            open_request,
            reason="No open in Salto's entries yet; looking again shortly (entries may lag).",
            outcome_code=open_request.outcome_code or "unconfirmed",
        )
    if seen is not None and seen.nearby:
        # Another open of this lock since this request's first send, matched to another request or to none:
        # it may be this request's. Never twice: it is not sent again.
        lock = open_request.lock_name or open_request.lock_id
        finish(
            open_request,
            State.FAILED,
            reason=(
                f"Not sent again: Salto's entries show an open of lock '{lock}' at {_entry_time(seen.nearby[0])} "
                "that may be this request's (another request opened the same lock moments before). Check the "
                "door; ask the guest to try again if it stayed shut."
            ),
            outcome_code="outcome_unknown",
        )
        return PerformOutcome(State.FAILED)
    if now < not_after(open_request) - timedelta(seconds=FRESHNESS_MARGIN_SECONDS) and (
        open_request.sends.count() < MAX_ATTEMPTS
    ):
        logger.warning("Open request %s: no open in Salto's entries; sending again", open_request.pk)
        return _policy_then_send(open_request)
    finish(
        open_request,
        State.FAILED,
        reason=(
            f"Not opened: Salto's entries show no open of lock '{open_request.lock_name or open_request.lock_id}' "
            f"within {settings.OPEN_ENTRIES_GRACE_SECONDS} s of the last send, and the "
            f"{settings.OPEN_FRESHNESS_SECONDS} s freshness limit has passed, so it was not sent again."
        ),
        outcome_code="not_opened",
    )
    return PerformOutcome(State.FAILED)


def _entry_time(entry: Any) -> str:
    moment = entry.utc_date_time if entry.utc_date_time.tzinfo else entry.utc_date_time.replace(tzinfo=UTC)
    return f"{timezone.localtime(moment):%H:%M:%S}"


def open_requests_sweep() -> SweepResult:
    """Expire stale pending rows, take back rows of dead workers, re-queue rows whose message was lost."""
    now = timezone.now()
    fresh_since = now - freshness()
    expired = OpenRequest.objects.expire_stale(
        created_before=fresh_since, reason=expire_reason(), resent_reason=resent_expire_reason(), now=now
    )
    abandoned = OpenRequest.objects.abandon_stale(
        now=now,
        unleased_before=fresh_since - timedelta(seconds=settings.OPEN_SENDING_LEASE_SECONDS),
        reason="The worker stopped while sending; whether the door opened is being checked in Salto's entries.",
    )
    overdue = now - timedelta(seconds=SWEEP_GRACE_SECONDS)
    waiting = Q(state=State.PENDING, created_at__gte=fresh_since) | Q(state=State.UNCONFIRMED)
    candidates = list(
        OpenRequest.objects.filter(waiting)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=overdue) | Q(pk__in=abandoned))
        .values_list("pk", flat=True)
    )
    requeued: list[int] = []
    for pk in candidates:
        due_now = pk in abandoned or OpenRequest.objects.mark_due(pk, overdue_before=overdue, now=now)
        if due_now and open_request_enqueue(open_request_id=pk):
            requeued.append(pk)
    if settings.OPEN_CONFIRM_OPENS:
        _requeue_lost_confirmations(now)
    if expired or requeued or abandoned:
        logger.warning("Open sweep: %s expired, %s re-queued, %s abandoned", expired, len(requeued), len(abandoned))
    return SweepResult(requeued=requeued, expired=expired, abandoned=len(abandoned))


def _requeue_lost_confirmations(now: Any) -> None:
    """Opened rows never checked against the entries (the confirm message was lost) are checked again."""
    waited = timedelta(seconds=settings.OPEN_ENTRIES_GRACE_SECONDS + 2 * settings.OPEN_ENTRIES_POLL_SECONDS)
    unchecked = OpenRequest.objects.filter(
        state=State.OPENED,
        confirmation="",
        finished_at__lt=now - waited,
        finished_at__gte=now - timedelta(hours=1),
        integration__isnull=False,
    ).values_list("pk", flat=True)
    for pk in unchecked[:100]:
        try:
            current_app.tasks[CONFIRM_OPEN_TASK].apply_async(args=(pk,))
        except (OperationalError, OSError):
            logger.warning("Open request %s: confirmation not queued (task queue unreachable)", pk)
            return
