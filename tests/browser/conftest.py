"""Playwright (sync API) driving Debian's Chromium against the live console and the Salto KS sandbox."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bookings.models import BookableObject, BookingField, BookingStatus

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
OPERATOR_PASSWORD = "operator-pass-123"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make system-deps)")
    # Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run under one.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot(page: Page) -> Any:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take


@pytest.fixture
def venue(transactional_db: None) -> dict[str, Any]:
    """Objects (one with a sub-object), statuses and booking fields as a venue would have them."""
    building = BookableObject.objects.create(name="Building A")
    studio = BookableObject.objects.create(name="Studio 2", parent=building)
    hall = BookableObject.objects.create(name="Hall")
    paid = BookingStatus.objects.get_or_create(code=30, defaults={"name": "Paid"})[0]
    checked_in = BookingStatus.objects.get_or_create(code=50, defaults={"name": "Checked in"})[0]
    opened = BookingField.objects.get_or_create(
        technical_name="custom01", defaults={"name": "Last opened", "field_type": BookingField.FieldType.DATETIME}
    )[0]
    BookingField.objects.get_or_create(
        technical_name="custom02", defaults={"name": "Remarks", "field_type": BookingField.FieldType.TEXT}
    )
    return {
        "building": building,
        "studio": studio,
        "hall": hall,
        "paid": paid,
        "checked_in": checked_in,
        "opened": opened,
    }


def operator_group() -> Group:
    """The role from migration 0002 (a transactional test's flush empties the table, so rebuild it if needed)."""
    roles = importlib.import_module("integrations.migrations.0002_roles")
    group, _ = Group.objects.get_or_create(name=roles.OPERATOR)
    for app_label, models in roles.OPERATOR_PERMISSIONS.items():
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=app_label,
                codename__in=[f"{a}_{m}" for m in models for a in ("add", "change", "delete", "view")],
            )
        )
    return group


@pytest.fixture
def operator_page(page: Page, live_server: Any, transactional_db: None) -> Page:
    """A new operator (in the "Integration operator" group), logged in through the admin's login page."""
    user = User.objects.create_user("operator", "op@example.com", OPERATOR_PASSWORD, is_staff=True)
    user.groups.add(operator_group())
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", OPERATOR_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def choose(page: Page, select_name: str, typed: str, option: str) -> None:
    """Pick OPTION in the search-as-you-type widget (select2) of SELECT_NAME after typing TYPED into its search."""
    page.locator(f"select[name='{select_name}'] + .select2").click()
    page.locator(".select2-container--open .select2-search__field").fill(typed)
    results = page.locator(".select2-container--open .select2-results__option")
    results.filter(has_text=re.compile(f"^{re.escape(option)}$")).click()
    expect(page.locator(f"select[name='{select_name}'] + .select2 .select2-selection__rendered")).to_have_text(option)
