"""The token provider at its edges: the single-flight lock (its release, its expiry, waiters' back-off and their
deadline), invalidation, shared credential failures and the cache's margin. `TokenProvider` with a fetch function
of the test's own (the HTTP side is tests/locks/test_tokens.py); a fake clock where a test would otherwise wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from pydantic import SecretStr

from locks import tokens
from locks.errors import IdentityUnreachable, SaltoAuthError
from locks.schemas import AccessToken
from locks.tokens import TokenProvider, token_cache_key

KEY = "salto_ks:token:test"
LOCK = KEY + ":lock"
FAILED = KEY + ":failed"


def token(value: str = "tok", *, expires_in: float = 3600, scope: str | None = "user_api.full_access") -> AccessToken:
    return AccessToken(
        access_token=SecretStr(value),
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        scope=scope,
        token_type="Bearer",
    )


def stored(t: AccessToken) -> dict[str, Any]:
    """A token as the provider keeps it in the shared cache (what another process would have written)."""
    return {
        "access_token": t.access_token.get_secret_value(),
        "expires_at": t.expires_at.isoformat(),
        "scope": t.scope,
        "token_type": t.token_type,
    }


class Fetches:
    """The password grant, counted: each call returns the next answer (a token or an exception to raise)."""

    def __init__(self, *answers: AccessToken | Exception, before: Callable[[], None] | None = None) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.before = before

    def __call__(self) -> AccessToken:
        self.calls += 1
        if self.before is not None:
            self.before()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeClock:
    """time.monotonic and time.sleep for the provider: sleeping moves the clock; AT runs a step at a moment."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []
        self.at: dict[int, Callable[[], None]] = {}

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        self.pauses.append(seconds)
        self.now += seconds
        step = self.at.pop(len(self.pauses), None)
        if step is not None:
            step()


def own_cache() -> LocMemCache:
    """A local-memory cache of the test's own: its expiry follows time-machine's clock (Redis keeps its own time),
    so the TTLs the provider asks for can be walked to their last second."""
    return LocMemCache(f"tokens-edges-{time.monotonic_ns()}", {})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(tokens, "time", fake)
    return fake


# --- the cache key ------------------------------------------------------------------------------------------


def test_the_cache_key_is_one_per_account_whatever_its_case_or_spaces() -> None:
    # given
    base = {"environment": "acceptance", "identity_url": "https://identity.test", "client_id": "c"}
    # when
    key = token_cache_key(**base, username="doors@example.com")
    # then
    assert key == token_cache_key(**base, username="  Doors@Example.COM ")
    assert key.startswith("salto_ks:token:")
    assert len(key.removeprefix("salto_ks:token:")) == 32
    for changed in ({"environment": "production"}, {"identity_url": "https://other.test"}, {"client_id": "d"}):
        assert token_cache_key(**{**base, **changed}, username="doors@example.com") != key
    # the parts cannot run into each other ("ab" + "c" is not "a" + "bc")
    assert token_cache_key(environment="ab", identity_url="c", client_id="x", username="u") != token_cache_key(
        environment="a", identity_url="bc", client_id="x", username="u"
    )


# --- the lock: released, and expiring by itself ---------------------------------------------------------------


def test_a_failed_fetch_releases_the_lock_at_once() -> None:
    # given an identity server that cannot be reached once, then issues a token
    fetch = Fetches(IdentityUnreachable(), token("second"))
    provider = TokenProvider(fetch=fetch, cache_key=KEY)
    with pytest.raises(IdentityUnreachable):
        provider.get()
    # then the lock is gone, and the next caller fetches without waiting for it
    assert cache.get(LOCK) is None
    started = time.monotonic()
    assert provider.get().access_token.get_secret_value() == "second"
    assert time.monotonic() - started < 1
    assert fetch.calls == 2


