"""Admin for the booking domain. Status changes always go through `booking_change_status`."""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
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
from bookings.selectors import tree_ordering
from bookings.services import booking_change_status, record_initial_status

ASCII_ID = re.compile(r"[0-9]{1,18}")


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
        # Each main object followed by its sub-objects, by name (as objects_as_tree lists them).
        return tree_ordering()  # type: ignore[return-value]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[BookableObject], search_term: str
    ) -> tuple[QuerySet[BookableObject], bool]:
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if request.GET.get("model_name") == "booking" and request.GET.get("field_name") == "object":
            # The booking form's object search (autocomplete) offers active objects only, as its list used to.
            queryset = queryset.filter(is_active=True)
        return queryset, may_have_duplicates

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
            # The object is searched as you type (autocomplete_fields); its chosen option reads "Parent › Child"
            # without one more query for the parent.
            self.fields["object"].queryset = BookableObject.objects.select_related("parent")  # type: ignore[attr-defined]


class BookedObjectFilter(admin.SimpleListFilter):
    """Bookings of an object; a main object's include its sub-objects'. Lists the main objects, and the
    sub-objects of the chosen one under it.

    Two queries at most, whatever the number of objects: the stock filter listed every object by its label,
    which reads the parent, one query per sub-object (1,500 at a customer's size), and thousands of links.
    """

    title = "object"
    parameter_name = "object"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        chosen = self._chosen_id()
        family = None
        if chosen is not None:
            row = BookableObject.objects.filter(pk=chosen).values_list("pk", "parent_id").first()
            family = (row[1] or row[0]) if row else None
        mains = (
            BookableObject.objects.filter(parent__isnull=True).order_by(Lower("name"), "pk").values_list("pk", "name")
        )
        subs = (
            list(
                BookableObject.objects.filter(parent_id=family).order_by(Lower("name"), "pk").values_list("pk", "name")
            )
            if family is not None
            else []
        )
        choices: list[tuple[str, str]] = []
        for pk, name in mains:
            choices.append((str(pk), name))
            if pk == family:
                choices.extend((str(sub_pk), f"\u00a0\u00a0↳ {sub_name}") for sub_pk, sub_name in subs)
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() is None:
            return queryset
        chosen = self._chosen_id()
        if chosen is None:
            raise IncorrectLookupParameters(f"{self.parameter_name} must be an object's id")
        # The object itself, and its sub-objects when it is a main object (a sub-object has none); as a
        # subquery, so the bookings are found through their object index rather than a join over all of them.
        family = BookableObject.objects.filter(Q(pk=chosen) | Q(parent_id=chosen)).values("pk")
        return queryset.filter(object_id__in=family)

    def _chosen_id(self) -> int | None:
        value = str(self.value() or "")
        return int(value) if ASCII_ID.fullmatch(value) else None


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin[Booking]):
    form = BookingForm
    list_display = ["id", "customer_name", "object_label", "start", "end", "status"]
    list_filter = ["status", BookedObjectFilter]
    search_fields = ["customer_name", "customer_email", "object__name", "object__parent__name"]
    autocomplete_fields = ["object"]
    date_hierarchy = "start"
    list_select_related = ["object", "object__parent", "status"]
    # One COUNT of the whole table less per page; the total shows once a filter is applied.
    show_full_result_count = False
    inlines = [BookingFieldValueInline, BookingStatusChangeInline]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Booking]:
        # The change page's booking too: its label and status without a query each.
        return super().get_queryset(request).select_related("object__parent", "status")

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
