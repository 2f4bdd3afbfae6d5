"""Admin for the booking domain. Status changes always go through `booking_change_status`."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce, Lower
from django.forms import ModelForm
from django.http import HttpRequest

from bookings.models import (
    BookableObject,
    Booking,
    BookingField,
    BookingFieldValue,
    BookingStatus,
    BookingStatusChange,
)
from bookings.selectors import objects_as_tree
from bookings.services import booking_change_status, record_initial_status


class SubObjectInline(admin.TabularInline[BookableObject, BookableObject]):
    model = BookableObject
    fk_name = "parent"
    fields = ["name", "is_active"]
    extra = 0
    verbose_name = "sub-object"
    verbose_name_plural = "sub-objects"


class MainOrSubObjectFilter(admin.SimpleListFilter):
    title = "level"
    parameter_name = "level"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("main", "Main objects"), ("sub", "Sub-objects")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "main":
            return queryset.filter(parent__isnull=True)
        if self.value() == "sub":
            return queryset.filter(parent__isnull=False)
        return queryset


@admin.register(BookableObject)
class BookableObjectAdmin(admin.ModelAdmin[BookableObject]):
    list_display = ["tree_label", "parent", "is_active"]
    list_filter = [MainOrSubObjectFilter, "is_active"]
    search_fields = ["name", "parent__name"]
    list_select_related = ["parent"]
    inlines = [SubObjectInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BookableObject]:
        return super().get_queryset(request).select_related("parent")

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # Group by the main object's name, the main object first (NULL parent: explicit, since PostgreSQL
        # and SQLite sort NULLs differently), then its sub-objects by name.
        return [
            Lower(Coalesce("parent__name", "name")),  # type: ignore[list-item]
            F("parent").asc(nulls_first=True),  # type: ignore[list-item]
            Lower("name"),  # type: ignore[list-item]
        ]

    @admin.display(description="object", ordering="name")
    def tree_label(self, obj: BookableObject) -> str:
        return f"    └ {obj.name}" if obj.parent_id else obj.name


@admin.register(BookingStatus)
class BookingStatusAdmin(admin.ModelAdmin[BookingStatus]):
    list_display = ["code", "name", "is_active"]
    list_editable = ["is_active"]
    search_fields = ["name"]


@admin.register(BookingField)
class BookingFieldAdmin(admin.ModelAdmin[BookingField]):
    list_display = ["technical_name", "name", "field_type"]
    list_filter = ["field_type"]
    search_fields = ["name", "technical_name"]


class BookingFieldValueInline(admin.TabularInline[BookingFieldValue, Booking]):
    model = BookingFieldValue
    fields = ["field", "text_value", "number_value", "datetime_value"]
    extra = 0


class BookingStatusChangeInline(admin.TabularInline[BookingStatusChange, Booking]):
    model = BookingStatusChange
    fields = ("changed_at", "from_status", "to_status", "changed_by", "source")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "status change"
    verbose_name_plural = "status history"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BookingForm(ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Booking
        fields = ["object", "start", "end", "status", "customer_name", "customer_email"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "status" in self.fields:
            # Post back the status the page showed, so "changed" means changed by this person, not by
            # someone else since the page was loaded.
            self.fields["status"].show_hidden_initial = True
        if "object" in self.fields:
            field = self.fields["object"]
            field.choices = [("", "---------")] + [  # type: ignore[attr-defined]
                (obj.pk, f"\u00a0\u00a0\u00a0\u00a0{obj.name}" if obj.parent_id else obj.name)
                for obj in objects_as_tree()
            ]


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin[Booking]):
    form = BookingForm
    list_display = ["id", "customer_name", "object_label", "start", "end", "status"]
    list_filter = ["status", "object__parent", "object"]
    search_fields = ["customer_name", "customer_email", "object__name", "object__parent__name"]
    date_hierarchy = "start"
    list_select_related = ["object", "object__parent", "status"]
    inlines = [BookingFieldValueInline, BookingStatusChangeInline]
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(description="object", ordering="object__name")
    def object_label(self, obj: Booking) -> str:
        return obj.object.label

    def save_model(self, request: HttpRequest, obj: Booking, form: ModelForm, change: bool) -> None:  # type: ignore[type-arg]
        if not change:
            super().save_model(request, obj, form, change)
            record_initial_status(booking=obj, actor=request.user)
            return
        # The status itself is changed through the service, so it is recorded and announced once, and only
        # when staff changed it in this form: a form loaded before someone else's change must not write the
        # old status back (and so re-open a door or undo a cancellation). The row stays locked until the
        # admin's transaction commits, so no other change slips in between this read and the save.
        new_status = obj.status
        obj.status = Booking.objects.select_for_update().only("status").get(pk=obj.pk).status
        super().save_model(request, obj, form, change)
        if "status" in form.changed_data:
            booking_change_status(
                booking=obj, status=new_status, actor=request.user, source=BookingStatusChange.Source.ADMIN
            )
