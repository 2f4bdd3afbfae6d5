"""The Salto KS integration as an operator configures it, its lock cache, mappings and open requests.

Invariants live here as constraints; the behaviour lives in services.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from bookings.models import BookableObject, Booking, BookingField, BookingStatus
from integrations.encryption import EncryptedTextField
from locks.environments import Environment

SECRET_FIELDS = ("password", "iq_secret", "current_pin")


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

    @property
    def is_activated(self) -> bool:
        return self.activation_state == self.ActivationState.ACTIVATED


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


class OpenRequest(models.Model):
    """One attempt to open a door: the audit trail and the outbox at once."""

    class Trigger(models.TextChoices):
        STATUS_CHANGE = "status_change", "Status change"
        STAFF = "staff", "Staff (admin)"
        API = "api", "API"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        OPENED = "opened", "Opened"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused"
        EXPIRED = "expired", "Expired"

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
    attempts = models.PositiveIntegerField(default=0)
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
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "created_at"]), models.Index(fields=["booking", "created_at"])]
        permissions = [("open_door", "May open doors for bookings")]

    def __str__(self) -> str:
        return f"Open request #{self.pk} ({self.get_state_display()})"
