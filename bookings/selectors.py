"""Reads of the booking domain."""

from __future__ import annotations

from collections.abc import Iterable

from bookings.models import BookableObject, Booking, BookingField


def objects_as_tree(*, include_inactive: bool = False) -> list[BookableObject]:
    """Main objects by name, each directly followed by its sub-objects by name.

    One query; used wherever objects are listed for choosing, so a sub-object always shows
    under its parent.
    """
    queryset = BookableObject.objects.select_related("parent")
    if not include_inactive:
        queryset = queryset.filter(is_active=True)
    objects = list(queryset)
    children: dict[int, list[BookableObject]] = {}
    for obj in objects:
        if obj.parent_id is not None:
            children.setdefault(obj.parent_id, []).append(obj)
    ordered: list[BookableObject] = []
    for main in sorted((o for o in objects if o.parent_id is None), key=lambda o: o.name.lower()):
        ordered.append(main)
        ordered.extend(sorted(children.get(main.pk, []), key=lambda o: o.name.lower()))
    return ordered


def datetime_booking_fields() -> Iterable[BookingField]:
    return BookingField.objects.filter(field_type=BookingField.FieldType.DATETIME)


def booking_field_value(*, booking: Booking, field: BookingField) -> object:
    value = booking.field_values.filter(field=field).select_related("field").first()
    return None if value is None else value.value
