"""The demo, end to end, as people use it: `manage.py demo` runs as its own process (SQLite, tasks in-process,
the sandbox beside it); the operator walks the manual in the browser, then front desk moves a booking to an
allowed status and the sandbox's door opens, with the open time and the check-in status on the booking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Browser, Page, expect

from locks.sandbox.demo import LOCK_STUDIO_2_ID
from tests.browser.conftest import choose
from tests.demo_process import RunningDemo, running_demo

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running_demo(tmp_path_factory.mktemp("demo-walk")) as running:
        yield running


def log_in(browser: Browser, demo: RunningDemo, username: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{demo.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", demo.accounts[username])
    page.click("input[type=submit]")
    page.wait_for_url(f"{demo.url}/admin/")
    return page


def press(page: Page, label: str) -> None:
    page.get_by_role("button", name=label, exact=True).click()
    page.wait_for_load_state("load")


def tab(page: Page, name: str) -> None:
    page.click(f"#tab-button-{name}")
    expect(page.locator(f"#tab-{name}")).to_be_visible()


def test_the_operator_configures_the_demo_and_a_status_change_opens_the_door(
    browser: Browser, demo: RunningDemo
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    messages = "ul.messagelist"

    # The operator opens the pre-filled integration and walks the manual's steps.
    operator = log_in(browser, demo, "operator")
    operator.goto(f"{demo.url}/admin/integrations/integration/")
    operator.get_by_role("link", name="Salto KS acceptance (sandbox)").click()
    press(operator, "Resolve site ID")
    expect(operator.locator(messages)).to_contain_text("Site ID resolved")
    press(operator, "Test / request access")
    expect(operator.locator(messages)).to_contain_text("Access OK")
    press(operator, "GET PIN")
    expect(operator.locator(messages)).to_contain_text("current pin")
    operator.get_by_label("new pin:", exact=True).fill("2580")
    press(operator, "Set PIN")
    expect(operator.locator(messages)).to_contain_text("IQ is activated")

    tab(operator, "mapping")
    press(operator, "GET locks")
    expect(operator.locator(messages)).to_contain_text("GET locks: 8 locks in the site.")
    choose(operator, "mappings-0-object", "Building A", "Building A")
    choose(operator, "mappings-0-lock_id", "Front", "Front door — online")
    choose(operator, "mappings-1-object", "Studio 2", "Building A › Studio 2")
    choose(operator, "mappings-1-lock_id", "Studio 2", "Studio 2 — online")
    choose(operator, "mappings-2-object", "*", "* Wildcard (default for objects without their own mapping)")
    choose(operator, "mappings-2-lock_id", "Meeting", "Meeting room A — online")

    tab(operator, "details")
    operator.get_by_label("20 Definitive", exact=True).check()
    operator.get_by_label("30 Paid", exact=True).check()
    operator.get_by_label("Time before (minutes):", exact=True).fill("30")
    operator.get_by_label("Save last open action in field:", exact=True).select_option(label="Last opened (custom01)")
    operator.get_by_label("Status after opening (check-in):", exact=True).select_option(label="50 Checked in")
    operator.get_by_label("Active", exact=True).check()
    operator.click("input[name=_continue]")
    expect(operator.locator(messages)).to_contain_text("is active")
    operator.screenshot(path=str(SCREENSHOTS / "demo-1-operator-activated.png"), full_page=True)

    # Front desk moves Ada Lovelace's booking (Studio 2, starting in 10 minutes) to Definitive.
    desk = log_in(browser, demo, "frontdesk")
    desk.goto(f"{demo.url}/admin/bookings/booking/?q=Ada")
    desk.locator("#result_list tbody tr", has_text="Ada Lovelace").locator("th a").click()
    desk.select_option("#id_status", label="20 Definitive")
    desk.click("input[name=_continue]")
    expect(desk.locator(messages)).to_contain_text("was changed successfully")
    expect(desk.locator(messages)).to_contain_text("Status change: Booking #1 (Ada Lovelace): lock 'Studio 2' opened")
    desk.screenshot(path=str(SCREENSHOTS / "demo-2a-status-change-message.png"))

    # The booking shows the open, its time and the check-in status ...
    desk.reload()
    expect(desk.locator("#id_status option:checked")).to_have_text("50 Checked in")
    open_requests = desk.locator("#open_requests-group")
    expect(open_requests).to_contain_text("Opened")
    expect(open_requests).to_contain_text("Studio 2")
    expect(desk.locator(".field-door, .form-row.field-door").first).to_contain_text("Studio 2")
    desk.screenshot(path=str(SCREENSHOTS / "demo-2-booking-opened.png"), full_page=True)

    # ... and the sandbox saw exactly one remote open of the Studio 2 lock.
    opens = httpx2.get(f"{demo.sandbox_url}/_sandbox/opens", timeout=5).json()
    assert [o["lock_id"] for o in opens] == [LOCK_STUDIO_2_ID]
    sandbox_page = desk.context.new_page()
    sandbox_page.goto(f"{demo.sandbox_url}/_sandbox/")
    expect(sandbox_page.locator("body")).to_contain_text("Studio 2")
    sandbox_page.screenshot(path=str(SCREENSHOTS / "demo-3-sandbox-opens.png"), full_page=True)
