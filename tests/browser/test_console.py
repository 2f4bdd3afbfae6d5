"""A new operator walks the manual in the browser, against the Salto KS sandbox on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from integrations.models import Integration
from locks.sandbox.demo import (
    DEMO_INITIAL_PIN,
    DEMO_IQ_ID,
    DEMO_PASSWORD,
    DEMO_SITE_ID,
    DEMO_SITE_UID,
    DEMO_USERNAME,
    LOCK_FRONT_DOOR_ID,
    LOCK_STUDIO_2_ID,
)
from tests.browser.conftest import choose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def messages(page: Page) -> Any:
    return page.locator("ul.messagelist")


def field(page: Page, label: str) -> Any:
    """The input the manual's LABEL names (the admin writes labels as "Label:")."""
    return page.get_by_label(f"{label}:", exact=True)


def tab(page: Page, name: str) -> None:
    page.click(f"#tab-button-{name}")
    expect(page.locator(f"#tab-{name}")).to_be_visible()


def click_button(page: Page, label: str) -> None:
    page.get_by_role("button", name=label, exact=True).click()
    page.wait_for_load_state("load")


def new_integration(page: Page, live_server: Any, *, name: str = "Salto KS acceptance") -> Integration:
    """Authentication tab filled as the manual says, then saved."""
    page.goto(f"{live_server.url}/admin/integrations/integration/add/")
    field(page, "Name").fill(name)
    field(page, "Environment").select_option("acceptance")
    field(page, "Site UID").fill(DEMO_SITE_UID)
    field(page, "Username").fill(DEMO_USERNAME)
    field(page, "Password").fill(DEMO_PASSWORD)
    page.click("input[name=_continue]")
    expect(messages(page)).to_contain_text("was added successfully")
    return Integration.objects.get(name=name)


def activate_iq(page: Page, *, current_pin: str | None = None, new_pin: str = "2468") -> None:
    field(page, "IQ id").fill(DEMO_IQ_ID)
    click_button(page, "GET PIN")
    expect(messages(page)).to_contain_text("GET PIN: the IQ's current PIN was filled into current pin")
    if current_pin is not None:
        field(page, "current pin").fill(current_pin)
    field(page, "new pin").fill(new_pin)
    click_button(page, "Set PIN")


