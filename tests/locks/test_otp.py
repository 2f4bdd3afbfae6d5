from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest

from locks.otp import compute_otp, is_valid_pin, pin_delta
from locks.sandbox.state import apply_delta as sandbox_apply_delta


@pytest.mark.parametrize(
    ("secret", "pin", "at", "expected"),
    [
        ("ABCDEFGHIJKLMNOP", "1234", datetime(2026, 8, 25, 7, 25, 0, tzinfo=UTC), "28a5a"),
        ("qrstuvwxyz012345", "9876", datetime(2026, 12, 31, 23, 59, 59, 874000, tzinfo=UTC), "018bb"),
        ("0123456789ABCDEF", "0000", datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC), "ea8d8"),
    ],
)
def test_it_matches_the_documented_vectors(secret: str, pin: str, at: datetime, expected: str) -> None:
    # when
    otp = compute_otp(secret=secret, pin=pin, at=at)
    # then
    assert otp == expected


def test_it_truncates_to_the_whole_second() -> None:
    # given
    start = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    # when
    first = compute_otp(secret="qrstuvwxyz012345", pin="9876", at=start)
    last = compute_otp(secret="qrstuvwxyz012345", pin="9876", at=start + timedelta(microseconds=999_999))
    next_second = compute_otp(secret="qrstuvwxyz012345", pin="9876", at=start + timedelta(seconds=1))
    # then
    assert first == last == "018bb"
    assert next_second != first


def test_it_converts_to_utc() -> None:
    # given
    amsterdam_summer = timezone(timedelta(hours=2))
    # when
    otp = compute_otp(
        secret="ABCDEFGHIJKLMNOP", pin="1234", at=datetime(2026, 8, 25, 9, 25, 0, tzinfo=amsterdam_summer)
    )
    # then
    assert otp == "28a5a"


def test_it_refuses_a_naive_datetime_and_bad_pins() -> None:
    with pytest.raises(ValueError, match="aware"):
        compute_otp(secret="ABCDEFGHIJKLMNOP", pin="1234", at=datetime(2026, 8, 25, 7, 25))
    with pytest.raises(ValueError, match="four digits"):
        compute_otp(secret="ABCDEFGHIJKLMNOP", pin="123", at=datetime(2026, 8, 25, tzinfo=UTC))


def test_it_computes_the_delta_both_ways() -> None:
    # the measured example of the API doc §7.3: 6596 with delta 6995 becomes 0601
    assert sandbox_apply_delta(old_pin="6596", delta="6995") == "0601"
    assert pin_delta(old_pin="6596", new_pin="0601") == "6995"
    assert pin_delta(old_pin="1234", new_pin="1234") == "0000"
    assert sandbox_apply_delta(old_pin="1234", delta="0000") == "1234"


@pytest.mark.parametrize(("old", "new"), [("0000", "9999"), ("9999", "0000"), ("1234", "5678"), ("0909", "9090")])
def test_it_round_trips_the_delta(old: str, new: str) -> None:
    # when
    delta = pin_delta(old_pin=old, new_pin=new)
    # then the sandbox's own copy of Salto's rule turns OLD into NEW with it
    assert sandbox_apply_delta(old_pin=old, delta=delta) == new
    assert is_valid_pin(delta)


@pytest.mark.parametrize("value", ["123", "12345", "12a4", " 1234", "", "١٢٣٤"])
def test_it_rejects_malformed_pins(value: str) -> None:
    assert not is_valid_pin(value)
    with pytest.raises(ValueError, match="four digits"):
        pin_delta(old_pin="1234", new_pin=value)


def test_it_refuses_a_time_zone_that_gives_no_offset() -> None:
    # given a tzinfo that cannot say its offset: as ambiguous as a naive datetime
    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta | None:
            return None

        def dst(self, dt: datetime | None) -> timedelta | None:
            return None

    # when / then
    with pytest.raises(ValueError, match="aware"):
        compute_otp(secret="ABCDEFGHIJKLMNOP", pin="1234", at=datetime(2026, 8, 25, 7, 25, tzinfo=NoOffset()))