def test_waiters_take_over_one_at_a_time_when_the_first_fetch_fails() -> None:
    # given a slow first fetch that fails (not on credentials, so the waiters may try themselves), then a token
    def slowly() -> None:
        time.sleep(0.2)

    fetch = Fetches(IdentityUnreachable(), token("after-failure"), before=slowly)
    barrier = threading.Barrier(4)
    results: list[str] = []

    def caller() -> None:
        provider = TokenProvider(fetch=fetch, cache_key=KEY)
        barrier.wait()
        try:
            results.append(provider.get().access_token.get_secret_value())
        except IdentityUnreachable:
            results.append("failed")

    threads = [threading.Thread(target=caller) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=40)
    # then one caller saw the failure, one of the waiters fetched again, the others got its token, quickly
    assert sorted(results) == ["after-failure"] * 3 + ["failed"]
    assert fetch.calls == 2
    assert time.monotonic() - started < 5


def test_the_lock_expires_by_itself_a_second_after_lock_seconds() -> None:
    # given: what the lock looks like to others while the fetch runs (a crashed holder never deletes it)
    seen: dict[float, bool] = {}
    start = time.time()
    local = own_cache()

    def look() -> None:
        for later in (30.5, 31.5):
            with time_machine.travel(start + later, tick=False):
                seen[later] = local.get(LOCK) is not None

    provider = TokenProvider(fetch=Fetches(token(), before=look), cache_key=KEY, cache=local)
    # when
    provider.get()
    # then the default lock (30 s) outlives a slow fetch and is gone a second after
    assert seen == {30.5: True, 31.5: False}


def test_a_lock_another_caller_took_over_is_not_released_by_the_first() -> None:
    # given the first holder's lock expired during its fetch and another caller took it
    def taken_over() -> None:
        cache.set(LOCK, "someone-else", timeout=60)

    provider = TokenProvider(fetch=Fetches(token(), before=taken_over), cache_key=KEY)
    # when
    provider.get()
    # then
    assert cache.get(LOCK) == "someone-else"


def test_under_the_lock_it_looks_again_and_uses_a_token_stored_meanwhile() -> None:
    # given another caller stores a token between this caller's miss and its lock
    class StoredJustBeforeTheLock(LocMemCache):
        def add(self, key: str, value: Any, timeout: Any = None, version: Any = None) -> bool:
            self.set(KEY, stored(token("theirs")))
            return super().add(key, value, timeout, version)

    fetch = Fetches(token("mine"))
    provider = TokenProvider(fetch=fetch, cache_key=KEY, cache=StoredJustBeforeTheLock("edges", {}))
    # when / then
    assert provider.get().access_token.get_secret_value() == "theirs"
    assert fetch.calls == 0


# --- waiters: back-off, and a deadline ----------------------------------------------------------------------


def test_a_waiter_looks_again_after_5_ms_and_backs_off_to_the_poll_interval(clock: FakeClock) -> None:
    # given another caller holds the lock and stores its token after a while
    cache.add(LOCK, "other", timeout=300)
    clock.at[7] = lambda: cache.set(KEY, stored(token("theirs")))
    fetch = Fetches(token("mine"))
    # when
    got = TokenProvider(fetch=fetch, cache_key=KEY).get()
    # then it waited for theirs, looking again at 5 ms, then twice as late each time up to 50 ms
    assert got.access_token.get_secret_value() == "theirs"
    assert fetch.calls == 0
    assert clock.pauses == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.05, 0.05, 0.05])


def test_a_waiter_fetches_itself_once_the_lock_was_held_for_lock_seconds_plus_5(clock: FakeClock) -> None:
    # given a lock that stays (a holder that hangs)
    cache.add(LOCK, "hung", timeout=3600)
    started = clock.now
    moments: list[float] = []

    def record() -> None:
        moments.append(clock.now - started)

    fetch = Fetches(token("mine"), before=record)
    # when
    got = TokenProvider(fetch=fetch, cache_key=KEY, lock_seconds=10).get()
    # then it waited 10 + 5 s (give or take one poll), then fetched without the lock
    assert got.access_token.get_secret_value() == "mine"
    assert len(moments) == 1
    assert 15 <= moments[0] < 15.06


