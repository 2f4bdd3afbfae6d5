"""Forms of the integration console: the change page (all tabs) and its Mapping rows.

Secrets are write-only: their inputs never carry a value (not even a masked one) and a blank input
keeps the stored value. Choices come from our own tables only, so rendering never calls Salto.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from bookings.models import BookableObject, BookingField, BookingStatus
from bookings.selectors import objects_as_tree
from integrations.models import IDENTITY_FIELDS, CachedLock, Integration, LockMapping
from integrations.selectors import activation_missing_steps, mapping_conflicts, mapping_problem
from locks.otp import is_valid_pin

MAPPING_PREFIX = "mappings"
WILDCARD_LABEL = "* Wildcard (default for objects without their own mapping)"
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
        self.fields["activate"].initial = bool(self.instance.pk and self.instance.is_active)
        self.fields["open_statuses"].queryset = BookingStatus.objects.filter(is_active=True)  # type: ignore[attr-defined]
        self.fields["checkin_status"].queryset = BookingStatus.objects.filter(is_active=True)  # type: ignore[attr-defined]
        self.fields["last_open_field"].queryset = BookingField.objects.filter(  # type: ignore[attr-defined]
            field_type=BookingField.FieldType.DATETIME
        )
        self.fields["last_open_field"].empty_label = "— none —"  # type: ignore[attr-defined]
        self.fields["checkin_status"].empty_label = "— none —"  # type: ignore[attr-defined]
        has_password = bool(self.instance.pk and self.instance.password)
        self.fields["password_input"].required = not has_password
        if has_password:
            self.fields["password_input"].widget.attrs["placeholder"] = "(stored)"
        if self.instance.pk and self.instance.current_pin:
            self.fields["current_pin_input"].widget.attrs["placeholder"] = "(stored)"
        for name in ("site_uid", "username", "iq_id"):
            self.fields[name].widget.attrs.setdefault("autocomplete", "off")

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
        steps = activation_missing_steps(integration=self.instance, mappings=posted_mappings(self.data))
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


def posted_mappings(data: Any) -> list[tuple[int | None, str]]:
    """The (object id, lock id) rows the Mapping formset in DATA would leave, read from the raw POST.

    The activation check runs in the main form, before the inline formset is validated, yet must judge
    the mappings being saved with it; invalid rows are rejected by the formset itself anyway.
    """
    try:
        total = int(data.get(f"{MAPPING_PREFIX}-TOTAL_FORMS", 0))
    except (TypeError, ValueError):
        return []
    rows: list[tuple[int | None, str]] = []
    for index in range(min(total, 1000)):
        prefix = f"{MAPPING_PREFIX}-{index}-"
        lock_id = str(data.get(prefix + "lock_id") or "").strip()
        if not lock_id or data.get(prefix + "DELETE"):
            continue
        raw_object = str(data.get(prefix + "object") or "").strip()
        rows.append((int(raw_object) if raw_object.isdigit() else None, lock_id))
    return rows


# --- Mapping -------------------------------------------------------------------------------------------


def object_choice_label(obj: BookableObject) -> str:
    # <option> text cannot be styled per option; non-breaking spaces keep the indent visible.
    return f"\u00a0\u00a0\u00a0\u00a0↳ {obj.name}" if obj.parent_id else obj.name


class LockSelect(forms.Select):
    """A select whose options for unusable locks (on another IQ) are disabled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.disabled_values: set[str] = set()

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option: dict[str, Any] = super().create_option(name, value, *args, **kwargs)
        if str(value) in self.disabled_values and not option.get("selected"):
            option["attrs"]["disabled"] = True
        return option


class LockMappingForm(forms.ModelForm[LockMapping]):
    object = forms.TypedChoiceField(label="Object", required=False, coerce=int, empty_value=None)
    lock_id = forms.ChoiceField(label="Lock", widget=LockSelect)

    class Meta:
        model = LockMapping
        fields = ["object", "lock_id"]

    def __init__(self, *args: Any, integration: Integration | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.integration = integration
        tree = objects_as_tree()
        self.objects_by_id = {obj.pk: obj for obj in tree}
        if self.instance.pk and self.instance.object_id and self.instance.object_id not in self.objects_by_id:
            # An inactive object that is still mapped stays visible rather than silently unmapped.
            extra = self.instance.object
            assert extra is not None
            self.objects_by_id[extra.pk] = extra
            tree = [*tree, extra]
        object_field: forms.TypedChoiceField = self.fields["object"]  # type: ignore[assignment]
        object_field.choices = [("", WILDCARD_LABEL), *((o.pk, object_choice_label(o)) for o in tree)]

        self.cached = {lock.lock_id: lock for lock in CachedLock.objects.filter(integration=integration)}
        choices: list[tuple[str, str]] = [("", "— choose a lock (GET locks fills this list) —")]
        widget: LockSelect = self.fields["lock_id"].widget  # type: ignore[assignment]
        for lock in self.cached.values():
            problem = mapping_problem(integration=integration, lock_id=lock.lock_id, cached=self.cached)  # type: ignore[arg-type]
            label = lock.name
            if problem:
                label += " — on another IQ, cannot be mapped"
                widget.disabled_values.add(lock.lock_id)
            elif not lock.online or not lock.iq_online:
                label += " (offline)"
            choices.append((lock.lock_id, label))
        current = self.instance.lock_id if self.instance.pk else ""
        if current and current not in self.cached:
            # Kept but flagged until GET locks (ADR 0005, decision 9); never silently dropped.
            choices.append((current, f"{self.instance.lock_name or current} — not in the lock list, click GET locks"))
        lock_field: forms.ChoiceField = self.fields["lock_id"]  # type: ignore[assignment]
        lock_field.choices = choices

    def clean_object(self) -> BookableObject | None:
        object_id = self.cleaned_data.get("object")
        if object_id is None:
            return None
        obj = self.objects_by_id.get(object_id)
        if obj is None:
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
    """Rows of object → lock: each object at most once, at most one wildcard row."""

    def get_form_kwargs(self, index: int | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = super().get_form_kwargs(index)
        kwargs["integration"] = self.instance if self.instance.pk else None
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
        if self.instance.pk and self.instance.is_active:
            errors.extend(mapping_conflicts(integration=self.instance, object_ids=list(seen)))
        if errors:
            raise ValidationError(errors)


def secret_status_html(*, stored: bool, what: str) -> str:
    """ "stored"/"not set" for a secret, never the value (used by read-only displays)."""
    if stored:
        return format_html('<span class="secret-status secret-stored">{} stored (encrypted)</span>', what)
    return format_html('<span class="secret-status secret-missing">no {} yet</span>', what)
