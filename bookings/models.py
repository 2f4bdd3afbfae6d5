"""The booking domain: objects (with sub-objects), statuses, custom booking fields and bookings.

This app stands in for the booking system's core and knows nothing of locks or Salto; other apps
learn about status changes through `bookings.signals.booking_status_changed`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import formats, timezone


class BookableObject(models.Model):
    """Something that can be booked (the reference product calls it an object or product).

    A sub-object (one studio within a building) points at its main object. Only one level of
    nesting exists, as in the reference product.
    """

    name = models.CharField(max_length=200)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="sub_objects",
        limit_choices_to={"parent__isnull": True},
        help_text="Leave empty for a main object; pick the main object for a sub-object.",
    )
    is_active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=~Q(parent=F("id")), name="object_is_not_its_own_parent"),
            models.UniqueConstraint(fields=["parent", "name"], name="unique_object_name_per_parent"),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        if self.parent_id is None:
            return self.name
        return f"{self.parent.name} › {self.name}"  # type: ignore[union-attr]

    def clean(self) -> None:
        if self.parent_id is None:
            return
        if self.pk is not None and self.parent_id == self.pk:
            raise ValidationError({"parent": "An object cannot be its own parent."})
        if self.parent is not None and self.parent.parent_id is not None:
            raise ValidationError({"parent": "A sub-object's parent must be a main object."})
        if self.pk is not None and self.sub_objects.exists():
            raise ValidationError({"parent": "This object has sub-objects of its own, so it must stay a main object."})


class BookingStatus(models.Model):
    """An operator-defined booking status, e.g. 20 Definitive; `code` orders them as in the reference product."""

    code = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=100, unique=True)
    is_active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "booking statuses"

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class BookingField(models.Model):
    """An operator-defined custom field on bookings (technical names like custom01)."""

    class FieldType(models.TextChoices):
        TEXT = "text", "Text"
        NUMBER = "number", "Number"
        DATETIME = "datetime", "Date and time"

    name = models.CharField(max_length=100)
    technical_name = models.SlugField(max_length=50, unique=True, help_text="For example custom01.")
    field_type = models.CharField(max_length=20, choices=FieldType.choices)

    class Meta:
        ordering = ["technical_name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.technical_name})"


class Booking(models.Model):
    object = models.ForeignKey(
        BookableObject,
        on_delete=models.PROTECT,
        related_name="bookings",
        help_text="The main object or the specific sub-object that was booked.",
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.ForeignKey(BookingStatus, on_delete=models.PROTECT, related_name="bookings")
    customer_name = models.CharField(max_length=200)
    customer_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start"]
        constraints = [models.CheckConstraint(condition=Q(end__gt=F("start")), name="booking_ends_after_start")]
        indexes = [
            models.Index(fields=["start", "end"]),
            # The booking list filtered by status, newest start first (the list's order).
            models.Index(fields=["status", "start"]),
        ]

    def __str__(self) -> str:
        return f"Booking #{self.pk} {self.customer_name}"

    def clean(self) -> None:
        if self.start and self.end and self.end <= self.start:
            raise ValidationError({"end": "The end must be after the start."})


class BookingFieldValue(models.Model):
    """The value of one custom field on one booking; exactly one typed column is used, by field type."""

    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="field_values")
    field = models.ForeignKey(BookingField, on_delete=models.PROTECT, related_name="values")
    text_value = models.TextField(blank=True, default="")
    number_value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    datetime_value = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["booking", "field"], name="one_value_per_booking_field")]

    def __str__(self) -> str:
        return f"{self.field.technical_name} = {self.display_value}"

    @property
    def display_value(self) -> str:
        """The value as a person reads it: date-times in the site's local time, not UTC."""
        value = self.value
        if isinstance(value, datetime):
            return formats.localize(timezone.localtime(value))
        return "" if value is None else str(value)

    @property
    def value(self) -> Any:
        field_type = self.field.field_type
        if field_type == BookingField.FieldType.NUMBER:
            return self.number_value
        if field_type == BookingField.FieldType.DATETIME:
            return self.datetime_value
        return self.text_value

    def set_value(self, value: Any) -> None:
        self.text_value, self.number_value, self.datetime_value = "", None, None
        field_type = self.field.field_type
        if field_type == BookingField.FieldType.NUMBER:
            self.number_value = None if value in (None, "") else Decimal(str(value))
        elif field_type == BookingField.FieldType.DATETIME:
            self.datetime_value = value
        else:
            self.text_value = "" if value is None else str(value)


class BookingStatusChange(models.Model):
    """History: who moved a booking from which status to which, and through what."""

    class Source(models.TextChoices):
        CREATED = "created", "Booking created"
        ADMIN = "admin", "Admin"
        API = "api", "API"
        INTEGRATION = "integration", "Integration (after opening)"
        SYSTEM = "system", "System"

    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.ForeignKey(BookingStatus, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_status = models.ForeignKey(BookingStatus, on_delete=models.PROTECT, related_name="+")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        get_latest_by = "changed_at"

    def __str__(self) -> str:
        return f"{self.from_status or '—'} → {self.to_status}"
