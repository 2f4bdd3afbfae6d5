"""Sending a claimed open request to Salto KS: one OpenAttempt per send, and what each answer means.

Called by `services.opening.open_request_perform` with the row in `sending` (claimed by this worker). Every
path ends the row: opened, failed, refused, expired, back to pending for a retry, or unconfirmed when Salto may
have acted without a readable answer (then `services.confirming` asks Salto's entries before anything is sent
again: ADR 0002, point 12).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bookings.models import Booking, BookingStatusChange
from bookings.services import booking_change_status, booking_set_field_value
from integrations.models import CachedLock, Integration, OpenAttempt, OpenRequest
from integrations.salto import client_for
from integrations.services.lifecycle import integration_flag_reactivation
from locks.clock import CLOCK_TOLERANCE_SECONDS
from locks.errors import (
    DeadlinePassed,
    DeviceOffline,
    IQOffline,
    OtpInvalid,
    OutcomeUnknown,
    ReactivationRequired,
    SaltoAuthError,
    SaltoError,
    SaltoPermanentError,
    SaltoTransientError,
)

logger = logging.getLogger(__name__)

State = OpenRequest.State
Outcome = OpenAttempt.Outcome

MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
# A retry must be *sent* before the freshness limit; keep a margin for the worker picking it up.
FRESHNESS_MARGIN_SECONDS = 1.0
# A token request needs at least this long; the open command itself never outlasts the freshness limit.
MIN_SEND_TIMEOUT_SECONDS = 1.0
# The command must be at Salto this long before the worker's lease on the row ends.
LEASE_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class PerformOutcome:
    state: str
    retry_in: float | None = None  # perform again after this many seconds (a retry, or an entries check)
    confirm_in: float | None = None  # check an opened request against Salto's entries after this many seconds


def freshness() -> timedelta:
    return timedelta(seconds=settings.OPEN_FRESHNESS_SECONDS)


def not_after(open_request: OpenRequest) -> datetime:
    """The last moment the open command may go out: the freshness limit (ADR 0005 decision 7: never late)."""
    return open_request.created_at + freshness()


def expire_reason() -> str:
    return (
        f"Not sent within {settings.OPEN_FRESHNESS_SECONDS} s (the freshness limit), so it was never sent: "
        "a door must not open late. Ask the guest to try again."
    )


def resent_expire_reason(sent_before: int | None = None) -> str:
    """Expired while waiting for a retry: it did go to Salto before, which did not open the door."""
    times = f"{sent_before} time(s)" if sent_before else "before"
    return (
        f"Not sent again within {settings.OPEN_FRESHNESS_SECONDS} s (the freshness limit): a door must not open "
        f"late. It was sent {times}{' before' if sent_before else ''} without opening the door; see its sends. "
        "Ask the guest to try again."
    )


def send_timeout(open_request: OpenRequest) -> float:
    """Seconds each call of this client may take (the token request too), at most what freshness is left.

    The open command itself is bounded more strictly by `not_after` (see `SaltoClient.open_lock`).
    """
    remaining = (not_after(open_request) - timezone.now()).total_seconds()
    return max(MIN_SEND_TIMEOUT_SECONDS, min(float(settings.SALTO_KS_HTTP_TIMEOUT_SECONDS), remaining))


def backoff_seconds(attempt: int, *, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter (half to full step), never shorter than Salto's Retry-After."""
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    delay = step * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography
    return max(delay, retry_after or 0.0)


def duration_ms(started: float | None) -> int | None:
    return None if started is None else int((time.monotonic() - started) * 1000)


def salto_fields(exc: SaltoError) -> dict[str, Any]:
    return {
        "salto_http_status": exc.http_status,
        "salto_error_code": (exc.error_code or "")[:20],
        "salto_message": exc.salto_message or "",
    }


def finish(
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
        token=open_request.claim_token,
        reason=reason,
        outcome_code=outcome_code,
        now=timezone.now(),
        duration_ms=duration_ms(started),
        **fields,
    )
    level = logging.INFO if state in (State.OPENED, State.REFUSED) else logging.WARNING
    logger.log(level, "Open request %s %s: %s", open_request.pk, state, reason or outcome_code)
    return updated


def _finish_failed(open_request: OpenRequest, exc: SaltoError, started: float, *, reason: str) -> bool:
    fields = salto_fields(exc)
    return finish(open_request, State.FAILED, reason=reason, outcome_code=exc.kind, started=started, **fields)


