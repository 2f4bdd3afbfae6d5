"""The console's pages cost the same number of queries at two sizes of a site (not timed: bench/scale.py times them).

The data is bench/scale_data.py's, at 1x (20 objects, 5 locks, 5 mappings, 1,000 bookings) and at 5x; a page
that read a row per object, lock, mapping or booking would count more queries at 5x.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench.scale_data import ScaleWorld, build_scale_data, clear_scale_data

pytestmark = pytest.mark.django_db

SIZES = (1, 5)

PAGES: dict[str, Callable[[ScaleWorld], str]] = {
    "integration change page (all tabs)": lambda w: f"/admin/integrations/integration/{w.integration_id}/change/",
    "integration change page, a search of the mappings": lambda w: (
        f"/admin/integrations/integration/{w.integration_id}/change/?mapping_q=Building"
    ),
    "mapping row: object search": lambda w: f"/admin/integrations/integration/{w.integration_id}/mapping/objects/",
    "mapping row: lock search": lambda w: (
        f"/admin/integrations/integration/{w.integration_id}/mapping/locks/?term=Building"
    ),
    "bulk: same-name preview": lambda w: f"/admin/integrations/integration/{w.integration_id}/mapping/same-name/",
    "booking changelist": lambda w: "/admin/bookings/booking/",
    "booking changelist, by status": lambda w: f"/admin/bookings/booking/?status__id__exact={w.paid_status_id}",
    "booking changelist, by object": lambda w: f"/admin/bookings/booking/?object={w.main_object_ids[0]}",
    "booking change page": lambda w: f"/admin/bookings/booking/{w.sample_booking_id}/change/",
    "open-request changelist": lambda w: "/admin/integrations/openrequest/",
    "open-request changelist, by state": lambda w: "/admin/integrations/openrequest/?state__exact=opened",
}


def queries_of(client: Client, url: str) -> int:
    # The process's first look at a page fills caches of its own (content types, for one); count the next one.
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def count_pages(client: Client, scale: int) -> dict[str, int]:
    clear_scale_data()
    world = build_scale_data(scale=scale)
    return {name: queries_of(client, url(world)) for name, url in PAGES.items()}


def test_every_page_costs_the_same_queries_at_five_times_the_data(capsys: Any) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("scale", "scale@example.com", "scale-pass-123"))
    counts = {scale: count_pages(client, scale) for scale in SIZES}
    with capsys.disabled():
        print(
            "\nqueries per page:",
            *(f"  {name}: {counts[SIZES[0]][name]} / {counts[SIZES[1]][name]}" for name in PAGES),
            sep="\n",
        )
    assert counts[SIZES[1]] == counts[SIZES[0]]
