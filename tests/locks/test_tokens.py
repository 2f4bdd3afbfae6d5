from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
import time_machine
from django.conf import settings
from django.core.cache import cache
from pydantic import SecretStr

from locks.client import SaltoClient
from locks.errors import SaltoAuthError
from tests.fake_salto import (
    ACCESS_TOKEN,
    API,
    PASSWORD,
    TOKEN_URL,
    USERNAME,
    assert_token_request,
    token_body,
)


def test_it_fetches_a_token_with_the_password_grant(
    client: SaltoClient, httpx2_mock: respx.Router, token_route: respx.Route
) -> None:
    # when
    with time_machine.travel(datetime(2026, 11, 25, 12, 0, tzinfo=UTC), tick=False):
        token = client.fetch_token()
    # then
    assert_token_request(token_route.calls.last.request)
    assert token.access_token.get_secret_value() == ACCESS_TOKEN
    assert token.expires_at == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    assert token.scope == "user_api.full_access"


def test_it_reuses_the_cached_token(client: SaltoClient, token_route: respx.Route) -> None:
    # given
    client.fetch_token()
    # when
    with SaltoClient(environment="acceptance", username=USERNAME, password=PASSWORD) as other:
        token = other.fetch_token()
    # then
    assert token_route.call_count == 1
    assert token.access_token.get_secret_value() == ACCESS_TOKEN


def test_it_keys_the_cache_per_account(client: SaltoClient, token_route: respx.Route) -> None:
    # given
    client.fetch_token()
    # when
    with SaltoClient(environment="acceptance", username="other@example.com", password=PASSWORD) as other:
        other.fetch_token()
    # then
    assert token_route.call_count == 2


def test_it_never_puts_the_password_in_the_cache_key(client: SaltoClient, token_route: respx.Route) -> None:
    # when
    client.fetch_token()
    # then
    key = client.tokens._key
    assert PASSWORD not in key
    assert USERNAME not in key


def test_it_fetches_again_60_seconds_before_expiry(client: SaltoClient, token_route: respx.Route) -> None:
    # given
    start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        client.fetch_token()
    # when
    with time_machine.travel(start + timedelta(seconds=3600 - 61), tick=False):
        client.fetch_token()
    calls_before_margin = token_route.call_count
    with time_machine.travel(start + timedelta(seconds=3600 - 59), tick=False):
        client.fetch_token()
    # then
    assert calls_before_margin == 1
    assert token_route.call_count == 2


def test_it_forces_a_new_token(client: SaltoClient, token_route: respx.Route) -> None:
    # given
    client.fetch_token()
    # when
    client.fetch_token(force=True)
    # then
    assert token_route.call_count == 2


def test_it_refreshes_the_token_once_on_401(client: SaltoClient, httpx2_mock: respx.Router) -> None:
    # given
    token_route = httpx2_mock.post(TOKEN_URL)
    token_route.side_effect = [
        httpx.Response(200, json=token_body("old-token")),
        httpx.Response(200, json=token_body("new-token")),
    ]
    sites = httpx2_mock.get(API + "/v1.1/sites")
    sites.side_effect = [httpx.Response(401), httpx.Response(200, json={"items": [], "next_page_link": None})]
    # when
    result = client.list_sites()
    # then
    assert result == []
    assert token_route.call_count == 2
    assert [c.request.headers["authorization"] for c in sites.calls] == ["Bearer old-token", "Bearer new-token"]
    assert cache.get(client.tokens._key)["access_token"] == "new-token"


def test_it_gives_up_after_a_second_401(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given
    sites = httpx2_mock.get(API + "/v1.1/sites").respond(401)
    # when
    with pytest.raises(SaltoAuthError) as info:
        client.list_sites()
    # then
    assert info.value.reason == "unauthorized"
    assert sites.call_count == 2
    assert token_route.call_count == 2


def _twenty_threads_need_a_token(httpx2_mock: respx.Router) -> tuple[int, list[Any]]:
    counter = {"n": 0}
    guard = threading.Lock()

    def slow_token(request: Any) -> httpx.Response:
        with guard:
            counter["n"] += 1
        time.sleep(0.3)  # everyone else arrives while this one is in flight
        return httpx.Response(200, json=token_body())

    httpx2_mock.post(TOKEN_URL).mock(side_effect=slow_token)
    barrier = threading.Barrier(20)
    results: list[Any] = []

    def worker() -> None:
        with SaltoClient(environment="acceptance", username=USERNAME, password=PASSWORD) as c:
            barrier.wait()
            try:
                results.append(c.fetch_token().access_token.get_secret_value())
            except Exception as exc:  # collected and asserted below
                results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return counter["n"], results


def test_it_fetches_exactly_one_token_for_20_threads_at_once(httpx2_mock: respx.Router) -> None:
    # when
    token_requests, results = _twenty_threads_need_a_token(httpx2_mock)
    # then
    assert token_requests == 1
    assert results == [ACCESS_TOKEN] * 20


@pytest.mark.skipif(not getattr(settings, "REDIS_URL", None), reason="needs REDIS_URL (Redis-backed cache)")
def test_it_fetches_exactly_one_token_for_20_threads_at_once_with_redis(httpx2_mock: respx.Router) -> None:
    # given
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    assert isinstance(caches["default"], RedisCache)
    # when
    token_requests, results = _twenty_threads_need_a_token(httpx2_mock)
    # then
    assert token_requests == 1
    assert results == [ACCESS_TOKEN] * 20


def test_waiting_threads_share_a_credentials_failure(httpx2_mock: respx.Router) -> None:
    # given
    def slow_refusal(request: Any) -> httpx.Response:
        time.sleep(0.2)
        return httpx.Response(400, json={"error": "invalid_grant"})

    route = httpx2_mock.post(TOKEN_URL).mock(side_effect=slow_refusal)
    results: list[Any] = []
    barrier = threading.Barrier(5)

    def worker() -> None:
        with SaltoClient(environment="acceptance", username=USERNAME, password="wrong") as c:
            barrier.wait()
            try:
                c.fetch_token()
            except SaltoAuthError as exc:
                results.append(exc.reason)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # then
    assert results == ["invalid_grant"] * 5
    assert route.call_count == 1


def test_it_does_not_drop_a_token_another_caller_just_refreshed(client: SaltoClient, httpx2_mock: respx.Router) -> None:
    # given another caller already replaced the stale token with a fresh one
    token_route = httpx2_mock.post(TOKEN_URL)
    token_route.side_effect = [
        httpx.Response(200, json=token_body("fresh")),
        httpx.Response(200, json=token_body("fetched-again")),
    ]
    fresh = client.fetch_token()
    stale = fresh.model_copy(update={"access_token": SecretStr("stale")})
    # when the caller whose stale token was rejected invalidates it
    client.tokens.invalidate(stale)
    # then the fresh token is still cached and used: no second password grant
    assert cache.get(client.tokens._key)["access_token"] == "fresh"
    assert client.fetch_token().access_token.get_secret_value() == "fresh"
    assert token_route.call_count == 1