def entries_poll_seconds() -> float:
    return float(settings.OPEN_ENTRIES_POLL_SECONDS)


def hold_for_entries(open_request: OpenRequest, *, reason: str, outcome_code: str, **fields: Any) -> PerformOutcome:
    """The door may have opened: ask Salto's entries (after a short wait, entries lag) before any second send."""
    poll = entries_poll_seconds()
    held = OpenRequest.objects.hold_unconfirmed(
        open_request.pk,
        token=open_request.claim_token,
        check_at=timezone.now() + timedelta(seconds=poll),
        reason=reason,
        outcome_code=outcome_code,
        **fields,
    )
    if not held:
        return lost_hold(open_request, doing="mark it unconfirmed")
    logger.warning("Open request %s unconfirmed: %s", open_request.pk, reason)
    return PerformOutcome(State.UNCONFIRMED, retry_in=poll)


def lost_hold(open_request: OpenRequest, *, doing: str) -> PerformOutcome:
    """This worker's claim is gone (its lease ran out and another worker took the row): hands off."""
    current = OpenRequest.objects.filter(pk=open_request.pk).values_list("state", flat=True).first()
    logger.error(
        "Open request %s: this worker no longer holds it (now %s), so it did not %s", open_request.pk, current, doing
    )
    return PerformOutcome(str(current or "missing"))


def lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=settings.OPEN_SENDING_LEASE_SECONDS)


def send_deadline(open_request: OpenRequest, lease_end: datetime) -> datetime:
    """The command goes out before the freshness limit and before this worker's lease ends, whichever is first.

    Past its lease the sweeper may hand the row to another worker, which asks the entries and may send again:
    a command still leaving from here then could open the door twice.
    """
    return min(not_after(open_request), lease_end - timedelta(seconds=LEASE_MARGIN_SECONDS))


# --- one send ------------------------------------------------------------------------------------------


def send_open(open_request: OpenRequest, integration: Integration, lock_id: str) -> PerformOutcome:
    """Send the open command once, record the attempt, and move the request on by what came back."""
    # The fence, just before anything goes out: still ours? Then held for a full lease from now. Right after
    # the claim (the common case) the claim's own lease is as good, and the question costs nothing.
    lease_end: datetime = getattr(open_request, "lease_ends_at", None) or timezone.now()
    if (lease_end - timezone.now()).total_seconds() < settings.OPEN_SENDING_LEASE_SECONDS / 2:
        lease_end = lease_until()
        if not OpenRequest.objects.renew_lease(open_request.pk, token=open_request.claim_token, lease_until=lease_end):
            return lost_hold(open_request, doing="send it")
        open_request.lease_ends_at = lease_end  # type: ignore[attr-defined]
    attempt = _new_attempt(open_request)
    if open_request.sent_at is None:
        OpenRequest.objects.filter(pk=open_request.pk).update(sent_at=attempt.sent_at)
    logger.info(
        "Open request %s attempt %s: opening lock %s for booking %s",
        open_request.pk,
        attempt.number,
        lock_id,
        open_request.booking_id,
    )
    started = time.monotonic()
    clock_error = 0.0

    def unauthorized(response: Any) -> None:
        # Salto refused the token (it rejects before acting): that send is recorded as rejected, and the
        # client's one re-send with a new token becomes the next attempt.
        nonlocal attempt, started
        OpenAttempt.objects.filter(pk=attempt.pk).update(
            outcome=Outcome.REJECTED,
            answered_at=timezone.now(),
            duration_ms=duration_ms(started),
            http_status=response.status_code,
            error_kind="token_rejected",
        )
        attempt = _new_attempt(open_request)
        started = time.monotonic()

    try:
        with client_for(integration, timeout=send_timeout(open_request)) as client:
            # Reference: PATCH /v1.1/sites/{site}/locks/{lock}/locking (docs/salto-ks.md §7.1). The OTP is
            # computed at Salto's time of this very call (§7.2; the clock offset is measured, locks/clock.py).
            try:
                http_status = client.open_lock(
                    integration.site_id,
                    lock_id,
                    secret=integration.iq_secret,
                    pin=integration.current_pin,
                    not_after=send_deadline(open_request, lease_end),
                    on_unauthorized=unauthorized,
                )
            finally:
                # How far the OTP's time was from Salto's: this call's own reading against the one it used.
                clock_error = client.otp_clock_error()
    except OutcomeUnknown as exc:
        _answered(attempt, Outcome.UNCLEAR, started, exc)
        return hold_for_entries(
            open_request,
            reason=f"Attempt {attempt.number}: {exc}. Whether the door opened is being checked in Salto's entries.",
            outcome_code=exc.kind,
            duration_ms=duration_ms(started),
            **salto_fields(exc),
        )
    except SaltoTransientError as exc:
        _answered(attempt, Outcome.REJECTED if exc.sent else Outcome.NOT_SENT, started, exc)
        return _after_transient(open_request, exc, started, attempt.number)
    except SaltoAuthError as exc:
        _answered(attempt, Outcome.REJECTED if exc.sent else Outcome.NOT_SENT, started, exc)
        if not _finish_failed(open_request, exc, started, reason=f"Salto KS did not accept the account: {exc}"):
            return lost_hold(open_request, doing="record the failure")
        return PerformOutcome(State.FAILED)
    except SaltoPermanentError as exc:
        _answered(attempt, Outcome.NOT_SENT if not exc.sent else Outcome.REJECTED, started, exc)
        return _after_permanent(open_request, integration, lock_id, exc, started, clock_error=clock_error)
    except Exception as exc:
        # A bug or an unexpected library error in the middle of a send: whether it went out is unknown, so the
        # entries decide (never a blind second send, never "failed" for a door that may have opened).
        logger.exception("Open request %s: unexpected error while sending", open_request.pk)
        _answered(attempt, Outcome.UNCLEAR, started, None, error_kind="internal_error")
        return hold_for_entries(
            open_request,
            reason=f"Internal error while sending ({type(exc).__name__}); checking Salto's entries.",
            outcome_code="internal_error",
            duration_ms=duration_ms(started),
        )
    _answered(attempt, Outcome.ACCEPTED, started, None, http_status=http_status)
    if not finish_opened(open_request, integration, started=started, http_status=http_status):
        return lost_hold(open_request, doing="record the open (the door DID open)")
    confirm_in = entries_poll_seconds() if settings.OPEN_CONFIRM_OPENS else None
    return PerformOutcome(State.OPENED, confirm_in=confirm_in)


