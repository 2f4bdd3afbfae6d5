"""The Salto KS integration as an operator configures it, its lock cache, mappings and open requests.

Invariants live here as constraints; the behaviour lives in services.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from bookings.models import BookableObject, Booking, BookingField, BookingStatus
from integrations.encryption import EncryptedTextField
from locks.environments import Environment

SECRET_FIELDS = ("password", "iq_secret", "current_pin")
# Which account and site a Salto answer belongs to. Changing one of these makes earlier answers (site id,
# access test, IQ secret and PIN, lock list) meaningless, or worse, wrong for production (ADR 0005, decision 9).
IDENTITY_FIELDS = ("environment", "site_uid", "username")
# Stray spaces around a pasted credential are a classic cause of invalid_grant (the manual's hints): these are
# stored trimmed, whichever way they arrive (form, API, shell), so no reader has to trim them again.
TRIMMED_FIELDS = ("site_uid", "username", "iq_id")


class Integration(models.Model):
    class EnvironmentChoice(models.TextChoices):
        ACCEPTANCE = Environment.ACCEPTANCE.value, "Acceptance (testing)"
        PRODUCTION = Environment.PRODUCTION.value, "Production (live)"

    class ActivationState(models.TextChoices):
        NOT_ACTIVATED = "not_activated", "Not activated"
        ACTIVATED = "activated", "IQ is activated"
        NEEDS_REACTIVATION = "needs_reactivation", "Needs re-activation (GET PIN / Set PIN)"

    name = models.CharField(max_length=100, unique=True, help_text="For example “Salto KS acceptance”.")

    # Authentication tab
    environment = models.CharField("Environment", max_length=20, choices=EnvironmentChoice.choices)
    site_uid = models.CharField("Site UID", max_length=40, help_text="The human-readable site code, e.g. NL6254340082.")
    site_id = models.CharField(
        "Site ID", max_length=64, blank=True, default="", help_text="Set by “Resolve site ID”; read-only."
    )
    site_resolved_at = models.DateTimeField(null=True, blank=True)
    username = models.CharField("Username", max_length=254)
    password = EncryptedTextField("Password")
    access_tested_at = models.DateTimeField(null=True, blank=True)
    access_test_ok = models.BooleanField(null=True, blank=True)
    access_test_message = models.TextField(blank=True, default="")

    # IQ OTP setup block
    iq_id = models.CharField("IQ id", max_length=64, blank=True, default="")
    iq_secret = EncryptedTextField("IQ secret")
    current_pin = EncryptedTextField("current pin")
    activation_state = models.CharField(
        max_length=30, choices=ActivationState.choices, default=ActivationState.NOT_ACTIVATED
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    reactivation_reason = models.TextField(blank=True, default="")

    # Details tab
    open_statuses = models.ManyToManyField(
        BookingStatus, blank=True, related_name="+", verbose_name="Lock may open from status"
    )
    minutes_before = models.PositiveIntegerField(
        "Time before (minutes)", default=0, validators=[MinValueValidator(0), MaxValueValidator(1440)]
    )
    last_open_field = models.ForeignKey(
        BookingField,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="Save last open action in field",
        limit_choices_to={"field_type": BookingField.FieldType.DATETIME},
    )
    checkin_status = models.ForeignKey(
        BookingStatus,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="Status after opening (check-in)",
    )
    open_on_status_change = models.BooleanField("Open automatically on status change", default=True)

    is_active = models.BooleanField("Active", default=False)

    # The account's platform user id (GET /v1.1/me): the user_id of the entries its remote opens leave in Salto,
    # read once when an open is first checked against the entries; cleared with the identity.
    salto_user_id = models.CharField(max_length=64, blank=True, default="")

    # Results of the last lock refresh and health check (Activity)
    locks_refreshed_at = models.DateTimeField(null=True, blank=True)
    locks_refresh_message = models.TextField(blank=True, default="")
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_ok = models.BooleanField(null=True, blank=True)
    health_message = models.TextField(blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Secret fields are tracked as "changed" by the history service, never by value.
    history = HistoricalRecords(excluded_fields=[*SECRET_FIELDS, "updated_at"])

    class Meta:
        ordering = ["name"]
        # As the manual's menu path reads: Integrations > Salto KS.
        verbose_name = "Salto KS integration"
        constraints = [
            models.CheckConstraint(condition=Q(minutes_before__lte=1440), name="minutes_before_at_most_a_day"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        for name in TRIMMED_FIELDS:
            setattr(self, name, (getattr(self, name) or "").strip())
        super().save(*args, **kwargs)

    @property
    def is_activated(self) -> bool:
        return self.activation_state == self.ActivationState.ACTIVATED

    @property
    def needs_reactivation(self) -> bool:
        """Salto rejected the stored IQ secret/PIN: opens are refused until GET PIN / Set PIN succeed again.

        The one answer to "needs re-activation?" for the policy, the console, the booking page and the API.
        """
        return self.activation_state == self.ActivationState.NEEDS_REACTIVATION


class CachedLock(models.Model):
    """The site's locks as last fetched by GET locks; the mapping dropdown reads this, never Salto."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="cached_locks")
    lock_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    iq_id = models.CharField(max_length=64, blank=True, default="")
    iq_name = models.CharField(max_length=200, blank=True, default="")
    online = models.BooleanField(default=True)
    iq_online = models.BooleanField(default=True)
    refreshed_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["integration", "lock_id"], name="one_cached_lock_per_id")]

    def __str__(self) -> str:
        return self.name


