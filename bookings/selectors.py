"""Reads of the booking domain."""

from __future__ import annotations

import re

from django.db.models import F, OrderBy, Q, QuerySet
from django.db.models.functions import Coalesce, Lower

from bookings.models import BookableObject

# What a person may type between a parent's and a sub-object's name when searching ("Building A › Studio 2").
_LABEL_SEPARATORS = re.compile(r"[›>/]")


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


def tree_ordering(prefix: str = "") -> list[OrderBy]:
    """objects_as_tree()'s order in SQL, for the objects at PREFIX ("" or e.g. "object__").

    By the main object's name, each family together (two main objects may share a name), the main object
    before its sub-objects, then by name. NULLs are placed explicitly: PostgreSQL and SQLite sort them apart.
    """
    return [
        Lower(Coalesce(f"{prefix}parent__name", f"{prefix}name")).asc(nulls_first=True),
        Coalesce(f"{prefix}parent_id", f"{prefix}id").asc(nulls_first=True),
        F(f"{prefix}parent").asc(nulls_first=True),
        Lower(f"{prefix}name").asc(nulls_first=True),
        F(f"{prefix}id").asc(nulls_first=True),
    ]


def label_search_terms(text: str) -> list[str]:
    """The words of a search for objects by label: "Building A › Stu" → ["Building", "A", "Stu"]."""
    return _LABEL_SEPARATORS.sub(" ", text).split()


def label_search(terms: list[str], prefix: str = "") -> Q:
    """Objects (at PREFIX) whose name or parent's name contains every one of TERMS."""
    condition = Q()
    for term in terms:
        condition &= Q(**{f"{prefix}name__icontains": term}) | Q(**{f"{prefix}parent__name__icontains": term})
    return condition


def objects_search(*, text: str = "", include_inactive: bool = False) -> QuerySet[BookableObject]:
    """Objects whose label matches TEXT (every word in the name or the parent's name), in tree order."""
    queryset = BookableObject.objects.select_related("parent").filter(label_search(label_search_terms(text)))
    if not include_inactive:
        queryset = queryset.filter(is_active=True)
    return queryset.order_by(*tree_ordering())
