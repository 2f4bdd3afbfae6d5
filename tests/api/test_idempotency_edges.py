"""`respond_idempotently` at its edges, called as the API views call it (a DRF request, an action returning a
Response): which answers are kept (2xx and 409, nothing else), the TTL's last second, the purge's, the body's
canonical fingerprint, replay and reuse, and the answer rebuilt after commit. The endpoints themselves are
tests/api/test_idempotency.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from rest_framework.exceptions import NotAuthenticated
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from integrations.idempotency import (
    MAX_KEY_LENGTH,
    REPLAYED_HEADER,
    IdempotencyKey,
    idempotency_keys_purge,
    request_fingerprint,
    respond_idempotently,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = 86400
ROUTE = "bookings/7/open"


@pytest.fixture
def user() -> User:
    return User.objects.create(username="api-client")


def api_request(
    user: User | None,
    *,
    key: str | None = "key-1",
    body: Any = None,
    content_type: str = "application/json",
    method: str = "post",
) -> Request:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    raw = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    django_request = getattr(APIRequestFactory(), method)(
        "/api/v1/x/", data=raw or "", content_type=content_type, **headers
    )
    request = Request(django_request, parsers=[JSONParser(), FormParser(), MultiPartParser()])
    if user is not None:
        request.user = user
    return request


class Action:
    """What a view does under the key: counted, with the answer it gives."""

    def __init__(self, status: int = 202, data: Any = None) -> None:
        self.status = status
        self.data = {"id": 1, "state": "pending"} if data is None else data
        self.runs = 0

    def __call__(self) -> Response:
        self.runs += 1
        return Response(self.data, status=self.status)


def twice(user: User, action: Callable[[], Response], **request: Any) -> tuple[Response, Response]:
    first = respond_idempotently(api_request(user, **request), route=ROUTE, action=action)
    second = respond_idempotently(api_request(user, **request), route=ROUTE, action=action)
    return first, second


# --- which answers are kept --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kept"), [(200, True), (202, True), (299, True), (409, True)])
def test_a_2xx_or_a_409_is_kept_and_replayed(user: User, status: int, kept: bool) -> None:
    action = Action(status)
    first, second = twice(user, action)
    assert action.runs == 1
    assert (first.status_code, second.status_code) == (status, status)
    assert second.data == first.data
    assert second[REPLAYED_HEADER] == "true"
    assert REPLAYED_HEADER not in first
    row = IdempotencyKey.objects.get()
    assert (row.status_code, row.route, json.loads(row.response_body)) == (status, f"POST {ROUTE}", action.data)


@pytest.mark.parametrize("status", [199, 300, 400, 404, 408, 410, 422, 500])
def test_any_other_answer_is_not_kept_so_a_retry_runs_again(user: User, status: int) -> None:
    action = Action(status)
    first, second = twice(user, action)
    assert action.runs == 2
    assert (first.status_code, second.status_code) == (status, status)
    assert REPLAYED_HEADER not in second
    assert not IdempotencyKey.objects.exists()


def test_without_the_header_the_action_simply_runs(user: User) -> None:
    action = Action()
    twice(user, action, key=None)
    assert action.runs == 2
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize(
    "key",
    ["", " ", "a b", "tab\t", "é", "x" * (MAX_KEY_LENGTH + 1)],
    ids=["empty", "space", "inner-space", "tab", "non-ascii", "too-long"],
)
def test_a_malformed_key_is_400_and_the_action_never_runs(user: User, key: str) -> None:
    action = Action()
    response = respond_idempotently(api_request(user, key=key), route=ROUTE, action=action)
    assert response.status_code == 400
    assert response.data["code"] == "idempotency_key_invalid"
    assert action.runs == 0


@pytest.mark.parametrize("key", ["!", "~", "x" * MAX_KEY_LENGTH], ids=["lowest", "highest", "longest"])
def test_the_edges_of_a_valid_key_are_accepted(user: User, key: str) -> None:
    action = Action()
    assert respond_idempotently(api_request(user, key=key), route=ROUTE, action=action).status_code == 202
    assert IdempotencyKey.objects.get().key == key
    assert MAX_KEY_LENGTH == 255


def test_a_key_without_a_user_is_refused(user: User) -> None:
    request = api_request(None)
    with pytest.raises(NotAuthenticated):
        respond_idempotently(request, route=ROUTE, action=Action())


# --- replay and reuse -----------------------------------------------------------------------------------------------


def test_the_same_key_with_another_body_or_route_is_422_and_the_action_does_not_run(user: User) -> None:
    action = Action()
    respond_idempotently(api_request(user, body={"a": 1}), route=ROUTE, action=action)
    other_body = respond_idempotently(api_request(user, body={"a": 2}), route=ROUTE, action=action)
    other_route = respond_idempotently(api_request(user, body={"a": 1}), route="bookings/8/open", action=action)
    other_method = respond_idempotently(api_request(user, body={"a": 1}, method="patch"), route=ROUTE, action=action)
    for response in (other_body, other_route, other_method):
        assert response.status_code == 422
        assert response.data["code"] == "idempotency_key_reused"
        assert "POST bookings/7/open" in response.data["detail"]
    assert action.runs == 1


def test_keys_are_per_user(user: User) -> None:
    other = User.objects.create(username="other-client")
    action = Action()
    respond_idempotently(api_request(user), route=ROUTE, action=action)
    respond_idempotently(api_request(other), route=ROUTE, action=action)
    assert action.runs == 2
    assert IdempotencyKey.objects.count() == 2


# --- the TTL and the purge --------------------------------------------------------------------------------------------


def test_a_key_is_replayed_until_its_last_second_and_runs_again_after(user: User, settings: Any) -> None:
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = DAY
    action = Action()
    with time_machine.travel(T0, tick=False) as clock:
        respond_idempotently(api_request(user), route=ROUTE, action=action)
        clock.move_to(T0 + timedelta(seconds=DAY - 0.001))
        assert respond_idempotently(api_request(user), route=ROUTE, action=action)[REPLAYED_HEADER] == "true"
        clock.move_to(T0 + timedelta(seconds=DAY))
        again = respond_idempotently(api_request(user), route=ROUTE, action=action)
    assert REPLAYED_HEADER not in again
    assert action.runs == 2
    # the expired row made way for the new one
    assert IdempotencyKey.objects.get().created_at == T0 + timedelta(seconds=DAY)


def test_the_purge_deletes_keys_from_exactly_the_ttl_on(user: User, settings: Any) -> None:
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = DAY
    for name, age in (("expired", DAY + 1), ("at-the-ttl", DAY), ("live", DAY - 0.001)):
        IdempotencyKey.objects.create(
            user=user,
            key=name,
            route="r",
            fingerprint="f",
            status_code=200,
            response_body="{}",
            created_at=T0 - timedelta(seconds=age),
        )
    assert idempotency_keys_purge(now=T0) == 2
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["live"]


# --- the fingerprint --------------------------------------------------------------------------------------------------


def test_the_fingerprint_is_the_sha256_of_canonical_json() -> None:
    request = api_request(None, body='{ "b": [1, 2],\n "a": "é" }')
    canonical = '{"a":"é","b":[1,2]}'.encode()
    assert request_fingerprint(request) == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/merge-patch+json"],
)
def test_every_json_media_type_is_compared_as_canonical_json(content_type: str) -> None:
    one = api_request(None, body='{"a": 1, "b": 2}', content_type=content_type)
    other = api_request(None, body='{"b":2,"a":1}', content_type=content_type)
    assert request_fingerprint(one) == request_fingerprint(other)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonp"])
def test_any_other_body_is_compared_byte_for_byte(content_type: str) -> None:
    one = api_request(None, body='{"a": 1}', content_type=content_type)
    other = api_request(None, body='{"a":1}', content_type=content_type)
    assert request_fingerprint(one) != request_fingerprint(other)
    assert request_fingerprint(one) == hashlib.sha256(b'{"a": 1}').hexdigest()


def test_a_json_body_that_is_not_json_is_compared_as_it_came() -> None:
    assert request_fingerprint(api_request(None, body="{not json")) == hashlib.sha256(b"{not json").hexdigest()


def test_an_empty_body_has_the_fingerprint_of_nothing() -> None:
    assert request_fingerprint(api_request(None, body=None)) == hashlib.sha256(b"").hexdigest()


def test_a_body_a_parser_already_read_is_hashed_as_what_it_parsed() -> None:
    # given a multipart body that a parser has streamed (Django no longer has the bytes)
    django_request = APIRequestFactory().post("/api/v1/x/", data={"b": "2", "a": "1"}, format="multipart")
    request = Request(django_request, parsers=[MultiPartParser()])
    _ = request.data
    # when / then
    expected = hashlib.sha256(json.dumps({"a": "1", "b": "2"}, sort_keys=True, separators=(",", ":")).encode())
    assert request_fingerprint(request) == expected.hexdigest()


# --- the answer rebuilt after commit ----------------------------------------------------------------------------------


def test_the_answer_rebuilt_after_commit_is_the_one_kept_and_replayed(
    user: User, django_capture_on_commit_callbacks: Any
) -> None:
    action = Action(202, {"id": 1, "reason": ""})

    def rebuilt(first: Response) -> Response:
        return Response({"id": 1, "reason": "waiting for the sweeper"}, status=first.status_code)

    with django_capture_on_commit_callbacks(execute=True):
        first = respond_idempotently(api_request(user), route=ROUTE, action=action, render_after_commit=rebuilt)
    replay = respond_idempotently(api_request(user), route=ROUTE, action=action, render_after_commit=rebuilt)
    # the first answer was built before the commit; what is kept (and replayed) is the one built after it
    assert first.data == {"id": 1, "reason": ""}
    assert replay.data == {"id": 1, "reason": "waiting for the sweeper"}
    assert json.loads(IdempotencyKey.objects.get().response_body) == replay.data
    assert action.runs == 1


def test_a_rebuilt_answer_with_another_status_is_not_kept(user: User, django_capture_on_commit_callbacks: Any) -> None:
    action = Action(202, {"id": 1})

    def rebuilt(first: Response) -> Response:
        return Response({"detail": "changed"}, status=500)

    with django_capture_on_commit_callbacks(execute=True):
        first = respond_idempotently(api_request(user), route=ROUTE, action=action, render_after_commit=rebuilt)
    replay = respond_idempotently(api_request(user), route=ROUTE, action=action, render_after_commit=rebuilt)
    assert (first.status_code, first.data) == (202, {"id": 1})
    assert (replay.status_code, replay.data) == (202, {"id": 1})


def test_an_answer_that_is_not_kept_is_not_rebuilt(user: User, django_capture_on_commit_callbacks: Any) -> None:
    calls: list[Response] = []

    def rebuilt(first: Response) -> Response:
        calls.append(first)
        return first

    with django_capture_on_commit_callbacks(execute=True):
        respond_idempotently(
            api_request(user), route=ROUTE, action=Action(400, {"detail": "no"}), render_after_commit=rebuilt
        )
    assert calls == []


def test_an_action_that_raises_leaves_no_key_behind(user: User) -> None:
    def broken() -> Response:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        respond_idempotently(api_request(user), route=ROUTE, action=broken)
    assert not IdempotencyKey.objects.exists()
    assert respond_idempotently(api_request(user), route=ROUTE, action=Action()).status_code == 202


def test_a_rebuild_that_fails_leaves_the_first_answer_kept(
    user: User, django_capture_on_commit_callbacks: Any, caplog: Any
) -> None:
    action = Action(202, {"id": 1})

    def broken(first: Response) -> Response:
        raise RuntimeError("cannot rebuild")

    # when the rebuild after commit raises, the request is still answered
    with django_capture_on_commit_callbacks(execute=True):
        first = respond_idempotently(api_request(user), route=ROUTE, action=action, render_after_commit=broken)
    replay = respond_idempotently(api_request(user), route=ROUTE, action=action, render_after_commit=broken)
    # then the answer built inside the transaction is the one kept
    assert (first.status_code, first.data) == (202, {"id": 1})
    assert (replay.status_code, replay.data) == (202, {"id": 1})
    assert action.runs == 1