class LockMapping(models.Model):
    """Object (or sub-object) → lock; a row without object is the integration's wildcard (default)."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="mappings")
    object = models.ForeignKey(
        BookableObject, null=True, blank=True, on_delete=models.CASCADE, related_name="lock_mappings"
    )
    lock_id = models.CharField(max_length=64)
    lock_name = models.CharField(max_length=200, blank=True, default="", help_text="The lock's name when mapped.")

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "object"], condition=Q(object__isnull=False), name="one_mapping_per_object"
            ),
            models.UniqueConstraint(fields=["integration"], condition=Q(object__isnull=True), name="one_wildcard"),
        ]

    def __str__(self) -> str:
        target = self.object.label if self.object_id else "* (default)"  # type: ignore[union-attr]
        return f"{target} → {self.lock_name or self.lock_id}"


class IllegalTransition(ValueError):
    """An open request was asked to move between states its state machine does not connect."""


class OpenRequestQuerySet(models.QuerySet["OpenRequest"]):
    """The open request's state machine: every change of `state` goes through one of these methods.

    Each is a conditional UPDATE on the states it may leave (`filter(state=...).update(...)`), so whoever
    updates the row wins and everyone else learns it from the count (0 or False); none holds a lock. A move
    that the machine does not have (see TRANSITIONS) raises IllegalTransition before touching the database.

        pending ──claim──▶ sending ──finish──▶ opened | failed | refused | expired
           ▲                │  ▲
           └──retry_later───┘  └──claim_unconfirmed── unconfirmed ◀──hold_unconfirmed── sending
        pending ──expire_stale──▶ expired          sending ──abandon_stale──▶ unconfirmed

    A worker holding a row in `sending` holds it for SENDING_LEASE_SECONDS (kept in next_attempt_at): past
    that, the sweeper takes it as abandoned (the worker died) and Salto's entries decide what happened. Each
    claim writes a new random `claim_token`, and every move out of `sending` (and the lease's renewal just
    before a send) must present it: a worker that stalled past its lease, whose row another worker has since
    claimed, can no longer send, finish, retry or hold it (ADR 0002, point 19).
    """

    def claim(self, pk: int, *, fresh_since: datetime, due_before: datetime, lease_until: datetime) -> str:
        """pending → sending for the one caller that gets there first, if still fresh and due.

        Returns the claim's token (the caller's proof of holding the row), or "" when not claimed.
        """
        State = OpenRequest.State
        _check(State.PENDING, State.SENDING)
        due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=due_before)
        token = new_claim_token()
        claimed = (
            self.filter(pk=pk, state=State.PENDING, created_at__gte=fresh_since)
            .filter(due)
            .update(state=State.SENDING, next_attempt_at=lease_until, claim_token=token)
        )
        return token if claimed else ""

    def claim_unconfirmed(self, pk: int, *, due_before: datetime, lease_until: datetime) -> str:
        """unconfirmed → sending, to ask Salto's entries (and maybe send again), once its check is due.

        Returns the claim's token, or "" when not claimed.
        """
        State = OpenRequest.State
        _check(State.UNCONFIRMED, State.SENDING)
        due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=due_before)
        token = new_claim_token()
        claimed = (
            self.filter(pk=pk, state=State.UNCONFIRMED)
            .filter(due)
            .update(state=State.SENDING, next_attempt_at=lease_until, claim_token=token)
        )
        return token if claimed else ""

    def held(self, pk: int, token: str) -> OpenRequestQuerySet:
        """The row, if it is in `sending` under this claim (an empty token never matches)."""
        return self.filter(pk=pk, state=OpenRequest.State.SENDING, claim_token=token).exclude(claim_token="")

    def renew_lease(self, pk: int, *, token: str, lease_until: datetime) -> bool:
        """Still ours? Then hold it until LEASE_UNTIL (asked just before a send; not a state change)."""
        return bool(self.held(pk, token).update(next_attempt_at=lease_until))

    def hold_unconfirmed(
        self, pk: int, *, token: str, check_at: datetime, reason: str, outcome_code: str, **fields: Any
    ) -> bool:
        """sending → unconfirmed: whether the door opened is unknown until Salto's entries say (at CHECK_AT)."""
        State = OpenRequest.State
        _check(State.SENDING, State.UNCONFIRMED)
        updated = self.held(pk, token).update(
            state=State.UNCONFIRMED, next_attempt_at=check_at, reason=reason, outcome_code=outcome_code, **fields
        )
        return bool(updated)

    def finish(
        self, pk: int, state: str, *, token: str, reason: str, outcome_code: str, now: datetime, **fields: Any
    ) -> bool:
        """sending → a final state (opened, failed, refused, expired); False if the row is no longer held."""
        State = OpenRequest.State
        _check(State.SENDING, state)
        if state == State.PENDING:
            raise IllegalTransition("finish() ends a request; use retry_later() to send it again")
        updated = self.held(pk, token).update(
            state=state, reason=reason, outcome_code=outcome_code, finished_at=now, **fields
        )
        return bool(updated)

    def retry_later(self, pk: int, *, token: str, due: datetime, reason: str, outcome_code: str, **fields: Any) -> bool:
        """sending → pending, due again at DUE (the retry claims it like any other delivery would)."""
        State = OpenRequest.State
        _check(State.SENDING, State.PENDING)
        updated = self.held(pk, token).update(
            state=State.PENDING, next_attempt_at=due, reason=reason, outcome_code=outcome_code, **fields
        )
        return bool(updated)

    def expire_stale(
        self,
        *,
        created_before: datetime,
        reason: str,
        now: datetime,
        pk: int | None = None,
        resent_reason: str | None = None,
    ) -> int:
        """pending → expired for rows created before the freshness limit (all, or only PK).

        A row that already went to Salto (a retry that was waiting its turn) gets RESENT_REASON, so the audit
        never says "never sent" of a request that was sent.
        """
        State = OpenRequest.State
        _check(State.PENDING, State.EXPIRED)
        rows = self.filter(state=State.PENDING, created_at__lt=created_before)
        if pk is not None:
            rows = rows.filter(pk=pk)
        expired = 0
        if resent_reason is not None:
            went_out = OpenAttempt.objects.exclude(outcome=OpenAttempt.Outcome.NOT_SENT).values("open_request_id")
            resent = rows.filter(pk__in=went_out)
            expired += resent.update(state=State.EXPIRED, reason=resent_reason, outcome_code="expired", finished_at=now)
        return expired + rows.update(state=State.EXPIRED, reason=reason, outcome_code="expired", finished_at=now)

    def abandon_stale(self, *, now: datetime, unleased_before: datetime, reason: str) -> list[int]:
        """sending → unconfirmed for rows whose worker's lease ran out (it died mid-send, or mid-check).

        A row without a lease (claimed by an older version) counts as abandoned once created before
        UNLEASED_BEFORE. The door may or may not have opened: the entries check that follows decides, never a
        blind resend.
        """
        State = OpenRequest.State
        _check(State.SENDING, State.UNCONFIRMED)
        lapsed = Q(next_attempt_at__lt=now) | Q(next_attempt_at__isnull=True, created_at__lt=unleased_before)
        pks = list(self.filter(lapsed, state=State.SENDING).values_list("pk", flat=True))
        taken = self.filter(lapsed, pk__in=pks, state=State.SENDING)
        taken.update(state=State.UNCONFIRMED, outcome_code="abandoned", next_attempt_at=now, reason=reason)
        return pks

    def mark_due(self, pk: int, *, overdue_before: datetime, now: datetime) -> bool:
        """A pending or unconfirmed row whose message was lost is due now; not a state change.

        Bumping the due time first means two sweepers do not both queue it.
        """
        State = OpenRequest.State
        overdue = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=overdue_before)
        waiting = self.filter(pk=pk, state__in=[State.PENDING, State.UNCONFIRMED]).filter(overdue)
        return bool(waiting.update(next_attempt_at=now))

    def record_confirmation(self, pk: int, *, confirmation: str, entry_ids: list[str], now: datetime) -> bool:
        """What Salto's entries say of an opened request (not a state change: it stays opened)."""
        State = OpenRequest.State
        updated = self.filter(pk=pk, state=State.OPENED).update(
            confirmation=confirmation, salto_entry_ids=entry_ids, confirmed_at=now
        )
        return bool(updated)


