"""The REST API: bookings, status changes, opening, open requests, schema; auth 401/403, 409 reasons, 400s."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import respx
import time_machine
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bookings.models import Booking, BookingStatusChange
from integrations.models import Integration, OpenRequest
from tests.fake_salto import FRONT_DOOR, salto_that_opens_the_front_door
from tests.integrations.opening.builders import World, make_booking, make_user, make_world

pytestmark = pytest.mark.django_db

STAFF = "Booking staff"


@pytest.fixture(autouse=True)
def salto(settings: Any) -> Iterator[respx.Router]:
    with salto_that_opens_the_front_door(settings) as router:
        yield router


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
def staff_api() -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user("desk", group=STAFF))
    return client


@pytest.fixture
def nobody_api() -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user("nobody"))
    return client


def open_url(booking: Booking) -> str:
    return f"/api/v1/bookings/{booking.pk}/open/"


# --- authentication and permissions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/bookings/"),
        ("get", "/api/v1/bookings/{id}/"),
        ("patch", "/api/v1/bookings/{id}/"),
        ("post", "/api/v1/bookings/{id}/open/"),
        ("get", "/api/v1/open-requests/{req}/"),
    ],
)
def test_every_endpoint_needs_a_login_then_the_right(
    world: World, nobody_api: APIClient, method: str, path: str
) -> None:
    booking = make_booking(world, status=world.paid)
    req = OpenRequest.objects.create(booking=booking, trigger="api", state=OpenRequest.State.REFUSED)
    url = path.format(id=booking.pk, req=req.pk)

    anonymous = getattr(APIClient(), method)(url, {}, format="json")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Token"

    forbidden = getattr(nobody_api, method)(url, {}, format="json")
    assert forbidden.status_code == 403
    assert "permission" in forbidden.json()["detail"]


def test_token_authentication_works(world: World) -> None:
    user = make_user("robot", group=STAFF)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/v1/bookings/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert client.get("/api/v1/bookings/").status_code == 401


def test_a_user_who_may_view_but_not_open_gets_403(world: World) -> None:
    user = make_user("viewer")
    user.user_permissions.add(*_perms("view_booking"))
    client = APIClient()
    client.force_authenticate(user)
    booking = make_booking(world, status=world.paid)
    assert client.get(f"/api/v1/bookings/{booking.pk}/").status_code == 200
    assert client.post(open_url(booking)).status_code == 403
    assert not OpenRequest.objects.exists()


def _perms(*codenames: str) -> list[Any]:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(codename__in=codenames))


# --- opening ------------------------------------------------------------------------------------


def test_open_answers_202_with_the_open_request(
    world: World, staff_api: APIClient, salto: respx.Router, django_capture_on_commit_callbacks: Any
) -> None:
    booking = make_booking(world, status=world.paid)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api.post(open_url(booking))

    assert response.status_code == 202
    body = response.json()
    assert body["booking"] == booking.pk
    assert (body["trigger"], body["actor"], body["rule"], body["lock_id"]) == ("api", "desk", "parent", FRONT_DOOR)
    assert body["state"] == "pending"  # queued on commit; the task runs after the answer

    follow = staff_api.get(f"/api/v1/open-requests/{body['id']}/").json()
    assert follow["state"] == "opened"
    assert follow["attempts"] == 1
    assert [(s["number"], s["outcome"], s["http_status"]) for s in follow["sends"]] == [(1, "accepted", 200)]
    assert follow["sent_at"]
    assert follow["finished_at"]
    assert salto.routes["open"].call_count == 1


def test_a_double_click_returns_the_same_open_request(
    world: World, staff_api: APIClient, salto: respx.Router, django_capture_on_commit_callbacks: Any
) -> None:
    booking = make_booking(world, status=world.paid)
    with django_capture_on_commit_callbacks(execute=True):
        first = staff_api.post(open_url(booking))
        second = staff_api.post(open_url(booking))
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] == second.json()["id"]
    assert salto.routes["open"].call_count == 1


@pytest.mark.parametrize(
    ("arrange", "code", "fragment"),
    [
        (lambda w, b: Booking.objects.filter(pk=b.pk).update(status=w.new), "status_not_allowed", "does not allow"),
        (
            lambda w, b: Booking.objects.filter(pk=b.pk).update(
                start=timezone.now() + timedelta(hours=2), end=timezone.now() + timedelta(hours=4)
            ),
            "too_early",
            "opens from",
        ),
        (lambda w, b: Integration.objects.update(is_active=False), "integration_inactive", "not active"),
        (
            lambda w, b: Integration.objects.update(
                activation_state="needs_reactivation", reactivation_reason="OTP rejected"
            ),
            "needs_reactivation",
            "re-activation",
        ),
        (lambda w, b: w.integration.mappings.all().delete(), "no_mapping", "no lock is mapped"),
        (lambda w, b: w.integration.cached_locks.update(online=False), "lock_offline", "offline"),
    ],
    ids=["status", "too-early", "inactive", "needs-reactivation", "no-mapping", "lock-offline"],
)
def test_a_refusal_answers_409_with_the_reason(
    world: World, staff_api: APIClient, salto: respx.Router, arrange: Any, code: str, fragment: str
) -> None:
    booking = make_booking(world, status=world.paid)
    arrange(world, booking)

    response = staff_api.post(open_url(booking))

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == code
    assert fragment in body["detail"]
    assert body["open_request"]["state"] == "refused"
    assert OpenRequest.objects.get().reason == body["detail"]  # recorded, so staff can see why
    assert salto.routes["open"].call_count == 0


def test_open_on_an_unknown_booking_is_404(world: World, staff_api: APIClient) -> None:
    assert staff_api.post("/api/v1/bookings/999999/open/").status_code == 404
    assert staff_api.get("/api/v1/open-requests/999999/").status_code == 404
    assert staff_api.get("/api/v1/bookings/abc/").status_code == 404


# --- bookings -----------------------------------------------------------------------------------


def test_bookings_list_and_detail_explain_the_door(world: World, staff_api: APIClient) -> None:
    booking = make_booking(world, status=world.paid)
    make_booking(world, status=world.new, obj=world.garage)

    listing = staff_api.get("/api/v1/bookings/").json()
    assert listing["count"] == 2
    assert staff_api.get("/api/v1/bookings/?status=30").json()["count"] == 1
    assert staff_api.get("/api/v1/bookings/?status=abc").json()["count"] == 0

    detail = staff_api.get(f"/api/v1/bookings/{booking.pk}/").json()
    assert detail["status"] == {"code": 30, "name": world.paid.name}
    assert detail["object"]["label"] == "Building A › Studio 2"
    door = detail["door"]
    assert door["would_open"] is True
    assert door["rule"] == "parent"
    assert "via parent 'Building A'" in door["explain"]
    assert door["integration_needs_reactivation"] is False


def test_the_booking_shows_when_the_integration_needs_reactivation(world: World, staff_api: APIClient) -> None:
    Integration.objects.update(activation_state="needs_reactivation", reactivation_reason="OTP rejected")
    booking = make_booking(world, status=world.paid)
    door = staff_api.get(f"/api/v1/bookings/{booking.pk}/").json()["door"]
    assert door["integration_needs_reactivation"] is True
    assert door["reactivation_reason"] == "OTP rejected"
    assert door["refusal"] == "needs_reactivation"


def test_patch_changes_the_status_through_the_service_and_opens(
    world: World, staff_api: APIClient, salto: respx.Router, django_capture_on_commit_callbacks: Any
) -> None:
    booking = make_booking(world, status=world.new)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api.patch(f"/api/v1/bookings/{booking.pk}/", {"status": 30}, format="json")

    assert response.status_code == 200
    change = BookingStatusChange.objects.filter(booking=booking, source="api").get()
    assert (change.from_status, change.to_status, change.changed_by) == (
        world.new,
        world.paid,
        User.objects.get(username="desk"),
    )
    [open_request] = OpenRequest.objects.all()
    assert (open_request.trigger, open_request.state) == ("status_change", "opened")
    booking.refresh_from_db()
    assert booking.status == world.checkin


@pytest.mark.parametrize(
    "payload",
    [{"status": 999}, {"status": "paid"}, {}, {"status": None}, {"status": [30]}],
    ids=["unknown-code", "not-a-code", "missing", "null", "list"],
)
def test_patch_with_bad_input_is_400(world: World, staff_api: APIClient, payload: dict[str, Any]) -> None:
    booking = make_booking(world)
    response = staff_api.patch(f"/api/v1/bookings/{booking.pk}/", payload, format="json")
    assert response.status_code == 400
    assert "status" in response.json()


def test_patch_with_malformed_json_is_400(world: World, staff_api: APIClient) -> None:
    booking = make_booking(world)
    response = staff_api.generic(
        "PATCH", f"/api/v1/bookings/{booking.pk}/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400


def test_a_view_only_user_cannot_patch(world: World) -> None:
    user = make_user("viewer")
    user.user_permissions.add(*_perms("view_booking"))
    client = APIClient()
    client.force_authenticate(user)
    booking = make_booking(world)
    assert client.patch(f"/api/v1/bookings/{booking.pk}/", {"status": 30}, format="json").status_code == 403


# --- schema -------------------------------------------------------------------------------------


def test_the_schema_and_docs_are_served(staff_api: APIClient) -> None:
    schema = staff_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/bookings/", "/api/v1/bookings/{id}/", "/api/v1/bookings/{id}/open/"} <= set(paths)
    assert "409" in next(p for k, p in paths.items() if k.endswith("/open/"))["post"]["responses"]
    assert staff_api.get("/api/docs/").status_code == 200


def test_the_booking_list_costs_no_queries_per_booking(
    world: World, staff_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    # given many bookings (the door line is computed for each)
    for _ in range(30):
        make_booking(world, status=world.paid)
    # when the list is read, then the number of queries does not grow with the bookings
    with django_assert_max_num_queries(12):
        response = staff_api.get("/api/v1/bookings/?limit=30")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 30
    assert all(b["door"]["explain"] for b in response.json()["results"])


class _BrokerDown:
    """Stands in for the Celery app while Redis is down: publishing a task fails as kombu fails."""

    @property
    def tasks(self) -> dict[str, _BrokerDown]:
        return {"integrations.perform_open": self}

    def apply_async(self, *args: Any, **kwargs: Any) -> None:
        from kombu.exceptions import OperationalError

        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def test_with_the_broker_down_an_open_is_accepted_and_left_to_the_sweeper(
    world: World,
    staff_api: APIClient,
    salto: respx.Router,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from integrations.services import opening

    # given the broker is down
    monkeypatch.setattr(opening, "current_app", _BrokerDown())
    booking = make_booking(world, status=world.paid)
    # when an open is asked for (the request is committed before it is queued, on commit)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api.post(open_url(booking))
    # then the caller gets 202, not 500; the row says why it waits; nothing was sent yet
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "pending"
    waiting = OpenRequest.objects.get(pk=body["id"])
    assert (waiting.state, waiting.reason) == (OpenRequest.State.PENDING, opening.QUEUE_DOWN_REASON)
    assert salto.routes["open"].call_count == 0
    # and when the broker is back, the sweeper (beat) dispatches it and the door opens once
    monkeypatch.undo()
    with time_machine.travel(timezone.now() + timedelta(seconds=opening.SWEEP_GRACE_SECONDS + 1)):
        result = opening.open_requests_sweep()
    assert result.requeued == [body["id"]]
    assert OpenRequest.objects.get(pk=body["id"]).state == OpenRequest.State.OPENED
    assert salto.routes["open"].call_count == 1
