"""Salto's clock, measured from the Date header of its answers, and the OTP computed at Salto's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import respx
from django.core.cache import cache

from locks.client import SaltoClient
from locks.clock import CLOCK_TOLERANCE_SECONDS, ClockReading, clock_warning, known_offset, salto_time
from locks.otp import compute_otp
from tests.fake_salto import API, LOCK_ID, LOCKS_URL, SECRET, SITE_ID, body

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def test_within_the_tolerance_our_own_clock_is_used() -> None:
    reading = ClockReading(offset_seconds=CLOCK_TOLERANCE_SECONDS - 1, measured_at=NOW)
    assert not reading.is_off
    assert salto_time(reading, now=NOW) == NOW
    assert salto_time(None, now=NOW) == NOW


def test_beyond_the_tolerance_it_is_salto_time() -> None:
    reading = ClockReading(offset_seconds=-300, measured_at=NOW)
    assert reading.is_off
    assert salto_time(reading, now=NOW) == NOW - timedelta(seconds=300)
    assert clock_warning(-300) == "this server's clock is 300 s off Salto's (ahead)"
    assert clock_warning(120) == "this server's clock is 120 s off Salto's (behind)"


def test_the_client_measures_salto_clock_and_signs_the_open_at_salto_time(
    client: SaltoClient, token_route: respx.Route, httpx2_mock: respx.Router
) -> None:
    # given Salto's clock is 5 minutes ahead of ours, as its Date header says on the token answer
    salto_now = datetime.now(UTC) + timedelta(seconds=300)
    token_route.respond(
        200,
        json={"access_token": "t", "expires_in": 3600, "token_type": "Bearer"},
        headers={"Date": format_datetime(salto_now, usegmt=True)},
    )
    route = httpx2_mock.patch(f"{LOCKS_URL}/{LOCK_ID}/locking").respond(200, json={})
    # when a door is opened
    client.open_lock(SITE_ID, LOCK_ID, secret=SECRET, pin="1234")
    # then the offset is known to every process (the cache) and the OTP is the one for Salto's time
    reading = known_offset(cache, API)
    assert reading is not None
    assert 298 <= reading.offset_seconds <= 302
    sent = body(route.calls.last.request)["otp"]
    candidates = {compute_otp(secret=SECRET, pin="1234", at=salto_now + timedelta(seconds=s)) for s in range(-3, 4)}
    assert sent in candidates
    ours = {compute_otp(secret=SECRET, pin="1234", at=datetime.now(UTC) + timedelta(seconds=s)) for s in range(-5, 2)}
    assert sent not in ours


# --- the shared reading: a median of recent answers, with its age ------------------------------------------


def _answer(offset: float, at: datetime) -> None:
    from locks.clock import record_offset

    record_offset(cache, API, server_date=at + timedelta(seconds=offset), received_at=at)


def test_one_odd_answer_does_not_move_the_reading_and_a_second_agreeing_one_does() -> None:
    from locks.clock import _last_written

    for step in range(3):
        _answer(0, NOW + timedelta(seconds=step))
    # one answer (a proxy's Date header, a cached page) says 5 minutes off
    _answer(300, NOW + timedelta(seconds=5))
    reading = known_offset(cache, API, now=NOW + timedelta(seconds=6))
    assert reading is not None
    assert not reading.is_off
    assert abs(reading.offset_seconds) < 1
    # a second one agrees: the clock really is off, and the reading follows it
    _answer(300, NOW + timedelta(seconds=7))
    reading = known_offset(cache, API, now=NOW + timedelta(seconds=8))
    assert reading is not None
    assert reading.is_off
    assert 299 <= reading.offset_seconds <= 301
    # and a reading that was off from its first answer on counts at once (no history to outvote it)
    cache.clear()
    _last_written.clear()
    _answer(-200, NOW)
    reading = known_offset(cache, API, now=NOW)
    assert reading is not None
    assert reading.is_off
    _last_written.clear()


def test_a_reading_no_answer_confirmed_for_an_hour_is_gone() -> None:
    _answer(300, NOW)
    assert known_offset(cache, API, now=NOW + timedelta(minutes=59)) is not None
    assert known_offset(cache, API, now=NOW + timedelta(minutes=61)) is None


def test_the_reading_says_how_old_it_is() -> None:
    reading = ClockReading(offset_seconds=-300, measured_at=NOW, samples=3)
    assert reading.describe_age(NOW + timedelta(seconds=40)) == "measured 40 s ago"
    assert reading.describe_age(NOW + timedelta(minutes=7)) == "measured 7 min ago"
    assert reading.describe_age(NOW - timedelta(seconds=5)) == "measured 0 s ago"  # a clock that stepped back


def test_unreadable_or_old_format_samples_are_read_defensively() -> None:
    from locks.clock import clock_cache_key

    key = clock_cache_key(API)
    cache.set(key, {"offset": 120.0, "at": NOW.isoformat()})  # the single reading an older version wrote
    reading = known_offset(cache, API, now=NOW)
    assert reading is not None
    assert (reading.offset_seconds, reading.samples) == (120.0, 1)
    cache.set(key, {"samples": [["nan", NOW.isoformat()], [5, "yesterday"], [7], "x", [9.0, NOW.isoformat()]]})
    reading = known_offset(cache, API, now=NOW)
    assert reading is not None
    assert (reading.offset_seconds, reading.samples) == (9.0, 1)
    cache.set(key, "garbage")
    assert known_offset(cache, API, now=NOW) is None