def new_claim_token() -> str:
    return secrets.token_hex(8)


def _check(source: str, target: str) -> None:
    if target not in TRANSITIONS.get(source, frozenset()):
        raise IllegalTransition(f"an open request cannot go from {source} to {target}")


class OpenRequest(models.Model):
    """One attempt to open a door: the audit trail and the outbox at once."""

    class Trigger(models.TextChoices):
        STATUS_CHANGE = "status_change", "Status change"
        STAFF = "staff", "Staff (admin)"
        API = "api", "API"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        UNCONFIRMED = "unconfirmed", "Unconfirmed (asking Salto's entries)"
        OPENED = "opened", "Opened"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused"
        EXPIRED = "expired", "Expired"

    class Confirmation(models.TextChoices):
        NOT_CHECKED = "", "Not checked"
        CONFIRMED = "confirmed", "Confirmed by Salto's entries"
        NO_RECORD = "no_record", "Salto has no record of this open"
        DOUBLE = "double", "Double open: Salto recorded more than one"

    class Rule(models.TextChoices):
        OBJECT = "object", "Object's own mapping"
        PARENT = "parent", "Parent object's mapping"
        WILDCARD = "wildcard", "Wildcard (default)"

    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="open_requests")
    integration = models.ForeignKey(
        Integration, null=True, blank=True, on_delete=models.SET_NULL, related_name="open_requests"
    )
    lock_id = models.CharField(max_length=64, blank=True, default="")
    lock_name = models.CharField(max_length=200, blank=True, default="")
    rule = models.CharField(max_length=20, choices=Rule.choices, blank=True, default="")
    rule_description = models.CharField(max_length=300, blank=True, default="")
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    reason = models.TextField(blank=True, default="", help_text="Why it was refused, failed or expired.")
    salto_http_status = models.PositiveIntegerField(null=True, blank=True)
    salto_error_code = models.CharField(max_length=20, blank=True, default="")
    salto_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # Machine-readable outcome: the policy's refusal code or the Salto error kind (API clients branch on it).
    outcome_code = models.CharField(max_length=40, blank=True, default="")
    # When a pending row is due to be sent (now, or after a retry's backoff); the sweeper re-queues rows
    # overdue by more than its grace period, so a message lost by the broker cannot strand a guest.
    # While sending: the end of the worker's lease on the row (the sweeper takes it back after that).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The current claim's fence: written by each claim, required by every move out of `sending`.
    claim_token = models.CharField(max_length=32, blank=True, default="", editable=False)
    # What Salto's entries say: the door's own record of the open, matched to this request.
    confirmation = models.CharField(max_length=20, choices=Confirmation.choices, blank=True, default="")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    salto_entry_ids = models.JSONField(default=list, blank=True)

    objects = OpenRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "created_at"]),
            models.Index(fields=["booking", "created_at"]),
            # The open-request list filtered by what Salto's entries said (rare values: double, no record), in the
            # list's order; by integration, the foreign key's index or created_at's serve (EXPLAIN, benchmarks.md).
            models.Index(fields=["confirmation", "created_at"]),
        ]
        permissions = [("open_door", "May open doors for bookings")]

    def __str__(self) -> str:
        return f"Open request #{self.pk} ({self.get_state_display()})"

    @property
    def attempts(self) -> int:
        """How many times it was sent (or tried to be): its OpenAttempt rows (prefetch `sends` for lists)."""
        return len(self.sends.all())


