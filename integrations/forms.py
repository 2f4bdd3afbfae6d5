"""Forms of the integration console: the change page (all tabs) and its Mapping rows.

Secrets are write-only: their inputs never carry a value (not even a masked one) and a blank input
keeps the stored value. Choices come from our own tables only, so rendering never calls Salto.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.widgets import get_select2_language
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.forms.utils import flatatt
from django.utils.html import format_html
from django.utils.safestring import SafeString

from bookings.models import BookableObject, BookingField, BookingStatus
from integrations.models import IDENTITY_FIELDS, CachedLock, Integration, LockMapping
from integrations.selectors import activation_missing_steps, cached_locks_by_id, mapping_conflicts, mapping_problem
from locks.otp import is_valid_pin

MAPPING_PREFIX = "mappings"
WILDCARD_LABEL = "* Wildcard (default for objects without their own mapping)"
WILDCARD_VALUE = "*"  # how the object search offers the wildcard (an empty value is the wildcard too)
LOCK_PLACEHOLDER = "— choose a lock (GET locks fills this list) —"
ASCII_ID = re.compile(r"[0-9]{1,18}")
PIN_ERROR = "Enter exactly 4 digits."
MINUTES_ERROR = "Time before (minutes) must be a whole number from 0 to 1440 (24 hours)."


class WriteOnlyInput(forms.PasswordInput):
    """A password input that never renders a value, whatever the form holds."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False)


