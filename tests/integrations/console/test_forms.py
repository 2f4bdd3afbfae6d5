"""Validation of the console's forms: Details, PINs, write-only secrets and Mapping rows."""

from __future__ import annotations

from typing import Any

import pytest
from django.forms import inlineformset_factory
from django.utils import timezone

from integrations.forms import MINUTES_ERROR, PIN_ERROR, IntegrationForm, LockMappingForm, LockMappingFormSet
from integrations.models import CachedLock, Integration, LockMapping
from tests.fake_salto import OTHER_IQ_ID, PASSWORD, PIN
from tests.integrations.console.conftest import make_ready
from tests.integrations.console.test_admin import form_data

pytestmark = pytest.mark.django_db


def bound(integration: Integration, **overrides: Any) -> IntegrationForm:
    return IntegrationForm(data=form_data(integration, **overrides), instance=integration)


@pytest.mark.parametrize(("value", "ok"), [(0, True), (1440, True), (-1, False), (1441, False), ("x", False)])
def test_time_before_is_0_to_1440_with_a_clear_error(integration: Integration, value: Any, ok: bool) -> None:
    form = bound(integration, minutes_before=value)
    assert form.is_valid() is ok
    if not ok:
        assert form.errors["minutes_before"] == [MINUTES_ERROR]


@pytest.mark.parametrize("field", ["new_pin", "current_pin_input"])
@pytest.mark.parametrize(("value", "ok"), [("0123", True), ("123", False), ("12345", False), ("12a4", False)])
def test_pins_are_four_digits(integration: Integration, field: str, value: str, ok: bool) -> None:
    form = bound(integration, **{field: value})
    assert form.is_valid() is ok
    if not ok:
        assert form.errors[field] == [PIN_ERROR]


def test_save_last_open_action_offers_only_date_time_fields(integration: Integration, booking_fields: dict) -> None:
    form = bound(integration)
    assert list(form.fields["last_open_field"].queryset) == [booking_fields["opened"]]  # type: ignore[attr-defined]
    form = bound(integration, last_open_field=booking_fields["note"].pk)
    assert not form.is_valid()
    assert "last_open_field" in form.errors


def test_optional_details_can_be_cleared(integration: Integration, booking_fields: dict, statuses: dict) -> None:
    integration.last_open_field = booking_fields["opened"]
    integration.checkin_status = statuses["checked_in"]
    integration.save()
    form = bound(integration, last_open_field="", checkin_status="")
    assert form.is_valid(), form.errors
    saved = form.save()
    assert saved.last_open_field is None
    assert saved.checkin_status is None


def test_a_blank_password_keeps_the_stored_one(integration: Integration) -> None:
    form = bound(integration, password_input="")
    assert form.is_valid(), form.errors
    assert form.save().password == PASSWORD
    assert form.secrets_changed == []


def test_a_typed_password_replaces_it(integration: Integration) -> None:
    form = bound(integration, password_input="new-secret-pw")
    assert form.is_valid()
    assert form.secrets_changed == ["password"]
    assert form.save().password == "new-secret-pw"


def test_a_new_integration_needs_a_password(db: None) -> None:
    form = IntegrationForm(
        data={"name": "x", "environment": "acceptance", "site_uid": "NL1", "username": "u", "minutes_before": 0}
    )
    assert not form.is_valid()
    assert "password_input" in form.errors


def test_secret_inputs_never_render_a_value(integration: Integration) -> None:
    make_ready(integration)
    html = str(bound(integration, password_input=PASSWORD, current_pin_input=PIN))
    assert PASSWORD not in html
    assert PIN not in html
    assert 'name="password_input"' in html
    assert 'type="password"' in html


# --- Mapping ------------------------------------------------------------------------------------------------


def mapping_formset(integration: Integration, rows: list[tuple[Any, str]]) -> Any:
    factory = inlineformset_factory(
        Integration,
        LockMapping,
        form=LockMappingForm,
        formset=LockMappingFormSet,
        fields=["object", "lock_id"],
        extra=0,
    )
    data = {k: v for k, v in form_data(integration, mappings=rows).items() if k.startswith("mappings-")}
    return factory(data=data, instance=integration, prefix="mappings")


def test_duplicate_objects_are_rejected(integration: Integration, objects: dict) -> None:
    make_ready(integration, with_mapping=False)
    hall = objects["hall"].pk
    formset = mapping_formset(integration, [(hall, "lock-1"), (hall, "lock-1")])
    assert not formset.is_valid()
    assert formset.non_form_errors() == ["Hall is mapped more than once; each object may have only one lock."]


def test_only_one_wildcard_row(integration: Integration) -> None:
    make_ready(integration, with_mapping=False)
    formset = mapping_formset(integration, [("", "lock-1"), ("", "lock-1")])
    assert not formset.is_valid()
    assert formset.non_form_errors() == ["Only one wildcard (default) row is allowed."]


def test_a_main_object_a_sub_object_and_the_wildcard(integration: Integration, objects: dict) -> None:
    make_ready(integration, with_mapping=False)
    formset = mapping_formset(
        integration, [(objects["building"].pk, "lock-1"), (objects["studio"].pk, "lock-1"), ("", "lock-1")]
    )
    assert formset.is_valid(), (formset.errors, formset.non_form_errors())
    formset.save()
    assert integration.mappings.count() == 3
    assert set(integration.mappings.values_list("lock_name", flat=True)) == {"Front door"}


def test_a_lock_on_another_iq_is_rejected(integration: Integration) -> None:
    make_ready(integration, with_mapping=False)
    CachedLock.objects.create(
        integration=integration, lock_id="lock-9", name="Garage", iq_id=OTHER_IQ_ID, refreshed_at=timezone.now()
    )
    formset = mapping_formset(integration, [("", "lock-9")])
    assert not formset.is_valid()
    assert formset.errors[0]["lock_id"] == ["Garage is on another IQ — this integration's OTP is not accepted there."]


def test_a_lock_not_in_the_cached_list_is_rejected(integration: Integration) -> None:
    make_ready(integration, with_mapping=False)
    formset = mapping_formset(integration, [("", "lock-unknown")])
    assert not formset.is_valid()
    assert "lock_id" in formset.errors[0]
