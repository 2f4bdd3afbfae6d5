"""The booking admin, extended by integrations: open button, bulk open action, open requests, explain line.

Registered from integrations because bookings must not import integrations: the stock BookingAdmin is
unregistered and a subclass registered in its place (imported from IntegrationsConfig.ready, after the
admin's autodiscovery). Also the OpenRequest admin (read-only: it is an audit trail).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from bookings.admin import BookingAdmin
from bookings.models import Booking
from integrations.models import OPEN_ATTEMPT_AUDIT_FIELDS, OPEN_REQUEST_AUDIT_FIELDS, OpenAttempt, OpenRequest
from integrations.selectors import booking_open_assessment, open_requests_for_booking, sends_in_order
from integrations.services.opening import OpenRequestResult, open_request_create

OPEN_PERMISSION = "integrations.open_door"


def outcome_message(result: OpenRequestResult) -> tuple[int, str]:
    """A message level and sentence for staff after an open action."""
    req = result.open_request
    prefix = f"Booking #{req.booking_id} ({req.booking.customer_name}): "
    if req.state == OpenRequest.State.REFUSED:
        # A repeat of a refused request collapses into it (dedupe): still a refusal, with its reason.
        return messages.ERROR, prefix + f"not opened: {req.reason}"
    lock = req.lock_name or req.lock_id
    if not result.created and req.state == OpenRequest.State.OPENED:
        return messages.INFO, prefix + f"lock '{lock}' was opened just now (open request #{req.pk}); not sent again."
    if not result.created and req.state in (OpenRequest.State.PENDING, OpenRequest.State.SENDING):
        return messages.INFO, prefix + f"lock '{lock}' is already being opened (open request #{req.pk})."
    if req.state == OpenRequest.State.UNCONFIRMED:
        return messages.WARNING, prefix + (
            f"lock '{lock}': Salto's answer was lost; whether the door opened is being checked in Salto's entries "
            f"before anything is sent again (open request #{req.pk})."
        )
    if req.state == OpenRequest.State.PENDING and req.reason:
        # Committed but not queued (the broker is down): it will still be sent, and staff should know why it waits.
        return messages.WARNING, prefix + f"opening lock '{lock}' (open request #{req.pk}): {req.reason}"
    if req.state == OpenRequest.State.OPENED:
        return messages.SUCCESS, prefix + f"lock '{lock}' opened (open request #{req.pk})."
    if req.state in (OpenRequest.State.FAILED, OpenRequest.State.EXPIRED):
        return messages.ERROR, prefix + f"opening failed: {req.reason}"
    return messages.SUCCESS, prefix + f"opening lock '{lock}' (open request #{req.pk})."


class OpenRequestInline(admin.TabularInline[OpenRequest, Booking]):
    model = OpenRequest
    fields = ("created_at", "trigger", "actor", "lock_name", "rule", "state", "attempts", "reason", "finished_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "open requests"
    ordering = ["-created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OpenRequest]:
        # "attempts" counts each row's sends: prefetched once, not one query per row.
        return super().get_queryset(request).select_related("actor").prefetch_related(sends_in_order())

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OpeningBookingAdmin(BookingAdmin):
    change_form_template = "admin/integrations/booking_change_form.html"
    inlines = [*BookingAdmin.inlines, OpenRequestInline]
    actions = ["open_doors"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields = ["door", *fields]
        return fields

    @admin.display(description="door")
    def door(self, obj: Booking) -> str:
        """The explain line: which lock this booking would open now, via which rule, or why not."""
        assessment = booking_open_assessment(booking=obj)
        lines = [assessment.decision.explain]
        integration = assessment.integration
        if integration is not None and integration.needs_reactivation:
            lines.append(f"Integration '{integration.name}' needs re-activation: {integration.reactivation_reason}")
        last = open_requests_for_booking(booking=obj, limit=1).first()
        if last is not None:
            detail = f" — {last.reason}" if last.reason else ""
            lines.append(f"Last open request #{last.pk}: {last.get_state_display()}{detail}")
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))

    def get_urls(self) -> list[URLPattern]:
        urls: list[URLPattern] = [
            path(
                "<path:object_id>/open/",
                self.admin_site.admin_view(self.open_view),
                name="bookings_booking_open",
            )
        ]
        return urls + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_open_door": request.user.has_perm(OPEN_PERMISSION)}
        saved_since = timezone.now()
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "POST" and isinstance(response, HttpResponseRedirect):
            # The save has committed, so a status change has been announced and its open requested (and, without
            # a broker, already sent): tell staff what happened to the door, not only that the booking was saved.
            self._report_automatic_opens(request, object_id, since=saved_since)
        return response

    def _report_automatic_opens(self, request: HttpRequest, object_id: str, *, since: datetime) -> None:
        automatic = OpenRequest.objects.select_related("booking").filter(
            booking_id=unquote(object_id), trigger=OpenRequest.Trigger.STATUS_CHANGE, created_at__gte=since
        )
        for open_request in automatic.order_by("created_at"):
            level, text = outcome_message(OpenRequestResult(open_request, created=True))
            self.message_user(request, f"Status change: {text}", level)

    def open_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(OPEN_PERMISSION):
            raise PermissionDenied
        # get_object answers None for an id that is not a number too (a 404, never a 500).
        booking = self.get_object(request, unquote(object_id))
        if booking is None:
            raise Http404("No such booking")
        result = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF, actor=request.user)
        result.open_request.refresh_from_db()  # eager mode may have run it already
        level, text = outcome_message(result)
        self.message_user(request, text, level)
        return HttpResponseRedirect(reverse("admin:bookings_booking_change", args=[booking.pk]))

    @admin.action(description="Open the door for the selected bookings", permissions=["open_door"])
    def open_doors(self, request: HttpRequest, queryset: QuerySet[Booking]) -> None:
        for booking in queryset.order_by("pk"):
            result = open_request_create(booking=booking, trigger=OpenRequest.Trigger.STAFF, actor=request.user)
            result.open_request.refresh_from_db()
            level, text = outcome_message(result)
            self.message_user(request, text, level)

    def has_open_door_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPEN_PERMISSION)


if admin.site.is_registered(Booking):
    admin.site.unregister(Booking)
admin.site.register(Booking, OpeningBookingAdmin)


class OpenAttemptInline(admin.TabularInline[OpenAttempt, OpenRequest]):
    """Every send of the request to Salto KS, with what came back (read-only: audit trail)."""

    model = OpenAttempt
    fields = OPEN_ATTEMPT_AUDIT_FIELDS
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "sends to Salto KS"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OpenRequestAdmin(admin.ModelAdmin[OpenRequest]):
    list_display = [
        "id",
        "created_at",
        "booking",
        "trigger",
        "actor",
        "lock_name",
        "rule",
        "state",
        "attempts",
        "confirmation",
    ]
    list_filter = ["state", "confirmation", "trigger", "rule", "integration"]
    list_select_related = ["booking", "actor"]
    # One COUNT of the whole table less per page; the total shows once a filter is applied.
    show_full_result_count = False
    inlines = [OpenAttemptInline]
    search_fields = ["booking__customer_name", "lock_name", "reason", "salto_message"]
    date_hierarchy = "created_at"
    readonly_fields = ["booking_link", *OPEN_REQUEST_AUDIT_FIELDS, "salto_entry_ids", "next_attempt_at"]
    fields = tuple(readonly_fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[OpenRequest]:
        return super().get_queryset(request).prefetch_related(sends_in_order())

    @admin.display(description="booking")
    def booking_link(self, obj: OpenRequest) -> str:
        url = reverse("admin:bookings_booking_change", args=[obj.booking_id])
        return format_html('<a href="{}">{}</a>', url, obj.booking)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


if not admin.site.is_registered(OpenRequest):
    admin.site.register(OpenRequest, OpenRequestAdmin)
