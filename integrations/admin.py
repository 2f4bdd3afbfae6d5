"""The operator's integration console: the Integration change page with tabs and the manual's buttons.

A thin adapter. Each button is a submit button of the change form that posts to its own admin URL
(CSRF-protected, change permission required). That view first saves the form exactly as "Save and
continue editing" would (so what the operator just typed, e.g. the IQ id or the current pin, is used),
lets the admin's transaction commit, and only then calls the one service behind the button, outside any
transaction, and reports its outcome with `message_user`. An invalid form is shown with its errors and
the button does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from simple_history.admin import SimpleHistoryAdmin

from integrations.admin_mapping import LockMappingInline, MappingTabAdmin
from integrations.forms import IntegrationForm, secret_status_html
from integrations.models import Integration, LockMapping
from integrations.outcomes import Outcome, format_local
from integrations.selectors import (
    cached_locks_by_id,
    details_warnings,
    mapping_problem,
    open_requests_recent,
    salto_clock_of,
)
from integrations.services.console import access_test, iq_pin_get, iq_pin_set, locks_refresh, site_resolve_id
from integrations.services.lifecycle import integration_activate, integration_config_save, integration_deactivate
from locks.clock import clock_warning

# The manual's notes, shown where the operator needs them.
ACCEPTANCE_NOTE = (
    "Acceptance and production are separate environments with their own account, site and IQ. "
    "Test fully in acceptance before configuring production."
)
PIN_NOTE = (
    "The PIN + the IQ secret form the OTP that signs every open command. If you change the IQ PIN outside "
    "i-Reserve, you must re-activate the integration (GET PIN / Set PIN). Otherwise the OTP commands no longer "
    "match and the door will not open."
)

LOCKS_LISTED_IN_FULL = 50  # a longer lock list shows only the locks that need attention

LEVELS = {"success": messages.SUCCESS, "info": messages.INFO, "warning": messages.WARNING, "error": messages.ERROR}


@dataclass
class ConsoleSave:
    """What one POST of the change page carries from one admin hook to the next.

    The admin saves through fixed hooks (save_model, save_related, response_change) that share only the
    request; this is the one typed record they share, instead of loose attributes on the request.
    """

    action: str | None = None  # the button that asked for the save, None for Save
    new_pin: str = ""  # typed into new pin: used by Set PIN, never stored
    activation_reset: bool = False  # the save cleared the IQ activation: do not activate in the same save
    saved: Integration | None = None  # set once the save went through (the button then runs)


_SAVES: WeakKeyDictionary[HttpRequest, ConsoleSave] = WeakKeyDictionary()


def console_save(request: HttpRequest) -> ConsoleSave:
    """This request's ConsoleSave (made on first use; gone with the request)."""
    return _SAVES.setdefault(request, ConsoleSave())


def _resolve(save: ConsoleSave, integration: Integration) -> Outcome:
    return site_resolve_id(integration=integration)


def _access(save: ConsoleSave, integration: Integration) -> Outcome:
    return access_test(integration=integration)


def _get_pin(save: ConsoleSave, integration: Integration) -> Outcome:
    return iq_pin_get(integration=integration)


def _set_pin(save: ConsoleSave, integration: Integration) -> Outcome:
    return iq_pin_set(integration=integration, new_pin=save.new_pin)


def _locks(save: ConsoleSave, integration: Integration) -> Outcome:
    return locks_refresh(integration=integration)


# action slug → (button label, tab to come back to, adapter calling the one service)
ACTIONS: dict[str, tuple[str, str, Callable[[ConsoleSave, Integration], Outcome]]] = {
    "resolve-site": ("Resolve site ID", "authentication", _resolve),
    "test-access": ("Test / request access", "authentication", _access),
    "get-pin": ("GET PIN", "authentication", _get_pin),
    "set-pin": ("Set PIN", "authentication", _set_pin),
    "get-locks": ("GET locks", "mapping", _locks),
}


class ReadOnlyHistoryAdmin(SimpleHistoryAdmin):  # type: ignore[misc]
    """History to read, never to revert.

    A revert saves an old version as it was, past the activation checks and the identity-change reset:
    it could re-activate an integration flagged "needs re-activation" with the PIN Salto just rejected.
    """

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST":
            raise PermissionDenied("History is read-only here; change the integration on its own page.")
        return super().history_form_view(request, object_id, version_id, extra_context)  # type: ignore[no-any-return]


