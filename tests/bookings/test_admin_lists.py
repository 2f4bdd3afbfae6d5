"""The booking list's object filter and the booking form's object search, at any number of objects."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from bookings.models import BookableObject, Booking, BookingStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("desk", password="pw"))
    return client


@pytest.fixture
def venue() -> dict[str, BookableObject]:
    a = BookableObject.objects.create(name="Building A")
    b = BookableObject.objects.create(name="Building B")
    return {
        "a": a,
        "b": b,
        "a2": BookableObject.objects.create(name="Studio 2", parent=a),
        "a1": BookableObject.objects.create(name="Studio 1", parent=a),
        "b1": BookableObject.objects.create(name="Hall", parent=b),
        "old": BookableObject.objects.create(name="Old studio", parent=a, is_active=False),
    }


def book(obj: BookableObject, name: str) -> Booking:
    start = timezone.now()
    status = BookingStatus.objects.get(code=10)
    return Booking.objects.create(
        object=obj, start=start, end=start + timedelta(hours=1), status=status, customer_name=name
    )


def filter_choices(html: str) -> list[str]:
    block = html[html.index("By object") :]
    block = block[: block.index("</ul>")]
    return [re.sub(r"\s+", " ", text).strip() for text in re.findall(r"<a [^>]*>([^<]*)</a>", block)]


def listed(html: str) -> list[str]:
    return re.findall(r'<td class="field-customer_name">([^<]*)</td>', html)


def test_the_object_filter_lists_main_objects_and_the_chosen_ones_sub_objects(
    desk: Client, venue: dict[str, BookableObject]
) -> None:
    html = desk.get("/admin/bookings/booking/").content.decode()
    assert filter_choices(html) == ["All", "Building A", "Building B"]
    html = desk.get("/admin/bookings/booking/", {"object": venue["a2"].pk}).content.decode()
    assert filter_choices(html) == ["All", "Building A", "↳ Old studio", "↳ Studio 1", "↳ Studio 2", "Building B"]


def test_a_main_object_filters_its_sub_objects_bookings_too(desk: Client, venue: dict[str, BookableObject]) -> None:
    book(venue["a"], "Main guest")
    book(venue["a1"], "Studio guest")
    book(venue["b1"], "Hall guest")
    html = desk.get("/admin/bookings/booking/", {"object": venue["a"].pk}).content.decode()
    assert sorted(listed(html)) == ["Main guest", "Studio guest"]
    html = desk.get("/admin/bookings/booking/", {"object": venue["a1"].pk}).content.decode()
    assert listed(html) == ["Studio guest"]


@pytest.mark.parametrize("value", ["²", "x", "1; drop", "9" * 40])
def test_a_filter_value_that_is_not_an_object_is_no_error(
    desk: Client, venue: dict[str, BookableObject], value: str
) -> None:
    response = desk.get("/admin/bookings/booking/", {"object": value})
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert "e=1" in response["Location"]


def test_the_list_costs_the_same_queries_for_more_objects(desk: Client, venue: dict[str, BookableObject]) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for obj in venue.values():
        book(obj, "Guest")
    with CaptureQueriesContext(connection) as few:
        desk.get("/admin/bookings/booking/")
    for number in range(30):
        main = BookableObject.objects.create(name=f"Block {number}")
        book(BookableObject.objects.create(name="Unit", parent=main), "Guest")
    with CaptureQueriesContext(connection) as many:
        desk.get("/admin/bookings/booking/")
    assert len(many) == len(few)


def test_the_booking_form_searches_active_objects_by_their_label(
    desk: Client, venue: dict[str, BookableObject]
) -> None:
    booking = book(venue["a2"], "Ada")
    html = desk.get(f"/admin/bookings/booking/{booking.pk}/change/").content.decode()
    select = html[html.index('name="object"') :]
    select = select[: select.index("</select>")]
    assert "admin-autocomplete" in select
    assert re.findall(r"<option[^>]*>([^<]*)</option>", select) == ["Building A › Studio 2"]
    params = {"app_label": "bookings", "model_name": "booking", "field_name": "object", "term": "studio"}
    results = desk.get("/admin/autocomplete/", params).json()["results"]
    assert [r["text"] for r in results] == ["Building A › Studio 1", "Building A › Studio 2"]


def test_staff_can_search_objects_for_a_booking(venue: dict[str, BookableObject]) -> None:
    from django.contrib.auth.models import Group

    staff = User.objects.create_user("frontdesk", password="pw", is_staff=True)
    staff.groups.add(Group.objects.get(name="Booking staff"))
    client = Client()
    client.force_login(staff)
    params = {"app_label": "bookings", "model_name": "booking", "field_name": "object", "term": "hall"}
    assert [r["text"] for r in client.get("/admin/autocomplete/", params).json()["results"]] == ["Building B › Hall"]