def test_a_waiter_stops_waiting_when_the_lock_is_released_without_a_token(clock: FakeClock) -> None:
    # given a holder that gives up after a while (no token stored)
    cache.add(LOCK, "other", timeout=300)
    clock.at[3] = lambda: cache.delete(LOCK)
    fetch = Fetches(token("mine"))
    # when
    got = TokenProvider(fetch=fetch, cache_key=KEY).get()
    # then the waiter took the lock and fetched at once
    assert got.access_token.get_secret_value() == "mine"
    assert len(clock.pauses) == 3
    assert cache.get(LOCK) is None


# --- shared credential failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["invalid_client", "invalid_grant", "invalid_scope"])
def test_a_credential_failure_is_shared_for_5_seconds(reason: str) -> None:
    # given
    local = own_cache()
    failing = Fetches(SaltoAuthError("rejected", reason=reason))  # type: ignore[arg-type]
    provider = TokenProvider(fetch=failing, cache_key=KEY, cache=local)
    start = time.time()
    # when
    with pytest.raises(SaltoAuthError):
        provider.get()
    # then
    assert local.get(FAILED) == {"reason": reason, "summary": "rejected"}
    with time_machine.travel(start + 4.5, tick=False):
        assert local.get(FAILED) is not None
    with time_machine.travel(start + 5.5, tick=False):
        assert local.get(FAILED) is None


def test_other_failures_are_not_shared_and_a_success_clears_a_shared_one() -> None:
    # given
    cache.set(FAILED, {"reason": "invalid_grant", "summary": "old"}, timeout=60)
    failing = TokenProvider(fetch=Fetches(SaltoAuthError("odd", reason="identity_error")), cache_key=KEY)
    with pytest.raises(SaltoAuthError):
        failing.get()
    assert cache.get(FAILED) == {"reason": "invalid_grant", "summary": "old"}
    # when
    TokenProvider(fetch=Fetches(token()), cache_key=KEY).get()
    # then
    assert cache.get(FAILED) is None


def test_a_waiter_raises_the_shared_failure_with_its_summary(clock: FakeClock) -> None:
    # given a holder whose fetch failed on credentials while this caller waited
    cache.add(LOCK, "other", timeout=300)
    clock.at[2] = lambda: cache.set(FAILED, {"reason": "invalid_grant", "summary": "wrong password"}, timeout=5)
    fetch = Fetches(token())
    # when
    with pytest.raises(SaltoAuthError) as info:
        TokenProvider(fetch=fetch, cache_key=KEY).get()
    # then
    assert (info.value.reason, info.value.summary) == ("invalid_grant", "wrong password")
    assert fetch.calls == 0


# --- invalidation ----------------------------------------------------------------------------------------------


def test_invalidating_the_rejected_token_drops_it() -> None:
    # given
    fetch = Fetches(token("first"), token("second"))
    provider = TokenProvider(fetch=fetch, cache_key=KEY)
    first = provider.get()
    # when
    provider.invalidate(first)
    # then
    assert cache.get(KEY) is None
    assert provider.get().access_token.get_secret_value() == "second"
    assert fetch.calls == 2


def test_invalidating_a_token_that_is_not_cached_does_nothing() -> None:
    # given no token in the cache, and one that is not a token's shape
    provider = TokenProvider(fetch=Fetches(token()), cache_key=KEY)
    provider.invalidate(token("gone"))
    cache.set(KEY, "not-a-token")
    # when
    provider.invalidate(token("gone"))
    # then
    assert cache.get(KEY) == "not-a-token"


def test_invalidating_without_a_token_drops_whatever_is_cached() -> None:
    # given
    provider = TokenProvider(fetch=Fetches(token()), cache_key=KEY)
    provider.get()
    # when
    provider.invalidate()
    # then
    assert cache.get(KEY) is None