class OpenAttempt(models.Model):
    """One send of an open request to Salto KS, with what came back."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (Salto opened)"
        REJECTED = "rejected", "Rejected by Salto"
        UNCLEAR = "unclear", "Unclear (no readable answer)"
        NOT_SENT = "not_sent", "Not sent"

    open_request = models.ForeignKey(OpenRequest, on_delete=models.CASCADE, related_name="sends")
    number = models.PositiveIntegerField()
    sent_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    # Unclear until an answer says otherwise: a worker that dies mid-send leaves exactly that behind.
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.UNCLEAR)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    salto_error_code = models.CharField(max_length=20, blank=True, default="")
    salto_message = models.TextField(blank=True, default="")
    error_kind = models.CharField(max_length=40, blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["open_request", "number"]
        constraints = [models.UniqueConstraint(fields=["open_request", "number"], name="one_attempt_per_number")]

    def __str__(self) -> str:
        return f"Attempt {self.number} of open request #{self.open_request_id}: {self.get_outcome_display()}"


# Which state an open request may move to from which (OpenRequestQuerySet enforces it). A new row starts as
# pending, or as refused when the policy said no; refused, opened, failed and expired are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    OpenRequest.State.PENDING: frozenset({OpenRequest.State.SENDING, OpenRequest.State.EXPIRED}),
    OpenRequest.State.UNCONFIRMED: frozenset({OpenRequest.State.SENDING}),
    OpenRequest.State.SENDING: frozenset(
        {
            OpenRequest.State.PENDING,
            OpenRequest.State.UNCONFIRMED,
            OpenRequest.State.OPENED,
            OpenRequest.State.FAILED,
            OpenRequest.State.REFUSED,
            OpenRequest.State.EXPIRED,
        }
    ),
}

# What the audit trail says about one send, in one order for the admin and the API.
OPEN_ATTEMPT_AUDIT_FIELDS = (
    "number",
    "sent_at",
    "answered_at",
    "outcome",
    "http_status",
    "salto_error_code",
    "salto_message",
    "error_kind",
    "duration_ms",
)

# What the audit trail says about an open request, in one order for the admin and the API.
OPEN_REQUEST_AUDIT_FIELDS = (
    "integration",
    "lock_id",
    "lock_name",
    "rule",
    "rule_description",
    "trigger",
    "actor",
    "state",
    "reason",
    "outcome_code",
    "attempts",
    "confirmation",
    "confirmed_at",
    "salto_http_status",
    "salto_error_code",
    "salto_message",
    "created_at",
    "sent_at",
    "finished_at",
    "duration_ms",
)

from integrations.idempotency import IdempotencyKey  # noqa: E402,F401  (registered with the app's models)
