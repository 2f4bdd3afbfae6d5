"""Objects and sub-objects: labels, nesting rules and the order they are listed in."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from bookings.models import BookableObject
from bookings.selectors import objects_as_tree

pytestmark = pytest.mark.django_db


@pytest.fixture
def venue() -> dict[str, BookableObject]:
    building_b = BookableObject.objects.create(name="Building B")
    building_a = BookableObject.objects.create(name="Building A")
    return {
        "a": building_a,
        "b": building_b,
        "a2": BookableObject.objects.create(name="Studio 2", parent=building_a),
        "a1": BookableObject.objects.create(name="Studio 1", parent=building_a),
        "b1": BookableObject.objects.create(name="Hall", parent=building_b),
        "solo": BookableObject.objects.create(name="Attic"),
    }


def test_a_sub_object_label_shows_its_parent(venue: dict[str, BookableObject]) -> None:
    assert venue["a2"].label == "Building A › Studio 2"
    assert venue["a"].label == "Building A"


def test_sub_objects_list_under_their_parent(venue: dict[str, BookableObject]) -> None:
    assert [o.label for o in objects_as_tree()] == [
        "Attic",
        "Building A",
        "Building A › Studio 1",
        "Building A › Studio 2",
        "Building B",
        "Building B › Hall",
    ]


def test_the_admin_list_shows_sub_objects_under_their_parent(venue: dict[str, BookableObject]) -> None:
    admin = User.objects.create_superuser("admin", password="pw")
    client = Client()
    client.force_login(admin)
    html = client.get("/admin/bookings/bookableobject/").content.decode()
    listed = [label.replace("└", "").strip() for label in re.findall(r'field-tree_label"><a [^>]*>([^<]*)</a>', html)]
    assert listed == ["Attic", "Building A", "Studio 1", "Studio 2", "Building B", "Hall"]


def test_a_sub_object_cannot_have_sub_objects(venue: dict[str, BookableObject]) -> None:
    nested = BookableObject(name="Corner", parent=venue["a1"])
    with pytest.raises(ValidationError, match="parent must be a main object"):
        nested.full_clean()


def test_a_main_object_with_sub_objects_cannot_become_a_sub_object(venue: dict[str, BookableObject]) -> None:
    venue["a"].parent = venue["solo"]
    with pytest.raises(ValidationError, match="has sub-objects of its own"):
        venue["a"].full_clean()


def test_a_date_time_field_value_reads_in_local_time(settings: object) -> None:
    from datetime import UTC, datetime

    from bookings.models import Booking, BookingField, BookingFieldValue, BookingStatus

    room = BookableObject.objects.create(name="Room")
    booking = Booking.objects.create(
        object=room,
        start=datetime(2026, 11, 25, 9, tzinfo=UTC),
        end=datetime(2026, 11, 25, 10, tzinfo=UTC),
        status=BookingStatus.objects.first(),
        customer_name="Ada",
    )
    field = BookingField.objects.create(name="Last opened", technical_name="custom01", field_type="datetime")
    value = BookingFieldValue(booking=booking, field=field)
    value.set_value(datetime(2026, 11, 25, 19, 15, tzinfo=UTC))
    # Europe/Amsterdam is UTC+1 in November
    assert str(value) == "custom01 = Nov. 25, 2026, 8:15 p.m."