# --- what is cached, and for how long ----------------------------------------------------------------------------


def test_the_token_is_cached_until_60_seconds_before_it_expires() -> None:
    # given
    start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    local = own_cache()
    with time_machine.travel(start, tick=False):
        TokenProvider(fetch=Fetches(token(expires_in=3600)), cache_key=KEY, cache=local).get()
    # then
    with time_machine.travel(start + timedelta(seconds=3539.5), tick=False):
        assert local.get(KEY) is not None
    with time_machine.travel(start + timedelta(seconds=3540.5), tick=False):
        assert local.get(KEY) is None


def test_a_token_that_expires_within_the_margin_is_used_but_never_cached() -> None:
    # given
    fetch = Fetches(token("short", expires_in=30))
    # when
    got = TokenProvider(fetch=fetch, cache_key=KEY).get()
    # then
    assert got.access_token.get_secret_value() == "short"
    assert cache.get(KEY) is None


def test_a_cached_token_is_not_used_from_exactly_60_seconds_before_expiry() -> None:
    # given a token another process cached without a TTL, 60 s from expiry
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with time_machine.travel(at, tick=False):
        cache.set(KEY, stored(token("theirs", expires_in=60)), timeout=None)
        fetch = Fetches(token("mine"))
        # when
        got = TokenProvider(fetch=fetch, cache_key=KEY).get()
        # then
        assert got.access_token.get_secret_value() == "mine"
        assert fetch.calls == 1


def test_a_cached_token_just_outside_the_margin_is_used() -> None:
    # given
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with time_machine.travel(at, tick=False):
        cache.set(KEY, stored(token("theirs", expires_in=60.5)), timeout=None)
        fetch = Fetches(token("mine"))
        # when / then
        assert TokenProvider(fetch=fetch, cache_key=KEY).get().access_token.get_secret_value() == "theirs"
        assert fetch.calls == 0


def test_an_unreadable_cache_entry_is_replaced_by_a_fresh_token() -> None:
    # given
    cache.set(KEY, {"access_token": "x", "expires_at": "not a date"})
    fetch = Fetches(token("fresh"))
    # when / then
    assert TokenProvider(fetch=fetch, cache_key=KEY).get().access_token.get_secret_value() == "fresh"
    assert fetch.calls == 1


def test_another_process_reads_the_whole_token_back_from_the_cache() -> None:
    # given
    original = token("shared", scope="user_api.full_access")
    TokenProvider(fetch=Fetches(original), cache_key=KEY).get()
    fetch = Fetches(token("mine"))
    # when
    got = TokenProvider(fetch=fetch, cache_key=KEY).get()
    # then
    assert fetch.calls == 0
    assert (got.access_token.get_secret_value(), got.scope, got.token_type) == (
        "shared",
        "user_api.full_access",
        "Bearer",
    )
    assert got.expires_at == original.expires_at


def test_force_skips_the_cached_token() -> None:
    # given
    fetch = Fetches(token("first"), token("second"))
    provider = TokenProvider(fetch=fetch, cache_key=KEY)
    provider.get()
    # when / then
    assert provider.get(force=True).access_token.get_secret_value() == "second"
    assert provider.get().access_token.get_secret_value() == "second"
    assert fetch.calls == 2


def test_a_token_one_second_outside_the_margin_is_cached_for_that_second() -> None:
    # given a token that expires in 61 s: usable (and shared) for one more second
    with time_machine.travel(datetime(2026, 11, 25, 12, 0, tzinfo=UTC), tick=False):
        fetch = Fetches(token("brief", expires_in=61))
        TokenProvider(fetch=fetch, cache_key=KEY).get()
        # when another caller asks within that second
        got = TokenProvider(fetch=fetch, cache_key=KEY).get()
    # then it is the cached one
    assert got.access_token.get_secret_value() == "brief"
    assert fetch.calls == 1
