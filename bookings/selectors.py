"""Reads of the booking domain."""

from __future__ import annotations

from bookings.models import BookableObject


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
