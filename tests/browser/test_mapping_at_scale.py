"""The Mapping tab at a site's size, in the browser: search-as-you-type rows, pages, and the bulk "same name" action."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from bookings.models import BookableObject
from integrations.models import CachedLock, Integration, LockMapping
from locks.sandbox.demo import DEMO_IQ_ID, DEMO_PASSWORD, DEMO_SITE_ID, DEMO_SITE_UID, DEMO_USERNAME
from tests.browser.conftest import choose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def ready_integration(locks: list[tuple[str, bool]]) -> Integration:
    """An integration with every manual step done and the lock list fetched (LOCKS: name, online)."""
    now = timezone.now()
    integration = Integration.objects.create(
        name="Salto KS acceptance",
        environment="acceptance",
        site_uid=DEMO_SITE_UID,
        site_id=DEMO_SITE_ID,
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        access_test_ok=True,
        access_tested_at=now,
        iq_id=DEMO_IQ_ID,
        iq_secret="iq-secret",
        current_pin="1234",
        activation_state=Integration.ActivationState.ACTIVATED,
        activated_at=now,
        locks_refreshed_at=now,
    )
    for number, (name, online) in enumerate(locks, start=1):
        CachedLock.objects.create(
            integration=integration,
            lock_id=f"lock-{number}",
            name=name,
            iq_id=DEMO_IQ_ID,
            online=online,
            refreshed_at=now,
        )
    return integration


def open_mapping_tab(page: Page, live_server: Any, integration: Integration, query: str = "") -> None:
    page.goto(f"{live_server.url}/admin/integrations/integration/{integration.pk}/change/{query}")
    page.click("#tab-button-mapping")
    expect(page.locator("#tab-mapping")).to_be_visible()


def test_an_operator_maps_a_sub_object_by_typing_part_of_its_name(
    operator_page: Page, live_server: Any, screenshot: Any
) -> None:
    page = operator_page
    building = BookableObject.objects.create(name="Building A")
    BookableObject.objects.create(name="Studio 1", parent=building)
    studio = BookableObject.objects.create(name="Studio 2", parent=building)
    for number in range(1, 60):
        BookableObject.objects.create(name=f"Unit {number:03d}")
    integration = ready_integration(
        [("Front door", True), ("Storage", False), *((f"Unit {n:03d}", True) for n in range(1, 60))]
    )
    open_mapping_tab(page, live_server, integration)

    # the object's search shows "Parent › Child" and keeps the wildcard on offer
    page.locator("select[name='mappings-0-object'] + .select2").click()
    results = page.locator(".select2-container--open .select2-results__option")
    expect(results.first).to_have_text("* Wildcard (default for objects without their own mapping)")
    page.locator(".select2-container--open .select2-search__field").fill("a › stu")
    expect(results).to_have_text(["Building A › Studio 1", "Building A › Studio 2"])
    results.filter(has_text="Studio 2").click()
    # the lock's search shows each lock's state
    choose(page, "mappings-0-lock_id", "stor", "Storage — offline")
    screenshot("mapping-1-search-as-you-type")
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")

    mapping = LockMapping.objects.get(integration=integration)
    assert (mapping.object_id, mapping.lock_id, mapping.lock_name) == (studio.pk, "lock-2", "Storage")
    page.click("#tab-button-mapping")
    expect(page.locator("#mappings-0 .field-mapping_status")).to_have_text("⚠ offline")
    expect(page.locator("#mappings-0 .field-object .select2-selection__rendered")).to_have_text("Building A › Studio 2")


def test_the_same_name_action_previews_then_maps_on_confirm(
    operator_page: Page, live_server: Any, screenshot: Any
) -> None:
    page = operator_page
    building = BookableObject.objects.create(name="Building A")
    BookableObject.objects.create(name="Studio 2", parent=building)
    BookableObject.objects.create(name="Hall")
    BookableObject.objects.create(name="Attic")
    integration = ready_integration([("Hall", True), ("Studio 2", True), ("Building A", True)])
    LockMapping.objects.create(integration=integration, object=building, lock_id="lock-3", lock_name="Building A")
    open_mapping_tab(page, live_server, integration)

    page.get_by_test_id("bulk-same-name").click()
    preview = page.get_by_test_id("same-name-preview")
    expect(page.get_by_test_id("proposal-count")).to_have_text("2 objects would be mapped")
    expect(page.get_by_test_id("proposals").locator("tbody tr")).to_have_text(
        ["Building A › Studio 2Studio 2online", "HallHallonline"]
    )
    expect(preview).to_contain_text("Already mapped: 1")
    expect(preview).to_contain_text("Building A — mapped to “Building A”")
    expect(preview).to_contain_text("No lock of that name: 1")
    expect(preview).to_contain_text("Attic — no lock is named “Attic”")
    screenshot("mapping-2-same-name-preview")
    assert LockMapping.objects.count() == 1  # a preview changes nothing

    page.get_by_test_id("confirm").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Mapped 2 objects to the lock with its name.")
    expect(page.locator("#tab-mapping")).to_be_visible()
    assert sorted(LockMapping.objects.values_list("object__name", "lock_name")) == [
        ("Building A", "Building A"),
        ("Hall", "Hall"),
        ("Studio 2", "Studio 2"),
    ]


def test_the_mapping_tab_pages_and_searches_its_rows(operator_page: Page, live_server: Any, screenshot: Any) -> None:
    page = operator_page
    integration = ready_integration([("Front door", True)])
    for number in range(1, 121):
        unit = BookableObject.objects.create(name=f"Unit {number:03d}")
        LockMapping.objects.create(integration=integration, object=unit, lock_id="lock-1", lock_name="Front door")
    open_mapping_tab(page, live_server, integration)

    expect(page.get_by_test_id("mapping-count")).to_contain_text("Rows 1–50 of 120.")
    expect(page.locator("#mappings-group tbody tr.has_original")).to_have_count(50)
    page.get_by_test_id("mapping-pager").get_by_role("link", name="3", exact=True).click()
    expect(page.locator("#tab-mapping")).to_be_visible()
    expect(page.get_by_test_id("mapping-count")).to_contain_text("Rows 101–120 of 120.")
    expect(page.locator("#mappings-0 .field-object .select2-selection__rendered")).to_have_text("Unit 101")

    page.get_by_test_id("mapping-search").fill("unit 11")
    page.get_by_test_id("mapping-search").press("Enter")
    expect(page.locator("#tab-mapping")).to_be_visible()
    expect(page.get_by_test_id("mapping-count")).to_contain_text("Rows 1–11 of 11 matching “unit 11” (120 in all).")
    screenshot("mapping-3-search")
    # the other tabs still work from a searched page: a save keeps the Details and this page of rows
    page.click("#tab-button-details")
    page.get_by_label("Time before (minutes):", exact=True).fill("20")
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    expect(page.get_by_test_id("mapping-count")).to_contain_text("matching “unit 11”")
    integration.refresh_from_db()
    assert integration.minutes_before == 20
    assert integration.mappings.count() == 120