@admin.register(Integration)
class IntegrationAdmin(ReadOnlyHistoryAdmin, MappingTabAdmin):  # type: ignore[misc]
    form = IntegrationForm
    inlines = [LockMappingInline]
    change_form_template = "admin/integrations/integration/change_form.html"
    list_display = ["name", "environment", "site_uid", "activation_badge", "is_active", "last_access_test"]
    list_filter = ["environment", "is_active", "activation_state"]
    search_fields = ["name", "site_uid", "username"]
    readonly_fields = [
        "status_summary",
        "site_id_display",
        "access_action",
        "iq_secret_status",
        "get_pin_action",
        "set_pin_action",
        "locks_action",
        "cached_locks_table",
    ]
    fieldsets = [
        (None, {"fields": ["name", "status_summary", "activate"], "classes": ["console-top"]}),
        (
            "Authentication",
            {
                "description": ACCEPTANCE_NOTE,
                "fields": [
                    "environment",
                    "site_uid",
                    "site_id_display",
                    "username",
                    "password_input",
                    "access_action",
                ],
                "classes": ["tab-authentication"],
            },
        ),
        (
            "IQ OTP setup",
            {
                "description": (
                    "Activate the IQ gateway with a PIN; required before locks can be opened. Enter the IQ id, "
                    "click GET PIN, enter the desired 4-digit PIN in new pin and click Set PIN. " + PIN_NOTE
                ),
                "fields": [
                    "iq_id",
                    "get_pin_action",
                    "iq_secret_status",
                    "current_pin_input",
                    "new_pin",
                    "set_pin_action",
                ],
                "classes": ["tab-authentication", "iq-otp-setup"],
            },
        ),
        (
            "Details",
            {
                "fields": [
                    "open_statuses",
                    "minutes_before",
                    "last_open_field",
                    "checkin_status",
                    "open_on_status_change",
                ],
                "classes": ["tab-details"],
            },
        ),
        (
            "Locks",
            {
                "description": "Populate the lock dropdowns with GET locks (fetches the site's locks).",
                "fields": ["locks_action", "cached_locks_table"],
                "classes": ["tab-mapping"],
            },
        ),
    ]

    # --- lists ---------------------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Integration]:
        return super().get_queryset(request).prefetch_related("cached_locks")

    @admin.display(description="IQ activation", ordering="activation_state")
    def activation_badge(self, obj: Integration) -> str:
        return _activation_html(obj, short=True)

    @admin.display(description="Last access test", ordering="access_tested_at")
    def last_access_test(self, obj: Integration) -> str:
        if obj.access_tested_at is None:
            return "—"
        return f"{'OK' if obj.access_test_ok else 'failed'} at {format_local(obj.access_tested_at)}"

    # --- read-only blocks and buttons ----------------------------------------------------------------

    @admin.display(description="Status")
    def status_summary(self, obj: Integration) -> str:
        active = (
            mark_safe('<span class="console-badge badge-ok" data-testid="active-state">Active</span>')
            if obj.pk and obj.is_active
            else mark_safe('<span class="console-badge badge-off" data-testid="active-state">Inactive</span>')
        )
        return format_html("{} {}{}", active, _activation_html(obj), _clock_html(obj))

    @admin.display(description="Site ID")
    def site_id_display(self, obj: Integration) -> str:
        value = (
            format_html('<code data-testid="site-id">{}</code>', obj.site_id)
            if obj.site_id
            else mark_safe('<span class="console-muted" data-testid="site-id">not resolved yet</span>')
        )
        return format_html(
            '{} {}<div class="help">The internal site id (UUID), fetched from the Site UID. Read-only.</div>',
            value,
            _button(obj, "resolve-site"),
        )

    @admin.display(description="Access")
    def access_action(self, obj: Integration) -> str:
        result: str | SafeString = mark_safe('<span class="console-muted">not tested yet</span>')
        if obj.access_tested_at is not None:
            css = "result-ok" if obj.access_test_ok else "result-failed"
            result = format_html(
                '<div class="console-result {}" data-testid="access-result">{} <small>(tested {})</small></div>',
                css,
                obj.access_test_message,
                format_local(obj.access_tested_at),
            )
        return format_html("{} {}", _button(obj, "test-access"), result)

    @admin.display(description="IQ secret")
    def iq_secret_status(self, obj: Integration) -> str:
        return secret_status_html(stored=bool(obj.iq_secret), what="IQ secret")

    @admin.display(description="Fetch PIN")
    def get_pin_action(self, obj: Integration) -> str:
        stored = secret_status_html(stored=bool(obj.current_pin), what="current pin")
        return format_html("{} {}", _button(obj, "get-pin"), stored)

    @admin.display(description="Activation")
    def set_pin_action(self, obj: Integration) -> str:
        return format_html("{} {}", _button(obj, "set-pin"), _activation_html(obj))

    @admin.display(description="Lock list")
    def locks_action(self, obj: Integration) -> str:
        result: str | SafeString = mark_safe('<span class="console-muted">no locks fetched yet</span>')
        if obj.locks_refreshed_at is not None:
            result = format_html(
                '<div class="console-result" data-testid="locks-result">{} <small>({})</small></div>',
                obj.locks_refresh_message,
                format_local(obj.locks_refreshed_at),
            )
        return format_html("{} {}", _button(obj, "get-locks"), result)

    @admin.display(description="Locks in the site")
    def cached_locks_table(self, obj: Integration) -> str:
        if obj.pk is None:
            return "—"
        cached = cached_locks_by_id(integration=obj)
        if not cached:
            return mark_safe('<span class="console-muted">The lock list is empty: click GET locks.</span>')
        rows, attention = [], []
        offline = unusable = 0
        for lock in cached.values():
            problem = mapping_problem(integration=obj, lock_id=lock.lock_id, cached=cached)
            online = lock.online and lock.iq_online
            offline += not online
            unusable += bool(problem)
            row = (
                lock.name,
                lock.iq_name or lock.iq_id or "—",
                "online" if online else "offline",
                problem or "can be mapped",
            )
            rows.append(row)
            if problem or not online:
                attention.append(row)
        # At a site's size the whole list is hundreds of rows nobody reads: then only the locks that need attention
        # are listed (any lock can be looked up in a mapping row's Lock search). Folded either way.
        listed = rows if len(rows) <= LOCKS_LISTED_IN_FULL else attention
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", listed)
        note = "" if listed is rows else f" (listed: the {len(attention)} offline or on another IQ)"
        return format_html(
            '<details class="console-locks-list"{}><summary data-testid="cached-locks-summary">{} locks: {} online, '
            "{} offline, {} on another IQ (cannot be mapped){}</summary>"
            '<table class="console-locks" data-testid="cached-locks"><thead><tr><th>Lock</th><th>IQ</th>'
            "<th>Online</th><th>Mapping</th></tr></thead><tbody>{}</tbody></table></details>",
            mark_safe(" open") if len(rows) <= 10 else "",
            len(rows),
            len(rows) - offline,
            offline,
            unusable,
            note,
            body,
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Integration | None = None,
    ) -> HttpResponse:
        # The Activity tab's rows, for the integration the page already loaded (with its lock list): loading it
        # a second time cost as much as the rest of the tab at 500 locks.
        context["recent_open_requests"] = open_requests_recent(integration=obj) if obj is not None and obj.pk else []
        return super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[no-any-return]

    # --- saving --------------------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Integration, form: Form, change: bool) -> None:
        assert isinstance(form, IntegrationForm)
        save = console_save(request)
        save.new_pin = form.cleaned_data.get("new_pin", "")
        result = integration_config_save(
            integration=obj, changed_fields=form.changed_data, secrets_changed=form.secrets_changed
        )
        save.activation_reset = result.activation_reset
        for outcome in result.outcomes:
            self._report(request, outcome)

    def save_related(self, request: HttpRequest, form: Form, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        integration: Integration = form.instance  # type: ignore[attr-defined]
        for warning in details_warnings(integration=integration):
            self._report(request, warning)
        wants_active = bool(form.cleaned_data.get("activate"))
        if wants_active and not integration.is_active:
            if console_save(request).activation_reset:
                return
            self._report(request, integration_activate(integration=integration))
        elif not wants_active and integration.is_active:
            self._report(request, integration_deactivate(integration=integration))

    def response_change(self, request: HttpRequest, obj: Integration) -> HttpResponse:
        save = console_save(request)
        if save.action:
            # The button's view takes over from here, once the admin's transaction has committed.
            save.saved = obj
            return HttpResponseRedirect(request.path)
        return self.back_to_mapping_page(request, super().response_change(request, obj))

    # --- the buttons ---------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:  # type: ignore[override]
        info = self.opts.app_label, self.opts.model_name
        custom = [
            path(
                "<path:object_id>/action/<slug:action>/",
                self.admin_site.admin_view(self.action_view),
                name="{}_{}_action".format(*info),
            ),
            *self.mapping_urls(),
        ]
        return custom + super().get_urls()  # type: ignore[no-any-return]

    def action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if action not in ACTIONS:
            raise Http404("Unknown console action")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such integration")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        change_url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[obj.pk],
            current_app=self.admin_site.name,
        )
        save = console_save(request)
        save.action = action
        response = self.changeform_view(request, object_id, form_url=change_url)
        saved = save.saved
        if saved is None:
            # The form did not validate: show it with its errors; the button did nothing.
            if isinstance(response, TemplateResponse):
                self.message_user(
                    request, f"{ACTIONS[action][0]} was not run: correct the errors below first.", messages.ERROR
                )
            return response
        _label, tab, run = ACTIONS[action]
        # Fresh from the database: the save may have reset fields, and we are outside its transaction now.
        outcome = run(save, Integration.objects.get(pk=saved.pk))
        self._report(request, outcome)
        return HttpResponseRedirect(f"{change_url}#tab-{tab}")

    def _report(self, request: HttpRequest, outcome: Outcome) -> None:
        if outcome.details:
            message = format_html(
                '{}<ul class="console-steps">{}</ul>',
                outcome.message,
                format_html_join("", "<li>{}</li>", ((d,) for d in outcome.details)),
            )
            self.message_user(request, message, LEVELS[outcome.level])
        else:
            self.message_user(request, outcome.message, LEVELS[outcome.level])