class IntegrationForm(forms.ModelForm[Integration]):
    password_input = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=WriteOnlyInput(),
        help_text="The password of the Salto KS account. Write-only: leave empty to keep the stored password.",
    )
    current_pin_input = forms.CharField(
        label="current pin",
        required=False,
        widget=WriteOnlyInput(attrs={"inputmode": "numeric", "maxlength": "4", "autocomplete": "off"}),
        help_text=(
            "Filled by GET PIN; if Salto KS sent the PIN by e-mail or SMS, type it here. "
            "Write-only: leave empty to keep the stored PIN."
        ),
    )
    new_pin = forms.CharField(
        label="new pin",
        required=False,
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "maxlength": "4", "autocomplete": "off", "size": "6", "pattern": "[0-9]{4}"}
        ),
        help_text="The desired 4-digit PIN; click Set PIN to set it on the IQ. Not stored until Set PIN succeeds.",
    )
    activate = forms.BooleanField(
        label="Active",
        required=False,
        help_text="Doors are opened only while the integration is active. Unticking it stops new opens at once.",
    )
    minutes_before = forms.IntegerField(
        label="Time before (minutes)",
        min_value=0,
        max_value=1440,
        initial=0,
        error_messages={"min_value": MINUTES_ERROR, "max_value": MINUTES_ERROR, "invalid": MINUTES_ERROR},
        help_text="Number of minutes before the start time that opening is already allowed (0–1440).",
    )

    class Meta:
        model = Integration
        fields = [
            "name",
            "environment",
            "site_uid",
            "username",
            "iq_id",
            "open_statuses",
            "minutes_before",
            "last_open_field",
            "checkin_status",
            "open_on_status_change",
        ]
        widgets = {"open_statuses": forms.CheckboxSelectMultiple}
        help_texts = {
            "environment": "Acceptance (testing) or Production (live). Required.",
            "site_uid": "The human-readable site code from Salto (e.g. NL6254340082). Required.",
            "username": "The username of the Salto KS account (a service account with site-admin rights). Required.",
            "iq_id": "The UUID of the IQ gateway.",
            "open_statuses": "The booking status(es) at which opening the lock is allowed.",
            "last_open_field": "Booking field that records the open timestamp (date-time fields only). Optional.",
            "checkin_status": "The booking is moved to this status after a successful opening. Optional.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Someone who may only view the integration gets a form without fields (the admin shows them read-only).
        fields = self.fields
        if "activate" in fields:
            fields["activate"].initial = bool(self.instance.pk and self.instance.is_active)
        for name in ("open_statuses", "checkin_status"):
            if name in fields:
                fields[name].queryset = BookingStatus.objects.filter(is_active=True)  # type: ignore[attr-defined]
        if "last_open_field" in fields:
            fields["last_open_field"].queryset = BookingField.objects.filter(  # type: ignore[attr-defined]
                field_type=BookingField.FieldType.DATETIME
            )
        for name in ("last_open_field", "checkin_status"):
            if name in fields:
                fields[name].empty_label = "— none —"  # type: ignore[attr-defined]
        has_password = bool(self.instance.pk and self.instance.password)
        if "password_input" in fields:
            fields["password_input"].required = not has_password
            if has_password:
                fields["password_input"].widget.attrs["placeholder"] = "(stored)"
        if "current_pin_input" in fields and self.instance.pk and self.instance.current_pin:
            fields["current_pin_input"].widget.attrs["placeholder"] = "(stored)"
        for name in ("site_uid", "username", "iq_id"):
            if name in fields:
                fields[name].widget.attrs.setdefault("autocomplete", "off")

    def clean_current_pin_input(self) -> str:
        value = str(self.cleaned_data.get("current_pin_input") or "").strip()
        if value and not is_valid_pin(value):
            raise ValidationError(PIN_ERROR, code="pin")
        return value

    def clean_new_pin(self) -> str:
        value = str(self.cleaned_data.get("new_pin") or "").strip()
        if value and not is_valid_pin(value):
            raise ValidationError(PIN_ERROR, code="pin")
        return value

    def clean_last_open_field(self) -> BookingField | None:
        value: BookingField | None = self.cleaned_data.get("last_open_field")
        if value is not None and value.field_type != BookingField.FieldType.DATETIME:
            raise ValidationError("Choose a date-time booking field.", code="not_datetime")
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("activate") and not (self.instance.pk and self.instance.is_active):
            self._check_activation(cleaned)
        return cleaned

    def _check_activation(self, cleaned: dict[str, Any]) -> None:
        if self.instance.pk is None:
            self.add_error("activate", "Save the integration and complete the manual's steps before activating it.")
            return
        identity_changed = any(
            str(cleaned.get(name, "")) != str(getattr(self.instance, name)) for name in IDENTITY_FIELDS
        )
        if identity_changed:
            self.add_error(
                "activate",
                "Environment, Site UID or Username changed: save first, then resolve, test and activate the IQ again.",
            )
            return
        stored = {
            pk: (object_id, lock_id)
            for pk, object_id, lock_id in self.instance.mappings.values_list("pk", "object_id", "lock_id")
        }
        steps = activation_missing_steps(integration=self.instance, mappings=posted_mappings(self.data, stored=stored))
        if steps:
            self.add_error(
                "activate",
                ValidationError(
                    ["The integration cannot be activated yet. Missing steps:", *steps], code="activation_refused"
                ),
            )

    @property
    def secrets_changed(self) -> list[str]:
        changed = []
        if self.cleaned_data.get("password_input"):
            changed.append("password")
        if self.cleaned_data.get("current_pin_input"):
            changed.append("current_pin")
        return changed

    def save(self, commit: bool = True) -> Integration:
        integration = super().save(commit=False)
        if self.cleaned_data.get("password_input"):
            integration.password = self.cleaned_data["password_input"]
        if self.cleaned_data.get("current_pin_input"):
            integration.current_pin = self.cleaned_data["current_pin_input"]
        if commit:
            integration.save()
            self.save_m2m()
        return integration


def parse_id(value: Any) -> int | None:
    """An id posted or typed as ASCII digits, else None.

    Not str.isdigit(): it accepts "²" and other digits that int() then refuses (a 500 instead of an error).
    """
    text = str(value if value is not None else "").strip()
    return int(text) if ASCII_ID.fullmatch(text) else None


def posted_mappings(data: Any, *, stored: Mapping[int, tuple[int | None, str]]) -> list[tuple[int | None, str]]:
    """The (object id, lock id) rows the integration would have once the Mapping rows posted in DATA are saved.

    The activation check runs in the main form, before the inline formset is validated, yet must judge the
    mappings being saved with it; invalid rows are rejected by the formset itself anyway. The Mapping tab posts
    one page of rows: STORED (pk → (object id, lock id)) are all the stored rows, and each posted row replaces
    its own (or removes it, when ticked for deletion); rows on other pages stay as they are.
    """
    rows = dict(stored)
    added: list[tuple[int | None, str]] = []
    total = parse_id(data.get(f"{MAPPING_PREFIX}-TOTAL_FORMS")) or 0
    for index in range(min(total, 1000)):
        prefix = f"{MAPPING_PREFIX}-{index}-"
        pk = parse_id(data.get(prefix + "id"))
        lock_id = str(data.get(prefix + "lock_id") or "").strip()
        deleted = bool(data.get(prefix + "DELETE"))
        row = (parse_id(data.get(prefix + "object")), lock_id)  # "" or "*" (the wildcard): None
        if pk is not None and pk in rows:
            if deleted or not lock_id:
                del rows[pk]
            else:
                rows[pk] = row
        elif pk is None and lock_id and not deleted:
            added.append(row)
    return [*rows.values(), *added]


# --- Mapping -------------------------------------------------------------------------------------------


class SearchSelect(forms.Select):
    """A select that renders only its chosen option; the admin's select2 searches the rest as you type.

    With hundreds of objects and locks, every option in every row made the page megabytes (issue 10). The
    options come from the console's search views (`search_url`) instead, through Django's own autocomplete.js,
    and the form sets the one chosen option from rows it loaded for the whole page at once.
    """

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.search_url = ""

    def build_attrs(self, base_attrs: dict[str, Any], extra_attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        attrs: dict[str, Any] = super().build_attrs(base_attrs, extra_attrs)
        if not self.search_url:
            return attrs
        attrs.update(
            {
                "class": f"{attrs.get('class', '')} admin-autocomplete".strip(),
                "data-ajax--url": self.search_url,
                "data-ajax--cache": "true",
                "data-ajax--delay": 250,
                "data-ajax--type": "GET",
                "data-theme": "admin-autocomplete",
                "data-allow-clear": "false",
                # select2 measures its width when it starts, and the Mapping tab may be hidden then.
                "data-width": "24em",
                "lang": get_select2_language() or "en",
            }
        )
        return attrs

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        # Its one option is the chosen value (the form sets it), so the stock template's loops over option groups
        # buy nothing; rendered directly, a page of rows costs a third of the time (bench/scale.py).
        choices = list(self.choices)
        chosen, label = choices[0] if choices else ("", "")
        return format_html(
            '<select name="{}"{}><option value="{}" selected>{}</option></select>',
            name,
            flatatt(self.build_attrs(self.attrs, attrs)),
            chosen,
            label,
        )

    @property
    def media(self) -> forms.Media:
        extra = "" if settings.DEBUG else ".min"
        language = get_select2_language()
        i18n = (f"admin/js/vendor/select2/i18n/{language}.js",) if language else ()
        return forms.Media(
            js=(
                f"admin/js/vendor/jquery/jquery{extra}.js",
                f"admin/js/vendor/select2/select2.full{extra}.js",
                *i18n,
                "admin/js/jquery.init.js",
                "admin/js/autocomplete.js",
            ),
            css={"screen": (f"admin/css/vendor/select2/select2{extra}.css", "admin/css/autocomplete.css")},
        )


def _input_html(widget: forms.widgets.Input, name: str, value: Any, attrs: dict[str, Any] | None) -> SafeString:
    formatted = widget.format_value(value)
    return format_html(
        '<input type="{}" name="{}"{}{}>',
        widget.input_type,
        name,
        format_html(' value="{}"', formatted) if formatted is not None else "",
        flatatt(widget.build_attrs(widget.attrs, attrs)),
    )


class DirectHiddenInput(forms.HiddenInput):
    """A hidden input rendered without the template engine: each mapping row has two (its id and integration)."""

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        return _input_html(self, name, value, attrs)


class DirectCheckboxInput(forms.CheckboxInput):
    """A checkbox rendered without the template engine: each mapping row's "Delete?"."""

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        if self.check_test(value):
            attrs = {**(attrs or {}), "checked": True}
        return _input_html(self, name, value, attrs)


class MappingObjectField(forms.Field):
    """A mapping row's object, by id; empty (or WILDCARD_VALUE, as the search offers it) is the wildcard."""

    widget = SearchSelect
    default_error_messages = {"invalid_choice": "Choose an object from the list."}

    def to_python(self, value: Any) -> int | None:
        text = str(value if value is not None else "").strip()
        if text in ("", WILDCARD_VALUE):
            return None
        object_id = parse_id(text)
        if object_id is None:
            raise ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return object_id

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(data) != self.to_python(initial)
        except ValidationError:
            return True


def lock_choice_label(
    *, integration: Integration | None, lock_id: str, cached: dict[str, CachedLock], fallback_name: str = ""
) -> str:
    """How a lock reads in a mapping row and in the lock search: its name and whether it can open now."""
    lock = cached.get(lock_id)
    if lock is None:
        # Kept but flagged until GET locks (ADR 0005, decision 9); never silently dropped.
        return f"{fallback_name or lock_id} — not in the lock list, click GET locks"
    if integration is not None and mapping_problem(integration=integration, lock_id=lock_id, cached=cached):
        return f"{lock.name} — on another IQ, cannot be mapped"
    return f"{lock.name} — {'online' if lock.online and lock.iq_online else 'offline'}"


class LockMappingForm(forms.ModelForm[LockMapping]):
    object = MappingObjectField(label="Object", required=False)
    lock_id = forms.CharField(label="Lock", max_length=64, widget=SearchSelect)

    class Meta:
        model = LockMapping
        fields = ["object", "lock_id"]

    def __init__(
        self,
        *args: Any,
        integration: Integration | None = None,
        cached: dict[str, CachedLock] | None = None,
        objects_by_id: dict[int, BookableObject] | None = None,
        search_urls: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.integration = integration
        # Given by the formset, loaded once for all its rows; a form on its own loads what it needs.
        if cached is None:
            cached = cached_locks_by_id(integration=integration) if integration is not None else {}
        self.cached = cached
        self.objects_by_id = objects_by_id if objects_by_id is not None else {}
        self._objects_given = objects_by_id is not None
        urls = search_urls or {}
        for name in ("object", "lock_id"):
            widget: SearchSelect = self.fields[name].widget  # type: ignore[assignment]
            widget.search_url = urls.get(name, "")
        self.fields["object"].widget.choices = [self._object_choice()]  # type: ignore[attr-defined]
        self.fields["lock_id"].widget.choices = [self._lock_choice()]  # type: ignore[attr-defined]

    def _object(self, object_id: int) -> BookableObject | None:
        if object_id not in self.objects_by_id and not self._objects_given:
            found = BookableObject.objects.select_related("parent").filter(pk=object_id).first()
            if found is not None:
                self.objects_by_id[object_id] = found
        if object_id not in self.objects_by_id and object_id == self.instance.object_id:
            self.objects_by_id[object_id] = self.instance.object  # type: ignore[assignment]
        return self.objects_by_id.get(object_id)

    def _object_choice(self) -> tuple[str, str]:
        raw = self["object"].value()
        try:
            object_id = self.fields["object"].to_python(raw)
        except ValidationError:
            return str(raw), "— not an object: choose one —"
        if object_id is None:
            return "", WILDCARD_LABEL
        obj = self._object(object_id)
        return str(object_id), obj.label if obj is not None else f"#{object_id} — not an object: choose one"

    def _lock_choice(self) -> tuple[str, str]:
        lock_id = str(self["lock_id"].value() or "").strip()
        if not lock_id:
            return "", LOCK_PLACEHOLDER
        fallback = self.instance.lock_name if self.instance.pk and self.instance.lock_id == lock_id else ""
        label = lock_choice_label(
            integration=self.integration, lock_id=lock_id, cached=self.cached, fallback_name=fallback
        )
        return lock_id, label

    def clean_object(self) -> BookableObject | None:
        object_id = self.cleaned_data.get("object")
        if object_id is None:
            return None
        obj = self._object(object_id)
        # An inactive object that is still mapped stays visible rather than silently unmapped, but none is
        # newly mapped.
        if obj is None or (not obj.is_active and object_id != self.instance.object_id):
            raise ValidationError("Choose an object from the list.", code="invalid_choice")
        return obj

    def clean_lock_id(self) -> str:
        lock_id = str(self.cleaned_data.get("lock_id") or "")
        unchanged = self.instance.pk is not None and lock_id == self.instance.lock_id
        lock = self.cached.get(lock_id)
        if lock is None and not unchanged:
            raise ValidationError("Choose a lock from the list fetched by GET locks.", code="unknown_lock")
        if lock is not None and self.integration is not None:
            problem = mapping_problem(integration=self.integration, lock_id=lock_id, cached=self.cached)
            if problem and not unchanged:
                raise ValidationError(f"{lock.name} is {problem}.", code="other_iq")
        return lock_id

    def save(self, commit: bool = True) -> LockMapping:
        mapping = super().save(commit=False)
        lock = self.cached.get(mapping.lock_id)
        if lock is not None:
            mapping.lock_name = lock.name
        if commit:
            mapping.save()
        return mapping


class LockMappingFormSet(forms.BaseInlineFormSet):  # type: ignore[type-arg]
    """Rows of object → lock: each object at most once, at most one wildcard row.

    The Mapping tab shows one page of an integration's rows (its queryset holds only those), so the rules are
    checked against the rows on the other pages too; rows not in the formset are never touched by its save.
    `tab` is what the page's template shows around the rows (search, counts, pages); `search_urls` are the
    widgets' search views.
    """

    def __init__(
        self, *args: Any, tab: Any = None, search_urls: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tab = tab
        self.search_urls = dict(search_urls or {})
        self.integration = self.instance if self.instance.pk else None
        self.cached = cached_locks_by_id(integration=self.integration) if self.integration is not None else {}
        self._objects_by_id: dict[int, BookableObject] | None = None

    @property
    def forms_and_template(self) -> list[forms.Form]:
        """The rows, then the template row that "Add another mapping" copies (mapping_rows.html)."""
        return [*self.forms, self.empty_form]

    def objects_by_id(self) -> dict[int, BookableObject]:
        """The objects the rows name, as stored and as posted: loaded once (none when the rows carry theirs)."""
        if self._objects_by_id is None:
            found: dict[int, BookableObject] = {}
            wanted: set[int] = set()
            object_field = LockMapping._meta.get_field("object")
            for row in self.get_queryset():
                if row.object_id is None:
                    continue
                if object_field.is_cached(row):
                    found[row.object_id] = row.object  # type: ignore[assignment]
                else:
                    wanted.add(row.object_id)
            if self.is_bound:
                for index in range(min(self.total_form_count(), self.absolute_max)):
                    object_id = parse_id(self.data.get(f"{self.add_prefix(index)}-object"))
                    if object_id is not None and object_id not in found:
                        wanted.add(object_id)
            if wanted:
                found.update(BookableObject.objects.select_related("parent").in_bulk(wanted))
            self._objects_by_id = found
        return self._objects_by_id

    deletion_widget = DirectCheckboxInput

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        # The row's id and integration: the stock hidden inputs, as inputs written directly (bench/scale.py).
        for name in (self.model._meta.pk.name, self.fk.name):
            if name in form.fields:
                form.fields[name].widget = DirectHiddenInput(attrs=form.fields[name].widget.attrs)

    def get_form_kwargs(self, index: int | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = super().get_form_kwargs(index)
        kwargs["integration"] = self.integration
        kwargs["cached"] = self.cached
        kwargs["objects_by_id"] = self.objects_by_id()
        kwargs["search_urls"] = self.search_urls
        return kwargs

    def clean(self) -> None:
        super().clean()
        seen: dict[int | None, str] = {}
        errors: list[str] = []
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            obj = form.cleaned_data.get("object")
            key = obj.pk if obj is not None else None
            label = obj.label if obj is not None else "The wildcard"
            if key in seen:
                if key is None:
                    errors.append("Only one wildcard (default) row is allowed.")
                else:
                    errors.append(f"{label} is mapped more than once; each object may have only one lock.")
                continue
            seen[key] = label
        if self.instance.pk and seen:
            errors.extend(self._clashes_with_other_pages(seen))
        if self.instance.pk and self.instance.is_active:
            errors.extend(mapping_conflicts(integration=self.instance, object_ids=list(seen)))
        if errors:
            raise ValidationError(errors)

    def _clashes_with_other_pages(self, seen: Mapping[int | None, str]) -> list[str]:
        """The stored rows outside this formset that the posted rows would duplicate (one query)."""
        here = [form.instance.pk for form in self.initial_forms if form.instance.pk is not None]
        clash = Q(object_id__in=[key for key in seen if key is not None])
        if None in seen:
            clash |= Q(object__isnull=True)
        errors = []
        for other in self.instance.mappings.exclude(pk__in=here).filter(clash).select_related("object__parent"):
            lock = other.lock_name or other.lock_id
            if other.object_id is None:
                errors.append(
                    f"Only one wildcard (default) row is allowed, and this integration already has one (to {lock}; "
                    "search for * to find it)."
                )
            else:
                errors.append(
                    f"{other.object.label} is already mapped to {lock} in another row of this list (search for it); "  # type: ignore[union-attr]
                    "each object may have only one lock."
                )
        return errors


def secret_status_html(*, stored: bool, what: str) -> str:
    """ "stored"/"not set" for a secret, never the value (used by read-only displays)."""
    if stored:
        return format_html('<span class="secret-status secret-stored">{} stored (encrypted)</span>', what)
    return format_html('<span class="secret-status secret-missing">no {} yet</span>', what)