def test_a_new_operator_walks_the_manual(
    operator_page: Page, live_server: Any, salto_sandbox: Any, venue: dict[str, Any], screenshot: Any
) -> None:
    page = operator_page
    # Authentication tab: Environment, Site UID, Username, Password
    integration = new_integration(page, live_server)
    expect(page.locator("#tab-authentication")).to_be_visible()
    expect(page.get_by_test_id("site-id")).to_have_text("not resolved yet")

    # Resolve site ID
    click_button(page, "Resolve site ID")
    expect(messages(page)).to_contain_text(f"Site ID resolved: Site UID {DEMO_SITE_UID}")
    expect(page.get_by_test_id("site-id")).to_have_text(DEMO_SITE_ID)

    # Test / request access
    click_button(page, "Test / request access")
    expect(messages(page)).to_contain_text("Access OK: Salto KS issued a token")
    expect(page.get_by_test_id("access-result")).to_contain_text("valid until")

    # IQ OTP setup: IQ id, GET PIN, new pin, Set PIN until "IQ is activated"
    activate_iq(page)
    expect(messages(page)).to_contain_text("IQ is activated (since")
    expect(page.get_by_test_id("activation-state").first).to_contain_text("IQ is activated")
    # the stored PIN is never rendered, not even in the write-only input
    expect(field(page, "current pin")).to_have_value("")
    screenshot("1-authentication")

    # Mapping: GET locks, then a main object, a sub-object and the wildcard
    tab(page, "mapping")
    click_button(page, "GET locks")
    expect(page.locator("#tab-mapping")).to_be_visible()  # came back to the Mapping tab
    expect(messages(page)).to_contain_text("GET locks: 8 locks in the site.")
    expect(messages(page)).to_contain_text("Offline: Storage.")
    expect(messages(page)).to_contain_text("On another IQ (cannot be mapped): Garage.")
    # search as you type: objects as "Parent › Child", locks with their online state
    choose(page, "mappings-0-object", "build", "Building A")
    choose(page, "mappings-0-lock_id", "front", "Front door — online")
    choose(page, "mappings-1-object", "studio", "Building A › Studio 2")
    choose(page, "mappings-1-lock_id", "studio 2", "Studio 2 — online")
    choose(page, "mappings-2-lock_id", "meeting room a", "Meeting room A — online")  # object left on the wildcard
    expect(page.locator("select[name=mappings-0-lock_id]")).to_have_value(LOCK_FRONT_DOOR_ID)
    expect(page.locator("select[name=mappings-1-object]")).to_have_value(str(venue["studio"].pk))
    screenshot("3-mapping")

    # Details: switching tabs keeps what was typed on the Mapping tab (no reload)
    tab(page, "details")
    page.get_by_label(str(venue["paid"]), exact=True).check()
    field(page, "Time before (minutes)").fill("15")
    field(page, "Save last open action in field").select_option(label=str(venue["opened"]))
    field(page, "Status after opening (check-in)").select_option(label=str(venue["checked_in"]))
    screenshot("2-details")
    tab(page, "mapping")
    expect(page.locator("select[name=mappings-1-lock_id]")).to_have_value(LOCK_STUDIO_2_ID)

    # Activate
    page.get_by_label("Active", exact=True).check()
    page.click("input[name=_continue]")
    expect(messages(page)).to_contain_text("is active: doors may now be opened for bookings.")
    expect(page.get_by_test_id("active-state")).to_have_text("Active")
    tab(page, "activity")
    screenshot("4-activity")

    integration.refresh_from_db()
    assert integration.is_active
    assert integration.is_activated
    assert integration.site_id == DEMO_SITE_ID
    assert integration.minutes_before == 15
    assert integration.last_open_field == venue["opened"]
    assert integration.checkin_status == venue["checked_in"]
    assert list(integration.open_statuses.all()) == [venue["paid"]]
    assert sorted((m.object_id or 0, m.lock_name) for m in integration.mappings.all()) == sorted(
        [(venue["building"].pk, "Front door"), (venue["studio"].pk, "Studio 2"), (0, "Meeting room A")]
    )
    html = page.content()
    for secret in (DEMO_PASSWORD, "2468", integration.iq_secret):
        assert secret not in html


def test_activation_is_refused_with_the_missing_steps(
    operator_page: Page, live_server: Any, salto_sandbox: Any, venue: dict[str, Any], screenshot: Any
) -> None:
    page = operator_page
    new_integration(page, live_server)
    click_button(page, "Resolve site ID")
    page.get_by_label("Active", exact=True).check()
    page.click("input[name=_continue]")
    errors = page.locator(".field-activate .errorlist")
    expect(errors).to_contain_text("The integration cannot be activated yet. Missing steps:")
    expect(errors).to_contain_text("Access tested OK: click Test / request access")
    expect(errors).to_contain_text("IQ activated: use GET PIN and Set PIN")
    expect(errors).to_contain_text("At least one mapping")
    expect(errors).not_to_contain_text("Site resolved")
    screenshot("5-activation-refused")


def test_a_bad_pin_shows_saltos_reason(
    operator_page: Page, live_server: Any, salto_sandbox: Any, venue: dict[str, Any], screenshot: Any
) -> None:
    page = operator_page
    integration = new_integration(page, live_server)
    click_button(page, "Resolve site ID")
    wrong = "0000" if DEMO_INITIAL_PIN != "0000" else "1111"
    activate_iq(page, current_pin=wrong)
    expect(messages(page)).to_contain_text("Set PIN failed — OTP rejected: the current pin is wrong")
    expect(page.get_by_test_id("activation-state").first).to_have_text("Not activated")
    screenshot("6-bad-pin")
    integration.refresh_from_db()
    assert not integration.is_activated


def test_the_tab_with_a_validation_error_is_marked_and_opened(
    operator_page: Page, live_server: Any, salto_sandbox: Any, venue: dict[str, Any]
) -> None:
    page = operator_page
    new_integration(page, live_server)
    tab(page, "details")
    field(page, "Time before (minutes)").fill("2000")
    tab(page, "authentication")
    page.click("input[name=_continue]")
    expect(page.locator("#tab-details")).to_be_visible()
    expect(page.locator("#tab-button-details")).to_have_class("has-error")
    expect(page.locator("#tab-details")).to_contain_text("must be a whole number from 0 to 1440")
    expect(page.locator("#tab-authentication")).to_be_hidden()