def _new_attempt(open_request: OpenRequest) -> OpenAttempt:
    # The count comes with the row when the claim loaded it (annotated), and is kept up to date here.
    so_far = getattr(open_request, "sends_so_far", None)
    if so_far is None:
        so_far = open_request.sends.count()
    attempt = OpenAttempt.objects.create(open_request=open_request, number=so_far + 1, sent_at=timezone.now())
    open_request.sends_so_far = attempt.number  # type: ignore[attr-defined]
    return attempt


def _answered(
    attempt: OpenAttempt,
    outcome: str,
    started: float,
    exc: SaltoError | None,
    *,
    http_status: int | None = None,
    error_kind: str = "",
) -> None:
    OpenAttempt.objects.filter(pk=attempt.pk).update(
        outcome=outcome,
        # For a lost answer: when it was given up on (the grace period before any second send counts from here).
        answered_at=timezone.now(),
        duration_ms=duration_ms(started),
        http_status=exc.http_status if exc is not None else http_status,
        salto_error_code=((exc.error_code or "") if exc is not None else "")[:20],
        salto_message=(exc.salto_message or "") if exc is not None else "",
        error_kind=exc.kind if exc is not None else error_kind,
    )


def _after_transient(
    open_request: OpenRequest, exc: SaltoTransientError, started: float, attempts: int
) -> PerformOutcome:
    """Salto clearly did not act (429, unreachable): try again with backoff, inside the freshness limit."""
    delay = backoff_seconds(attempts, retry_after=exc.retry_after)
    deadline = not_after(open_request) - timedelta(seconds=FRESHNESS_MARGIN_SECONDS)
    now = timezone.now()
    # Compared in seconds first: a Retry-After of hours must not become a datetime overflow.
    if attempts >= MAX_ATTEMPTS or delay > (deadline - now).total_seconds():
        reason = (
            f"Salto KS stayed unavailable ({exc}); the next try would be after the "
            f"{settings.OPEN_FRESHNESS_SECONDS} s freshness limit, so the door was not opened."
        )
        _finish_failed(open_request, exc, started, reason=reason)
        return PerformOutcome(State.FAILED)
    # Back to pending, so the retry claims it again like any other worker would (and the sweeper can
    # re-queue it if the retry message is lost).
    if not OpenRequest.objects.retry_later(
        open_request.pk,
        token=open_request.claim_token,
        due=now + timedelta(seconds=delay),
        reason=f"Attempt {attempts} failed ({exc}); retrying in {delay:.1f} s.",
        outcome_code=exc.kind,
        duration_ms=duration_ms(started),
        **salto_fields(exc),
    ):
        return lost_hold(open_request, doing="schedule the retry")
    logger.warning("Open request %s attempt %s: %s; retry in %.1f s", open_request.pk, attempts, exc, delay)
    return PerformOutcome(State.PENDING, retry_in=delay)


