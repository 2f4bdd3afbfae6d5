"""The `Idempotency-Key` header on the open and status-change endpoints: replay, reuse (422), per user, expiry,
malformed keys, no header, the schema; and, on PostgreSQL, two requests with one new key at the same moment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import respx
import time_machine
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from bookings.models import Booking, BookingStatusChange
from integrations.idempotency import IdempotencyKey, idempotency_keys_purge, request_fingerprint
from integrations.models import OpenRequest
from tests.concurrency import run_together
from tests.fake_salto import salto_that_opens_the_front_door
from tests.integrations.opening.builders import World, make_booking, make_user, make_world

STAFF = "Booking staff"
DAY = 86400


def open_url(booking: Booking) -> str:
    return f"/api/v1/bookings/{booking.pk}/open/"


def detail_url(booking: Booking) -> str:
    return f"/api/v1/bookings/{booking.pk}/"


def api_for(username: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user(username, group=STAFF))
    return client


def post_open(client: APIClient, booking: Booking, key: str | None = None, **extra: Any) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(open_url(booking), **headers, **extra)


def patch_status(client: APIClient, booking: Booking, code: int, key: str | None = None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.patch(detail_url(booking), {"status": code}, format="json", **headers)


def status_changes(booking: Booking) -> int:
    return BookingStatusChange.objects.filter(booking=booking, source=BookingStatusChange.Source.API).count()


@pytest.fixture
def salto(settings: Any) -> Iterator[respx.Router]:
    with salto_that_opens_the_front_door(settings) as router:
        yield router


@pytest.fixture
def no_dedupe(settings: Any) -> None:
    # Without the service's own dedupe window a second open really would be a second open request, so these
    # tests see the key doing the work.
    settings.OPEN_DEDUPE_SECONDS = 0


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.mark.django_db
class TestIdempotencyKey:
    @pytest.fixture(autouse=True)
    def _world(self, salto: respx.Router, no_dedupe: None) -> None:
        self.world: World = make_world()
        self.salto = salto

    # --- the same key and body: the stored answer, nothing runs again ----------------------------

    # Real commits: the answer is built again once the request's on-commit work (queueing it) has run, as in
    # production, so the first answer and its replay are compared as a client sees them.
    @pytest.mark.django_db(transaction=True)
    def test_the_same_key_and_body_replay_the_open(self) -> None:
        booking = make_booking(self.world, status=self.world.paid)
        client = committing_api()

        first = post_open(client, booking, "open-1")
        second = post_open(client, booking, "open-1")

        assert (first.status_code, second.status_code) == (202, 202)
        assert second.content == first.content  # the same body, byte for byte: the same open request id
        assert second.json()["id"] == first.json()["id"] == OpenRequest.objects.get().pk
        assert second.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert self.salto.routes["open"].call_count == 1

        # a new key is a new request (the dedupe window is off here, so it is a second open request)
        third = post_open(client, booking, "open-2")
        assert third.status_code == 202
        assert third.json()["id"] != first.json()["id"]
        assert OpenRequest.objects.count() == 2

    def test_a_refusal_409_is_stored_and_replayed(self) -> None:
        booking = make_booking(self.world, status=self.world.new)  # the status does not open the door
        client = api_for("desk")

        first = post_open(client, booking, "refused-1")
        Booking.objects.filter(pk=booking.pk).update(status=self.world.paid)  # it would open now
        second = post_open(client, booking, "refused-1")

        assert (first.status_code, second.status_code) == (409, 409)
        assert first.json()["code"] == "status_not_allowed"
        assert second.content == first.content
        assert second.headers["Idempotent-Replayed"] == "true"
        assert OpenRequest.objects.count() == 1
        assert self.salto.routes["open"].call_count == 0

    def test_the_same_key_and_body_replay_the_status_change(self, on_commit: Callable[[], Any]) -> None:
        booking = make_booking(self.world, status=self.world.new)
        client = api_for("desk")

        with on_commit():
            first = patch_status(client, booking, 30, "patch-1")
        booking.refresh_from_db()
        assert booking.status == self.world.checkin  # paid, then opened, then checked in
        with on_commit():
            second = patch_status(client, booking, 30, "patch-1")

        assert (first.status_code, second.status_code) == (200, 200)
        assert second.content == first.content
        assert second.headers["Idempotent-Replayed"] == "true"
        assert status_changes(booking) == 1  # without the key, the retry would move it back to paid
        booking.refresh_from_db()
        assert booking.status == self.world.checkin
        assert OpenRequest.objects.count() == 1
        assert self.salto.routes["open"].call_count == 1

    def test_the_body_is_compared_as_canonical_json(self) -> None:
        booking = make_booking(self.world, status=self.world.new)
        client = api_for("desk")
        url = detail_url(booking)

        first = client.generic(
            "PATCH", url, '{"status": 30}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
        )
        second = client.generic(
            "PATCH", url, '{\n  "status":30\n}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
        )

        assert (first.status_code, second.status_code) == (200, 200)
        assert second.headers["Idempotent-Replayed"] == "true"
        assert status_changes(booking) == 1

    # --- the same key with another body or route: 422, nothing runs -----------------------------

    def test_the_same_key_with_another_body_is_422(self) -> None:
        booking = make_booking(self.world, status=self.world.new)
        client = api_for("desk")
        assert patch_status(client, booking, 30, "patch-1").status_code == 200
        booking.refresh_from_db()
        before = (booking.status_id, status_changes(booking), OpenRequest.objects.count())

        reused = patch_status(client, booking, 70, "patch-1")

        assert reused.status_code == 422
        assert reused.json()["code"] == "idempotency_key_reused"
        assert reused.json()["detail"]
        booking.refresh_from_db()
        assert (booking.status_id, status_changes(booking), OpenRequest.objects.count()) == before

    def test_the_same_key_on_another_route_is_422(self) -> None:
        booking = make_booking(self.world, status=self.world.paid)
        other = make_booking(self.world, status=self.world.paid)
        client = api_for("desk")
        assert post_open(client, booking, "key-1").status_code == 202

        on_other_booking = post_open(client, other, "key-1")
        on_patch = patch_status(client, booking, 70, "key-1")

        assert (on_other_booking.status_code, on_patch.status_code) == (422, 422)
        assert on_other_booking.json()["code"] == on_patch.json()["code"] == "idempotency_key_reused"
        assert OpenRequest.objects.count() == 1
        assert status_changes(booking) == 0

    # --- per user ----------------------------------------------------------------------------

    def test_another_user_may_use_the_same_key(self) -> None:
        booking = make_booking(self.world, status=self.world.paid)
        desk, night = api_for("desk"), api_for("night")

        first = post_open(desk, booking, "shared-key")
        theirs = post_open(night, booking, "shared-key")

        assert (first.status_code, theirs.status_code) == (202, 202)
        assert "Idempotent-Replayed" not in theirs.headers
        assert theirs.json()["id"] != first.json()["id"]
        assert (first.json()["actor"], theirs.json()["actor"]) == ("desk", "night")
        assert IdempotencyKey.objects.filter(key="shared-key").count() == 2
        # and each user's retry replays their own answer
        assert post_open(night, booking, "shared-key").json()["id"] == theirs.json()["id"]

    # --- expiry --------------------------------------------------------------------------------

    def test_after_the_ttl_the_key_is_new_again(self) -> None:
        booking = make_booking(self.world, status=self.world.paid, hours=30)  # still open tomorrow
        client = api_for("desk")

        with time_machine.travel(timezone.now(), tick=False) as traveller:
            first = post_open(client, booking, "daily")
            traveller.shift(timedelta(seconds=DAY - 1))
            assert post_open(client, booking, "daily").headers["Idempotent-Replayed"] == "true"
            traveller.shift(timedelta(seconds=1))  # 24 h after the first
            again = post_open(client, booking, "daily")

        assert again.status_code == 202
        assert "Idempotent-Replayed" not in again.headers
        assert again.json()["id"] != first.json()["id"]
        assert OpenRequest.objects.count() == 2
        [row] = IdempotencyKey.objects.all()  # the expired row was deleted when found, the new one kept
        assert row.created_at > timezone.now() + timedelta(hours=23)

    def test_the_ttl_is_a_setting(self, settings: Any, on_commit: Callable[[], Any]) -> None:
        settings.IDEMPOTENCY_KEY_TTL_SECONDS = 600
        booking = make_booking(self.world, status=self.world.new)
        client = api_for("desk")

        with time_machine.travel(timezone.now(), tick=False) as traveller:
            with on_commit():
                patch_status(client, booking, 30, "short")
            traveller.shift(timedelta(seconds=601))
            with on_commit():
                again = patch_status(client, booking, 30, "short")

        assert "Idempotent-Replayed" not in again.headers
        assert status_changes(booking) == 2  # checked in by the open, so paid again is a second change

    def test_purge_deletes_only_expired_keys(self) -> None:
        user = make_user("desk")
        now = timezone.now()
        old = IdempotencyKey.objects.create(
            user=user, key="old", route="POST bookings/1/open", fingerprint="x", status_code=202, response_body="{}"
        )
        IdempotencyKey.objects.filter(pk=old.pk).update(created_at=now - timedelta(seconds=DAY))
        IdempotencyKey.objects.create(
            user=user, key="new", route="POST bookings/1/open", fingerprint="x", status_code=202, response_body="{}"
        )

        assert idempotency_keys_purge(now=now) == 1
        assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]

    # --- what is not stored, and what is refused -------------------------------------------------

    @pytest.mark.parametrize(
        "key",
        ["", "with space", "tab\tkey", "x" * 256, "clé", "\x7f"],
        ids=["empty", "space", "control", "too-long", "non-ascii", "del"],
    )
    def test_a_malformed_key_is_400_and_nothing_runs(self, key: str) -> None:
        booking = make_booking(self.world, status=self.world.paid)
        client = api_for("desk")

        opened = post_open(client, booking, key)
        patched = patch_status(client, booking, 70, key)

        assert (opened.status_code, patched.status_code) == (400, 400)
        assert opened.json()["code"] == patched.json()["code"] == "idempotency_key_invalid"
        assert "Idempotency-Key" in opened.json()["detail"]
        assert not OpenRequest.objects.exists()
        assert status_changes(booking) == 0
        assert not IdempotencyKey.objects.exists()

    def test_the_longest_key_is_accepted(self) -> None:
        booking = make_booking(self.world, status=self.world.paid)
        key = "".join(chr(c) for c in range(0x21, 0x7F)) * 3  # every visible ASCII character
        assert post_open(api_for("desk"), booking, key[:255]).status_code == 202

    def test_a_client_error_is_not_stored_so_a_corrected_retry_runs(self) -> None:
        booking = make_booking(self.world, status=self.world.new)
        client = api_for("desk")

        wrong = patch_status(client, booking, 999, "fix-me")
        assert wrong.status_code == 400
        assert not IdempotencyKey.objects.exists()

        corrected = patch_status(client, booking, 30, "fix-me")
        assert corrected.status_code == 200
        assert "Idempotent-Replayed" not in corrected.headers
        assert status_changes(booking) == 1

    def test_a_404_is_not_stored(self) -> None:
        client = api_for("desk")
        assert client.post("/api/v1/bookings/999999/open/", HTTP_IDEMPOTENCY_KEY="k").status_code == 404
        assert not IdempotencyKey.objects.exists()

    def test_an_anonymous_or_forbidden_caller_never_reaches_the_key(self) -> None:
        booking = make_booking(self.world, status=self.world.paid)
        assert APIClient().post(open_url(booking), HTTP_IDEMPOTENCY_KEY="k").status_code == 401
        nobody = APIClient()
        nobody.force_authenticate(make_user("nobody"))
        assert nobody.post(open_url(booking), HTTP_IDEMPOTENCY_KEY="k").status_code == 403
        assert not IdempotencyKey.objects.exists()

    # --- without the header, nothing changes -------------------------------------------------

    def test_without_the_header_nothing_is_stored(self) -> None:
        booking = make_booking(self.world, status=self.world.paid)
        client = api_for("desk")

        first = post_open(client, booking)
        second = post_open(client, booking)

        assert (first.status_code, second.status_code) == (202, 202)
        assert "Idempotent-Replayed" not in second.headers
        assert first.json()["id"] != second.json()["id"]  # the dedupe window is off in these tests
        assert not IdempotencyKey.objects.exists()


# --- the fingerprint -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body_a", "body_b", "content_type", "same"),
    [
        ('{"a": 1, "b": [1, 2]}', '{"b":[1,2],"a":1}', "application/json", True),
        ('{"a": 1}', '{"a": 2}', "application/json", False),
        ('{"a": 1}', '{"a": 1}', "application/merge-patch+json; charset=utf-8", True),
        ("{not json", "{not json ", "application/json", False),
        ("a=1&b=2", "b=2&a=1", "application/x-www-form-urlencoded", False),
        ("", "", "application/json", True),
        ("", "{}", "application/json", False),
    ],
    ids=["json-key-order", "json-other-value", "json-suffix", "bad-json-raw", "form-raw", "empty", "empty-vs-{}"],
)
def test_the_fingerprint(body_a: str, body_b: str, content_type: str, same: bool) -> None:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    def fingerprint(body: str) -> str:
        raw = APIRequestFactory().generic("POST", "/x/", body, content_type=content_type)
        return request_fingerprint(Request(raw))

    assert (fingerprint(body_a) == fingerprint(body_b)) is same


# --- the schema ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_schema_documents_the_header_on_both_operations() -> None:
    client = APIClient()
    client.force_authenticate(make_user("desk", group=STAFF))
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]

    for path, method in [("/api/v1/bookings/{id}/open/", "post"), ("/api/v1/bookings/{id}/", "patch")]:
        operation = paths[path][method]
        [header] = [p for p in operation["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        assert header.get("required", False) is False  # optional (OpenAPI omits "required: false")
        assert header["schema"]["type"] == "string"
        assert "422" in operation["responses"]
        assert "Idempotent-Replayed" in header["description"]
    # the read is not a retryable write
    assert not [p for p in paths["/api/v1/bookings/{id}/"]["get"].get("parameters", []) if p["in"] == "header"]


# --- PostgreSQL: two requests with one new key at the same moment -----------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_new_key_open_once(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (real concurrent connections waiting on the unique index)")
    from integrations.services import opening

    settings.OPEN_DEDUPE_SECONDS = 0  # so only the key can collapse them
    monkeypatch.setattr(opening, "open_request_enqueue", lambda **_: None)
    world = make_world()
    booking = make_booking(world, status=world.paid)
    # A superuser: a transactional test that ran before this one flushed the roles the migrations made.
    user = make_user("desk", is_superuser=True)

    def post() -> tuple[int, int, bool]:
        client = APIClient()
        client.force_authenticate(user)
        response = post_open(client, booking, "same-moment")
        return response.status_code, response.json()["id"], response.headers.get("Idempotent-Replayed") == "true"

    results = run_together(2, post)

    assert OpenRequest.objects.count() == 1
    assert [status for status, _, _ in results] == [202, 202]
    assert {request_id for _, request_id, _ in results} == {OpenRequest.objects.get().pk}
    assert sorted(replayed for _, _, replayed in results) == [False, True]
    assert IdempotencyKey.objects.count() == 1


# --- with the broker down: 202 / 200, the waiting reason in the answer and in its replay ----------------------


def committing_api() -> APIClient:
    # Transactional tests flush the tables, and with them the roles the migrations made: a superuser needs none.
    client = APIClient()
    client.force_authenticate(make_user("desk", is_superuser=True))
    return client


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_an_open_with_a_key_answers_and_replays_the_waiting_reason(
    salto: respx.Router, no_dedupe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.services import opening
    from tests.api.test_api import _BrokerDown

    world = make_world()
    booking = make_booking(world, status=world.paid)
    client = committing_api()
    monkeypatch.setattr(opening, "current_app", _BrokerDown())

    first = post_open(client, booking, "open-broker-down")
    replay = post_open(client, booking, "open-broker-down")

    assert (first.status_code, replay.status_code) == (202, 202)
    assert first.json()["state"] == "pending"
    assert first.json()["reason"] == opening.QUEUE_DOWN_REASON
    assert replay.content == first.content
    assert OpenRequest.objects.count() == 1
    assert salto.routes["open"].call_count == 0


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_status_change_with_a_key_is_200_and_its_open_waits_for_the_sweeper(
    salto: respx.Router, no_dedupe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.services import opening
    from tests.api.test_api import _BrokerDown

    world = make_world()
    booking = make_booking(world, status=world.new)
    client = committing_api()
    monkeypatch.setattr(opening, "current_app", _BrokerDown())

    first = patch_status(client, booking, world.paid.code, key="status-broker-down")
    replay = patch_status(client, booking, world.paid.code, key="status-broker-down")

    # not a 500: the status changed once, and its open request is kept for the sweeper, saying why it waits
    assert (first.status_code, replay.status_code) == (200, 200)
    assert replay.content == first.content
    assert status_changes(booking) == 1
    [waiting] = OpenRequest.objects.all()
    assert (waiting.state, waiting.reason) == (OpenRequest.State.PENDING, opening.QUEUE_DOWN_REASON)
    assert salto.routes["open"].call_count == 0
    # and once the broker is back, the sweeper sends it, once
    monkeypatch.undo()
    with time_machine.travel(timezone.now() + timedelta(seconds=opening.SWEEP_GRACE_SECONDS + 1)):
        assert opening.open_requests_sweep().requeued == [waiting.pk]
    assert OpenRequest.objects.get(pk=waiting.pk).state == OpenRequest.State.OPENED
    assert salto.routes["open"].call_count == 1
