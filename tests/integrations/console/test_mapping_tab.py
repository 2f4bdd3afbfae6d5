"""The Mapping tab at a site's size: pages and searches of its rows, the widgets' search views, saving one page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bookings.models import BookableObject
from integrations.forms import posted_mappings
from integrations.models import CachedLock, Integration, LockMapping
from integrations.selectors import MAPPING_PAGE_SIZE
from tests.fake_salto import OTHER_IQ_ID
from tests.integrations.console.conftest import make_integration, make_ready
from tests.integrations.console.test_admin import change_url, form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def units(count: int) -> list[BookableObject]:
    return [BookableObject.objects.create(name=f"Unit {number:03d}") for number in range(1, count + 1)]


def map_all(integration: Integration, objects: list[BookableObject], lock_id: str = "lock-1") -> list[LockMapping]:
    return [
        LockMapping.objects.create(integration=integration, object=obj, lock_id=lock_id, lock_name="Front door")
        for obj in objects
    ]


def shown_objects(html: str) -> list[str]:
    """The object each mapping row shows, in order (the blank row for a new mapping shows the wildcard)."""
    selects = re.findall(r'<select name="mappings-[\w]+-object".*?</select>', html, flags=re.S)
    return [re.sub(r"<[^>]+>", "", re.findall(r"<option[^>]*>.*?</option>", s, flags=re.S)[0]) for s in selects]


def page_data(integration: Integration, rows: list[LockMapping], **overrides: Any) -> dict[str, Any]:
    """What the browser posts from a page of the Mapping tab showing ROWS (and one blank row)."""
    data = {k: v for k, v in form_data(integration).items() if not k.startswith("mappings-")}
    data.update({"mappings-INITIAL_FORMS": len(rows), "mappings-MIN_NUM_FORMS": 0, "mappings-MAX_NUM_FORMS": 1000})
    for index, row in enumerate(rows):
        data[f"mappings-{index}-id"] = row.pk
        data[f"mappings-{index}-integration"] = integration.pk
        data[f"mappings-{index}-object"] = row.object_id or ""
        data[f"mappings-{index}-lock_id"] = row.lock_id
    data[f"mappings-{len(rows)}-integration"] = integration.pk
    data[f"mappings-{len(rows)}-object"] = ""
    data[f"mappings-{len(rows)}-lock_id"] = ""
    data["mappings-TOTAL_FORMS"] = len(rows) + 1
    data["_continue"] = "1"
    data.update(overrides)
    return data


# --- pages and searches -------------------------------------------------------------------------------------


def test_the_tab_shows_one_page_of_rows_in_tree_order(admin_client: Client, integration: Integration) -> None:
    make_ready(integration)  # with a wildcard row
    map_all(integration, list(reversed(units(MAPPING_PAGE_SIZE + 20))))
    html = admin_client.get(change_url(integration)).content.decode()
    shown = shown_objects(html)
    assert len(shown) == MAPPING_PAGE_SIZE + 2  # the page, the blank row, the template row
    assert shown[:3] == ["* Wildcard (default for objects without their own mapping)", "Unit 001", "Unit 002"]
    assert 'name="mappings-INITIAL_FORMS" value="50"' in html
    assert "Rows 1–50 of 71." in html

    html = admin_client.get(change_url(integration) + "?mapping_page=2").content.decode()
    assert shown_objects(html)[:2] == ["Unit 050", "Unit 051"]
    assert "Rows 51–71 of 71." in html
    assert 'href="?mapping_page=1#tab-mapping"' in html


@pytest.mark.parametrize("page", ["²", "0", "-1", "x", "9" * 5000, "1.5"])
def test_a_page_number_that_is_not_one_shows_a_page_never_an_error(
    admin_client: Client, integration: Integration, page: str
) -> None:
    make_ready(integration, with_mapping=False)
    map_all(integration, units(60))
    response = admin_client.get(change_url(integration), {"mapping_page": page})
    assert response.status_code == 200
    assert "Rows 1–50 of 60." in response.content.decode() or "Rows 51–60 of 60." in response.content.decode()


def test_a_page_past_the_end_shows_the_last(admin_client: Client, integration: Integration) -> None:
    make_ready(integration, with_mapping=False)
    map_all(integration, units(60))
    assert "Rows 51–60 of 60." in admin_client.get(change_url(integration) + "?mapping_page=99").content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Unit 01", ["Unit 001", "Unit 010", "Unit 011", "Unit 012"]),
        ("building a › stu", ["Building A › Studio 2"]),
        ("storage", ["Unit 011"]),  # the cached lock's name
        ("*", ["* Wildcard (default for objects without their own mapping)"]),
        ("\x00unit 012", ["Unit 012"]),
        ("no such thing", []),
    ],
)
def test_the_search_finds_rows_by_object_or_lock_name(
    admin_client: Client, integration: Integration, objects: dict, query: str, expected: list[str]
) -> None:
    make_ready(integration)
    CachedLock.objects.create(
        integration=integration, lock_id="lock-2", name="Storage", iq_id=integration.iq_id, refreshed_at=timezone.now()
    )
    mapped = map_all(integration, [*units(12), objects["studio"]])
    LockMapping.objects.filter(pk=mapped[10].pk).update(lock_id="lock-2", lock_name="Storage")
    html = admin_client.get(change_url(integration), {"mapping_q": query}).content.decode()
    assert shown_objects(html)[:-2] == expected


def test_saving_a_page_keeps_the_rows_of_the_other_pages(admin_client: Client, integration: Integration) -> None:
    # given 120 rows, three pages
    make_ready(integration, with_mapping=False)
    CachedLock.objects.create(
        integration=integration, lock_id="lock-2", name="Storage", iq_id=integration.iq_id, refreshed_at=timezone.now()
    )
    rows = map_all(integration, units(120))
    page_two = sorted(rows, key=lambda r: r.object.name)[50:100]
    # when page 2 is saved with one row changed and one deleted
    data = page_data(integration, page_two, **{"mappings-0-lock_id": "lock-2", "mappings-1-DELETE": "on"})
    response = admin_client.post(change_url(integration) + "?mapping_page=2", data)
    # then only those two rows changed, and the operator is back on page 2
    assert response.status_code == 302, response.context and response.context["errors"]
    assert response["Location"] == change_url(integration) + "?mapping_page=2"
    assert integration.mappings.count() == 119
    assert not LockMapping.objects.filter(pk=page_two[1].pk).exists()
    assert LockMapping.objects.get(pk=page_two[0].pk).lock_name == "Storage"
    assert integration.mappings.filter(lock_id="lock-1").count() == 118


def test_a_new_row_cannot_repeat_an_object_mapped_on_another_page(
    admin_client: Client, integration: Integration
) -> None:
    make_ready(integration)  # the wildcard is on page 1
    rows = map_all(integration, units(60))
    page_two = rows[49:]
    data = page_data(
        integration,
        page_two,
        **{"mappings-11-object": str(rows[0].object_id), "mappings-11-lock_id": "lock-1"},
    )
    response = admin_client.post(change_url(integration) + "?mapping_page=2", data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Unit 001 is already mapped to Front door in another row of this list (search for it)" in html
    data = page_data(integration, page_two, **{"mappings-11-object": "*", "mappings-11-lock_id": "lock-1"})
    html = admin_client.post(change_url(integration) + "?mapping_page=2", data).content.decode()
    assert "Only one wildcard (default) row is allowed, and this integration already has one" in html
    assert integration.mappings.count() == 61


def test_the_wildcard_as_the_search_offers_it_is_saved_as_the_wildcard(
    admin_client: Client, integration: Integration
) -> None:
    make_ready(integration, with_mapping=False)
    data = page_data(integration, [], **{"mappings-0-object": "*", "mappings-0-lock_id": "lock-1"})
    assert admin_client.post(change_url(integration), data).status_code == 302
    assert list(integration.mappings.values_list("object_id", "lock_name")) == [(None, "Front door")]


@pytest.mark.parametrize("posted", ["²", "abc", "1e3", "٣"])
def test_an_object_that_is_not_an_id_is_an_error_on_the_row(
    admin_client: Client, integration: Integration, posted: str
) -> None:
    make_ready(integration, with_mapping=False)
    data = page_data(integration, [], activate="on", **{"mappings-0-object": posted, "mappings-0-lock_id": "lock-1"})
    response = admin_client.post(change_url(integration), data)
    assert response.status_code == 200
    assert "Choose an object from the list." in response.content.decode()
    assert not integration.mappings.exists()


def test_an_inactive_object_cannot_be_newly_mapped(admin_client: Client, integration: Integration) -> None:
    make_ready(integration, with_mapping=False)
    gone = BookableObject.objects.create(name="Old hall", is_active=False)
    data = page_data(integration, [], **{"mappings-0-object": str(gone.pk), "mappings-0-lock_id": "lock-1"})
    assert "Choose an object from the list." in admin_client.post(change_url(integration), data).content.decode()


def test_activating_from_one_page_judges_the_rows_of_every_page(admin_client: Client, integration: Integration) -> None:
    # given a ready integration whose page 2 holds a row on another IQ's lock
    make_ready(integration, with_mapping=False)
    CachedLock.objects.create(
        integration=integration, lock_id="lock-9", name="Garage", iq_id=OTHER_IQ_ID, refreshed_at=timezone.now()
    )
    rows = map_all(integration, units(60))
    LockMapping.objects.filter(pk=rows[-1].pk).update(lock_id="lock-9")
    # when activating from page 1
    response = admin_client.post(change_url(integration), page_data(integration, rows[:50], activate="on"))
    # then the row on page 2 is the missing step
    assert response.status_code == 200
    assert "Mapping to lock Garage: on another IQ" in response.content.decode()
    # and once page 2's row is deleted there, activating from page 1 works
    LockMapping.objects.filter(pk=rows[-1].pk).delete()
    response = admin_client.post(change_url(integration), page_data(integration, rows[:50], activate="on"))
    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.is_active


def test_posted_mappings_merge_the_posted_page_into_the_stored_rows() -> None:
    stored = {1: (10, "lock-a"), 2: (20, "lock-b"), 3: (None, "lock-c")}
    data = {
        "mappings-TOTAL_FORMS": "4",
        "mappings-0-id": "1",
        "mappings-0-object": "10",
        "mappings-0-lock_id": "lock-z",
        "mappings-1-id": "2",
        "mappings-1-object": "20",
        "mappings-1-lock_id": "lock-b",
        "mappings-1-DELETE": "on",
        "mappings-2-id": "",
        "mappings-2-object": "30",
        "mappings-2-lock_id": "lock-d",
        "mappings-3-id": "²",
        "mappings-3-object": "²",
        "mappings-3-lock_id": "lock-e",
    }
    assert posted_mappings(data, stored=stored) == [(10, "lock-z"), (None, "lock-c"), (30, "lock-d"), (None, "lock-e")]


# --- the widgets' search views ------------------------------------------------------------------------------


def objects_url(integration: Integration) -> str:
    return reverse("admin:integrations_integration_mapping_objects", args=[integration.pk])


def locks_url(integration: Integration) -> str:
    return reverse("admin:integrations_integration_mapping_locks", args=[integration.pk])


def test_the_object_search_pages_its_results(admin_client: Client, integration: Integration) -> None:
    units(45)
    first = admin_client.get(objects_url(integration), {"term": "unit"}).json()
    assert [r["text"] for r in first["results"]][:2] == ["Unit 001", "Unit 002"]
    assert len(first["results"]) == 20
    assert first["pagination"] == {"more": True}
    third = admin_client.get(objects_url(integration), {"term": "unit", "page": "3"}).json()
    assert [r["text"] for r in third["results"]] == ["Unit 041", "Unit 042", "Unit 043", "Unit 044", "Unit 045"]
    assert third["pagination"] == {"more": False}
    # the wildcard is offered on the first page of a blank search or a search for it
    blank = admin_client.get(objects_url(integration)).json()["results"]
    assert blank[0]["id"] == "*"
    assert admin_client.get(objects_url(integration), {"term": "wild"}).json()["results"][0]["id"] == "*"
    assert all(r["id"] != "*" for r in first["results"])


def test_the_object_search_leaves_out_inactive_objects(admin_client: Client, integration: Integration) -> None:
    BookableObject.objects.create(name="Old hall", is_active=False)
    BookableObject.objects.create(name="New hall")
    results = admin_client.get(objects_url(integration), {"term": "hall"}).json()["results"]
    assert [r["text"] for r in results] == ["New hall"]


def test_the_lock_search_lists_the_cached_locks_with_their_state(
    admin_client: Client, integration: Integration
) -> None:
    make_ready(integration)
    now = timezone.now()
    CachedLock.objects.create(
        integration=integration, lock_id="l-2", name="Storage", iq_id=integration.iq_id, online=False, refreshed_at=now
    )
    CachedLock.objects.create(
        integration=integration,
        lock_id="l-3",
        name="Studio",
        iq_id=integration.iq_id,
        iq_online=False,
        refreshed_at=now,
    )
    other = make_ready(make_integration(name="Production"))
    CachedLock.objects.create(
        integration=other, lock_id="l-4", name="Studio elsewhere", iq_id=other.iq_id, refreshed_at=now
    )
    results = admin_client.get(locks_url(integration), {"term": "st"}).json()["results"]
    assert results == [
        {"id": "l-2", "text": "Storage — offline", "online": False, "disabled": False},
        {"id": "l-3", "text": "Studio — offline", "online": False, "disabled": False},
    ]
    assert [r["id"] for r in admin_client.get(locks_url(integration)).json()["results"]] == ["lock-1", "l-2", "l-3"]


@pytest.mark.parametrize(
    "params",
    [
        {"page": "²"},
        {"page": "0"},
        {"page": "-1"},
        {"page": "x"},
        {"page": "9" * 30},
        {"term": "a\x00b"},
        {"term": "x" * 201},
    ],
)
@pytest.mark.parametrize("view", ["objects", "locks"])
def test_the_search_views_answer_400_to_nonsense(
    admin_client: Client, integration: Integration, params: dict, view: str
) -> None:
    url = objects_url(integration) if view == "objects" else locks_url(integration)
    assert admin_client.get(url, params).status_code == 400


@pytest.mark.parametrize("term", ["é", "🔑", "\u202eevil", "%", "_", "' OR 1=1 --", "a" * 200])
@pytest.mark.parametrize("view", ["objects", "locks"])
def test_the_search_views_take_any_text(admin_client: Client, integration: Integration, term: str, view: str) -> None:
    url = objects_url(integration) if view == "objects" else locks_url(integration)
    response = admin_client.get(url, {"term": term})
    assert response.status_code == 200
    assert isinstance(response.json()["results"], list)


@pytest.mark.parametrize("view", ["objects", "locks"])
def test_the_search_views_take_bytes_that_are_not_utf_8(
    admin_client: Client, integration: Integration, view: str
) -> None:
    url = objects_url(integration) if view == "objects" else locks_url(integration)
    assert admin_client.get(url + "?term=%ED%A0%80%FF").status_code == 200


@pytest.mark.parametrize("object_id", ["999999", "abc", "%C2%B2", "1%00"])
@pytest.mark.parametrize("view", ["objects", "locks", "same-name", "clear"])
def test_the_mapping_views_answer_404_for_an_unknown_or_malformed_integration(
    admin_client: Client, object_id: str, view: str
) -> None:
    assert admin_client.get(f"/admin/integrations/integration/{object_id}/mapping/{view}/").status_code == 404


def test_the_search_views_only_answer_get(admin_client: Client, integration: Integration) -> None:
    assert admin_client.post(locks_url(integration)).status_code == 405
    assert admin_client.post(objects_url(integration)).status_code == 405


def test_only_people_who_may_change_integrations_can_search(staff: User, integration: Integration) -> None:
    viewer = User.objects.create_user("viewer", "v@example.com", "viewer-pass-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_integration"))
    for user in (staff, viewer):
        client = Client()
        client.force_login(user)
        assert client.get(locks_url(integration)).status_code == 403
        assert client.get(objects_url(integration)).status_code == 403
    anonymous = Client().get(locks_url(integration))
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]


def test_the_operator_role_can_search(operator: User, integration: Integration) -> None:
    make_ready(integration)
    client = Client()
    client.force_login(operator)
    assert client.get(locks_url(integration)).json()["results"][0]["text"] == "Front door — online"


# --- the lock list ------------------------------------------------------------------------------------------


def locks_listed(html: str) -> list[str]:
    table = html[html.index('data-testid="cached-locks"') :]
    table = table[: table.index("</table>")]
    return re.findall(r"<tr><td>([^<]*)</td>", table)


def test_a_long_lock_list_lists_only_the_locks_that_need_attention(
    admin_client: Client, integration: Integration
) -> None:
    make_ready(integration, with_mapping=False)
    now = timezone.now()
    for number in range(2, 61):
        CachedLock.objects.create(
            integration=integration,
            lock_id=f"lock-{number}",
            name=f"Unit {number:03d}",
            iq_id=OTHER_IQ_ID if number == 7 else integration.iq_id,
            online=number != 9,
            refreshed_at=now,
        )
    html = admin_client.get(change_url(integration)).content.decode()
    assert (
        "60 locks: 59 online, 1 offline, 1 on another IQ (cannot be mapped) (listed: the 2 offline or on another IQ)"
        in html
    )
    assert locks_listed(html) == ["Unit 007", "Unit 009"]
    CachedLock.objects.filter(lock_id__in=[f"lock-{n}" for n in range(20, 61)]).delete()
    html = admin_client.get(change_url(integration)).content.decode()
    assert len(locks_listed(html)) == 19


def test_someone_who_may_only_view_sees_the_rows_read_only(integration: Integration) -> None:
    make_ready(integration)
    viewer = User.objects.create_user("viewer", "v@example.com", "viewer-pass-123", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_integration", "view_lockmapping"]))
    client = Client()
    client.force_login(viewer)
    html = client.get(change_url(integration)).content.decode()
    assert 'name="mappings-0-lock_id"' not in html  # no inputs: the stock read-only rows
    assert "Front door" in html