def _button(obj: Integration, action: str) -> str:
    label = ACTIONS[action][0]
    if obj.pk is None:
        return format_html(
            '<button type="button" class="button console-action" disabled title="Save first">{}</button>'
            ' <span class="console-muted">(save first)</span>',
            label,
        )
    url = reverse("admin:integrations_integration_action", args=[obj.pk, action])
    return format_html(
        '<button type="submit" class="button console-action" formaction="{}" formmethod="post" formnovalidate '
        'name="_console_action" value="{}" data-testid="action-{}">{}</button>',
        url,
        action,
        action,
        label,
    )


def _sentence(text: str) -> str:
    # str.capitalize() would also lower-case the rest ("salto's").
    return text[:1].upper() + text[1:]


def _clock_html(obj: Integration) -> str:
    """A red line when this server's clock is off Salto's (measured from Salto's answers, locks/clock.py)."""
    reading = salto_clock_of(integration=obj)
    if reading is None or not reading.is_off:
        return ""
    return format_html(
        ' <span class="console-badge badge-alert" data-testid="clock-off">{} ({}): every OTP is now computed at '
        "Salto's time; correct the server's time (NTP).</span>",
        _sentence(clock_warning(reading.offset_seconds)),
        reading.describe_age(),
    )


def _activation_html(obj: Integration, *, short: bool = False) -> str:
    state = obj.activation_state
    if state == Integration.ActivationState.ACTIVATED:
        since = f" (since {format_local(obj.activated_at)})" if obj.activated_at and not short else ""
        return format_html(
            '<span class="console-badge badge-ok" data-testid="activation-state">IQ is activated{}</span>', since
        )
    if obj.needs_reactivation:
        reason = obj.reactivation_reason or "the one-time code was rejected"
        return format_html(
            '<span class="console-badge badge-alert" data-testid="activation-state">Needs re-activation: {}. '
            "Use GET PIN / Set PIN again.</span>",
            reason if not short else reason[:80],
        )
    return mark_safe('<span class="console-badge badge-off" data-testid="activation-state">Not activated</span>')


@admin.register(LockMapping)
class LockMappingAdmin(ReadOnlyHistoryAdmin, admin.ModelAdmin[LockMapping]):  # type: ignore[misc]
    """Read access to mappings and their history (who mapped what, when); edit them on the integration."""

    list_display = ["__str__", "integration", "lock_id"]
    list_filter = ["integration"]
    list_select_related = ["integration", "object__parent"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LockMapping | None = None) -> bool:
        return False
