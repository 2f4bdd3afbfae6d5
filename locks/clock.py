"""Salto's clock as this server sees it: the offset measured from the Date header of every Salto answer.

The OTP is computed from the current UTC second and Salto accepts it for about 3 minutes (docs/salto-ks.md §7.2):
a server clock a few minutes off makes every open fail with otp_invalid, which looks exactly like a wrong PIN.
So the offset is measured, not assumed: each answer's Date header updates it (shared through the cache, so the
worker and the console see the same figure), and beyond CLOCK_TOLERANCE_SECONDS the OTP is computed at Salto's
time and the console says the clock is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.cache.backends.base import BaseCache

# Beyond this the OTP is computed at Salto's time and the offset is reported (Date has whole seconds, so
# small offsets are noise; Salto's OTP window is minutes).
CLOCK_TOLERANCE_SECONDS = 30.0
_KEEP_SECONDS = 24 * 3600
# This process wrote the shared reading: again only when it moves by a second or is a minute old.
_REWRITE_SHIFT_SECONDS = 1.0
_REWRITE_AFTER_SECONDS = 60.0
_last_written: dict[str, ClockReading] = {}


@dataclass(frozen=True)
class ClockReading:
    offset_seconds: float  # Salto's time minus ours: positive when our clock is behind
    measured_at: datetime

    @property
    def is_off(self) -> bool:
        return abs(self.offset_seconds) > CLOCK_TOLERANCE_SECONDS


def clock_cache_key(api_url: str) -> str:
    return f"salto_ks:clock_offset:{api_url.rstrip('/').lower()}"


def record_offset(cache: BaseCache, api_url: str, *, server_date: datetime, received_at: datetime) -> ClockReading:
    # The Date header is truncated to the second: add half a second so the expected error is zero.
    offset = (server_date - received_at).total_seconds() + 0.5
    reading = ClockReading(offset_seconds=round(offset, 1), measured_at=received_at)
    # Every Salto answer is a reading, but the shared copy only needs a write when it moved or is getting old:
    # not a cache round trip on every call of the open path.
    key = clock_cache_key(api_url)
    last = _last_written.get(key)
    moved = last is None or abs(last.offset_seconds - reading.offset_seconds) >= _REWRITE_SHIFT_SECONDS
    if moved or (received_at - last.measured_at).total_seconds() >= _REWRITE_AFTER_SECONDS:  # type: ignore[union-attr]
        cache.set(key, {"offset": reading.offset_seconds, "at": received_at.isoformat()}, timeout=_KEEP_SECONDS)
        _last_written[key] = reading
    return reading


def known_offset(cache: BaseCache, api_url: str) -> ClockReading | None:
    raw = cache.get(clock_cache_key(api_url))
    if not isinstance(raw, dict):
        return None
    try:
        return ClockReading(offset_seconds=float(raw["offset"]), measured_at=datetime.fromisoformat(raw["at"]))
    except (KeyError, TypeError, ValueError):
        return None


def salto_time(reading: ClockReading | None, *, now: datetime | None = None) -> datetime:
    """Now in Salto's time: ours, unless the measured offset is beyond the tolerance."""
    now = now or datetime.now(UTC)
    if reading is None or not reading.is_off:
        return now
    return now + timedelta(seconds=reading.offset_seconds)


def clock_warning(offset_seconds: float) -> str:
    side = "behind" if offset_seconds > 0 else "ahead"
    return f"this server's clock is {abs(offset_seconds):.0f} s off Salto's ({side})"
