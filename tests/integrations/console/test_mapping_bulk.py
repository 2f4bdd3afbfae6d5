"""The Mapping tab's bulk actions (map objects to the locks of their names, clear a selection): preview, confirm."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bookings.models import BookableObject
from integrations.models import CachedLock, Integration, LockMapping
from integrations.selectors import (
    SKIP_ALREADY_MAPPED,
    SKIP_AMBIGUOUS,
    SKIP_NO_LOCK,
    SKIP_OTHER_INTEGRATION,
    SKIP_UNUSABLE,
    same_name_plan,
)
from integrations.services.lifecycle import integration_activate
from tests.fake_salto import OTHER_IQ_ID
from tests.integrations.console.conftest import make_integration, make_ready

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def same_name_url(integration: Integration) -> str:
    return reverse("admin:integrations_integration_mapping_same_name", args=[integration.pk])


def clear_url(integration: Integration) -> str:
    return reverse("admin:integrations_integration_mapping_clear", args=[integration.pk])


def add_lock(
    integration: Integration, lock_id: str, name: str, *, iq_id: str | None = None, online: bool = True
) -> None:
    CachedLock.objects.create(
        integration=integration,
        lock_id=lock_id,
        name=name,
        iq_id=integration.iq_id if iq_id is None else iq_id,
        online=online,
        refreshed_at=timezone.now(),
    )


@pytest.fixture
def site(integration: Integration) -> dict[str, Any]:
    """Objects and locks with every case of the "same name" rule in them."""
    make_ready(integration, with_mapping=False)  # lock-1 "Front door"
    a = BookableObject.objects.create(name="Building A")
    b = BookableObject.objects.create(name="Building B")
    objects = {
        "a": a,
        "b": b,
        "a-studio": BookableObject.objects.create(name="Studio", parent=a),  # a lock named "Building A › Studio"
        "b-studio": BookableObject.objects.create(name="Studio", parent=b),  # only "Studio": two objects are
        "hall": BookableObject.objects.create(name="hall "),  # "Hall": case and spaces do not matter
        "garage": BookableObject.objects.create(name="Garage"),  # on another IQ
        "attic": BookableObject.objects.create(name="Attic"),  # no lock of that name
        "twins": BookableObject.objects.create(name="Twins"),  # two locks of that name
        "front": BookableObject.objects.create(name="Front door"),  # already mapped here
        "shed": BookableObject.objects.create(name="Shed"),  # mapped by another active integration
        "old": BookableObject.objects.create(name="Old", is_active=False),
    }
    for lock_id, name in [
        ("l-a", "Building A"),
        ("l-as", "Building A › Studio"),
        ("l-st", "Studio"),
        ("l-hall", "Hall"),
        ("l-t1", "Twins"),
        ("l-t2", "Twins"),
        ("l-shed", "Shed"),
        ("l-old", "Old"),
    ]:
        add_lock(integration, lock_id, name)
    add_lock(integration, "l-garage", "Garage", iq_id=OTHER_IQ_ID)
    LockMapping.objects.create(
        integration=integration, object=objects["front"], lock_id="lock-1", lock_name="Front door"
    )
    other = make_ready(make_integration(name="Production", site_uid="NL0000000001"), with_mapping=False)
    LockMapping.objects.create(integration=other, object=objects["shed"], lock_id="lock-1")
    assert integration_activate(integration=other).ok
    return {"integration": integration, "objects": objects}


def labels(rows: list[Any]) -> list[str]:
    return [row.object.label for row in rows]


# --- the plan -----------------------------------------------------------------------------------------------


def test_the_plan_proposes_same_name_locks_and_says_why_it_skips_the_rest(site: dict[str, Any]) -> None:
    plan = same_name_plan(integration=site["integration"])
    assert [(m.object.label, m.lock.lock_id) for m in plan.proposals] == [
        ("Building A", "l-a"),
        ("Building A › Studio", "l-as"),
        ("hall ", "l-hall"),
    ]
    skipped = {reason: [(s.object.label, s.detail) for s in rows] for reason, rows in plan.skipped.items()}
    assert skipped[SKIP_ALREADY_MAPPED] == [("Front door", "mapped to “Front door”")]
    assert skipped[SKIP_OTHER_INTEGRATION] == [("Shed", "by “Production”")]
    assert skipped[SKIP_AMBIGUOUS] == [
        ("Building B › Studio", "2 objects are named “Studio”"),
        ("Twins", "2 locks are named “Twins”"),
    ]
    assert skipped[SKIP_UNUSABLE] == [
        ("Garage", "“Garage” is on another IQ — this integration's OTP is not accepted there")
    ]
    assert skipped[SKIP_NO_LOCK] == [
        ("Attic", "no lock is named “Attic”"),
        ("Building B", "no lock is named “Building B”"),
    ]


def test_the_plan_can_be_narrowed_by_a_search(site: dict[str, Any]) -> None:
    plan = same_name_plan(integration=site["integration"], query="building a")
    assert [m.object.label for m in plan.proposals] == ["Building A", "Building A › Studio"]
    # the ambiguity of a name is judged among all objects, not only those found
    plan = same_name_plan(integration=site["integration"], query="building b › studio")
    assert [s.object.label for s in plan.skipped[SKIP_AMBIGUOUS]] == ["Building B › Studio"]


def test_the_plan_costs_the_same_queries_for_more_objects(
    site: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    for number in range(100):
        BookableObject.objects.create(name=f"Unit {number}")
        add_lock(site["integration"], f"u-{number}", f"Unit {number}")
    integration = Integration.objects.get(pk=site["integration"].pk)
    with django_assert_max_num_queries(4):
        plan = same_name_plan(integration=integration)
    assert len(plan.proposals) == 103


# --- preview and confirm ------------------------------------------------------------------------------------


def test_the_preview_changes_nothing(admin_client: Client, site: dict[str, Any]) -> None:
    integration = site["integration"]
    response = admin_client.get(same_name_url(integration))
    assert response.status_code == 200
    html = response.content.decode()
    assert "3 objects would be mapped" in html
    assert "Building A › Studio" in html
    assert "Mapped by another active integration: 1" in html
    assert "Ambiguous: 2" in html
    assert integration.mappings.count() == 1


def test_confirming_maps_what_the_preview_showed(admin_client: Client, superuser: User, site: dict[str, Any]) -> None:
    integration = site["integration"]
    plan = admin_client.get(same_name_url(integration)).context["plan_json"]
    response = admin_client.post(same_name_url(integration), {"plan": plan}, follow=True)
    assert (
        response.redirect_chain[-1][0]
        == reverse("admin:integrations_integration_change", args=[integration.pk]) + "#tab-mapping"
    )
    assert "Mapped 3 objects to the lock with its name." in [str(m) for m in response.context["messages"]]
    mapped = dict(integration.mappings.values_list("object__name", "lock_name"))
    assert mapped == {
        "Front door": "Front door",
        "Building A": "Building A",
        "Studio": "Building A › Studio",
        "hall ": "Hall",
    }
    record = LockMapping.history.filter(object_id=site["objects"]["hall"].pk).get()  # type: ignore[attr-defined]
    assert record.history_user == superuser


def test_a_confirmation_maps_only_what_still_holds(admin_client: Client, site: dict[str, Any]) -> None:
    integration = site["integration"]
    objects = site["objects"]
    plan = admin_client.get(same_name_url(integration)).context["plan_json"]
    # meanwhile someone maps Hall by hand, and a pair was never proposed (a tampered form)
    LockMapping.objects.create(
        integration=integration, object=objects["hall"], lock_id="lock-1", lock_name="Front door"
    )
    tampered = json.dumps([*json.loads(plan), [objects["attic"].pk, "l-a"]])
    response = admin_client.post(same_name_url(integration), {"plan": tampered}, follow=True)
    text = " ".join(str(m) for m in response.context["messages"])
    assert "Mapped 2 objects to the lock with its name." in text
    assert "2 of the previewed rows no longer held" in text
    assert integration.mappings.get(object=objects["hall"]).lock_id == "lock-1"
    assert not integration.mappings.filter(object=objects["attic"]).exists()


def test_an_active_integration_never_gets_an_object_another_active_one_maps(
    admin_client: Client, site: dict[str, Any]
) -> None:
    integration = site["integration"]
    shed = site["objects"]["shed"]
    forged = json.dumps([[shed.pk, "l-shed"]])
    admin_client.post(same_name_url(integration), {"plan": forged})
    assert not integration.mappings.filter(object=shed).exists()


@pytest.mark.parametrize(
    "plan", ["", "nope", "{}", "[1]", "[[1, 2]]", '[["1", "l"]]', '[[true, "l"]]', '[[1, "l", 3]]']
)
def test_an_unreadable_confirmation_is_a_400(admin_client: Client, site: dict[str, Any], plan: str) -> None:
    assert admin_client.post(same_name_url(site["integration"]), {"plan": plan}).status_code == 400
    assert site["integration"].mappings.count() == 1


# --- clear a selection --------------------------------------------------------------------------------------


@pytest.fixture
def mapped(integration: Integration) -> list[LockMapping]:
    make_ready(integration)  # the wildcard
    rows = [integration.mappings.get()]
    for number in range(1, 6):
        unit = BookableObject.objects.create(name=f"Unit {number}")
        rows.append(
            LockMapping.objects.create(integration=integration, object=unit, lock_id="lock-1", lock_name="Front door")
        )
    return rows


def test_the_clear_preview_lists_the_selected_rows_and_deletes_nothing(
    admin_client: Client, integration: Integration, mapped: list[LockMapping]
) -> None:
    response = admin_client.get(clear_url(integration), {"mapping": [mapped[0].pk, mapped[2].pk]})
    html = response.content.decode()
    assert "2 mapping rows would be deleted" in html
    assert "* Wildcard (default)" in html
    assert "Unit 2" in html
    assert "Unit 3" not in html
    assert "4 rows of “Salto KS acceptance” would stay." in html
    assert integration.mappings.count() == 6
    assert response.context["ids"] == f"{mapped[0].pk},{mapped[2].pk}"


def test_confirming_clears_only_this_integrations_selected_rows(
    admin_client: Client, integration: Integration, mapped: list[LockMapping]
) -> None:
    other = make_ready(make_integration(name="Production"))
    foreign = other.mappings.get()
    ids = f"{mapped[1].pk},{mapped[2].pk},{foreign.pk}"
    response = admin_client.post(clear_url(integration), {"ids": ids}, follow=True)
    text = " ".join(str(m) for m in response.context["messages"])
    assert "Cleared 2 mapping rows." in text
    assert "1 of the selected rows were already gone." in text
    assert integration.mappings.count() == 4
    assert LockMapping.objects.filter(pk=foreign.pk).exists()
    assert LockMapping.history.filter(history_type="-").count() == 2  # type: ignore[attr-defined]


def test_all_rows_matching_a_search_can_be_cleared(
    admin_client: Client, integration: Integration, mapped: list[LockMapping]
) -> None:
    response = admin_client.get(clear_url(integration), {"q": "unit", "all": "1"})
    assert response.context["ids"] == ",".join(str(m.pk) for m in mapped[1:])


def test_clearing_the_last_row_of_an_active_integration_warns(
    admin_client: Client, integration: Integration, mapped: list[LockMapping]
) -> None:
    assert integration_activate(integration=integration).ok
    ids = ",".join(str(m.pk) for m in mapped)
    preview = admin_client.get(clear_url(integration), {"q": "", "all": "1"}).content.decode()
    assert "is active: with no mapping left, no door opens for its bookings." in preview
    response = admin_client.post(clear_url(integration), {"ids": ids}, follow=True)
    text = " ".join(str(m) for m in response.context["messages"])
    assert "is active but has no mapping left: no door opens for its bookings" in text


def test_nothing_selected_goes_back_with_a_hint(
    admin_client: Client, integration: Integration, mapped: list[LockMapping]
) -> None:
    response = admin_client.get(clear_url(integration), follow=True)
    assert "Tick the rows to clear on the Mapping tab first." in [str(m) for m in response.context["messages"]]


@pytest.mark.parametrize(
    ("method", "data"),
    [("get", {"mapping": "²"}), ("get", {"mapping": "x"}), ("post", {"ids": "1,²"}), ("post", {"ids": "1;2"})],
)
def test_ids_that_are_not_ids_are_a_400(
    admin_client: Client, integration: Integration, mapped: list[LockMapping], method: str, data: dict
) -> None:
    response = getattr(admin_client, method)(clear_url(integration), data)
    assert response.status_code == 400
    assert integration.mappings.count() == 6


# --- who may -----------------------------------------------------------------------------------------------


def test_only_people_who_may_change_the_integration_can_use_bulk_actions(
    staff: User, integration: Integration, mapped: list[LockMapping]
) -> None:
    client = Client()
    client.force_login(staff)
    assert client.get(same_name_url(integration)).status_code == 403
    assert client.post(same_name_url(integration), {"plan": "[]"}).status_code == 403
    assert client.get(clear_url(integration), {"mapping": mapped[0].pk}).status_code == 403
    assert client.post(clear_url(integration), {"ids": str(mapped[0].pk)}).status_code == 403
    assert integration.mappings.count() == 6


def test_confirmations_are_csrf_protected(superuser: User, integration: Integration, mapped: list[LockMapping]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert client.post(clear_url(integration), {"ids": str(mapped[0].pk)}).status_code == 403
    assert client.put(same_name_url(integration)).status_code == 403
    assert integration.mappings.count() == 6


def test_other_methods_are_405(admin_client: Client, integration: Integration) -> None:
    assert admin_client.put(same_name_url(integration)).status_code == 405
    assert admin_client.delete(clear_url(integration)).status_code == 405