def _after_permanent(
    open_request: OpenRequest,
    integration: Integration,
    lock_id: str,
    exc: SaltoPermanentError,
    started: float,
    *,
    clock_error: float,
) -> PerformOutcome:
    """Salto refused (or the command was not sent in time): final, never retried."""
    if isinstance(exc, DeadlinePassed) and timezone.now() < not_after(open_request) - timedelta(
        seconds=FRESHNESS_MARGIN_SECONDS
    ):
        # Not the freshness limit but this worker's lease ran out before the command could go (it stalled):
        # nothing went out, and the request is still fresh, so it goes back to the queue like a retry.
        if not OpenRequest.objects.retry_later(
            open_request.pk,
            token=open_request.claim_token,
            due=timezone.now(),
            reason="This worker's hold on the request ran out before the command went out; sending it again.",
            outcome_code="lease_expired",
            duration_ms=duration_ms(started),
        ):
            return lost_hold(open_request, doing="put it back in the queue")
        return PerformOutcome(State.PENDING, retry_in=0.0)
    if isinstance(exc, DeadlinePassed):
        # Getting a token (or re-authenticating) used up the freshness left: this send reached Salto not at all.
        sent_before = open_request.sends.exclude(outcome__in=[Outcome.NOT_SENT]).count()
        reason = resent_expire_reason(sent_before) if sent_before else expire_reason()
        finish(open_request, State.EXPIRED, reason=reason, outcome_code="expired", started=started)
        return PerformOutcome(State.EXPIRED)
    if isinstance(exc, OtpInvalid) and abs(clock_error) > CLOCK_TOLERANCE_SECONDS:
        # The OTP was built for a time minutes away from Salto's (the offset was not known yet, or had changed):
        # a rejection says nothing about the PIN. It is the clock to repair, and flagging "needs re-activation"
        # would send the operator typing PINs. An OTP built at Salto's time and still rejected is the PIN's.
        reason = (
            f"{exc}. This server's clock is {clock_error:+.0f} s off Salto's: correct the server's time (NTP); "
            "the next open computes the one-time code at Salto's time. The IQ activation was not touched."
        )
        finish(
            open_request, State.FAILED, reason=reason, outcome_code="clock_skew", started=started, **salto_fields(exc)
        )
        return PerformOutcome(State.FAILED)
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


def finish_opened(
    open_request: OpenRequest,
    integration: Integration,
    *,
    started: float | None = None,
    http_status: int | None = 200,
    reason: str = "",
    opened_at: datetime | None = None,
) -> bool:
    """Opened: the row, then the booking (the last-open field and the check-in status, ADR 0005 decision 5)."""
    opened_at = opened_at or timezone.now()
    # One commit for the opened row and the booking's update, so a reader never sees one without the other; the
    # booking's part in a savepoint of its own, so a failing booking update cannot undo the record of the open.
    with transaction.atomic():
        if not finish(
            open_request,
            State.OPENED,
            reason=reason,
            outcome_code="opened",
            started=started,
            salto_http_status=http_status,
            salto_error_code="",
            salto_message="",
        ):
            # Salto opened the door, but the row is no longer ours: the audit trail now understates what
            # happened, which someone must know.
            logger.error(
                "Open request %s: lock %s WAS opened, but the request had already been closed as %s",
                open_request.pk,
                open_request.lock_id,
                OpenRequest.objects.filter(pk=open_request.pk).values_list("state", flat=True).first(),
            )
            return False
        try:
            with transaction.atomic():
                # The booking as the claim loaded it: the status change below re-reads it under its row lock.
                booking = open_request.booking if "booking" in open_request._state.fields_cache else None
                booking = booking or Booking.objects.get(pk=open_request.booking_id)
                # The *last* open, timezone-aware; then check-in, marked as the integration's own change so the
                # receiver does not open again.
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
        except Exception:
            # The door opened and the request says so; the booking's open time or check-in did not happen.
            logger.exception("Open request %s opened, but the booking could not be updated", open_request.pk)
    return True
