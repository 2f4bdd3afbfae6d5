"""Salto's clock as this server sees it: the offset measured from the Date header of every Salto answer.

The OTP is computed from the current UTC second and Salto accepts it for about 3 minutes (docs/salto-ks.md §7.2):
a server clock a few minutes off makes every open fail with otp_invalid, which looks exactly like a wrong PIN.
So the offset is measured, not assumed: each answer's Date header is a sample (shared through the cache, so the
worker and the console see the same figure), the reading is the median of the last few, and beyond
CLOCK_TOLERANCE_SECONDS the OTP is computed at Salto's time and the console says the clock is off.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.cache.backends.base import BaseCache

# Beyond this the OTP is computed at Salto's time and the offset is reported (Date has whole seconds, so
# small offsets are noise; Salto's OTP window is minutes).
CLOCK_TOLERANCE_SECONDS = 30.0
# The reading is the median of the last few answers' offsets, none older than this: one odd Date header (a
# proxy's, a cached page's) never moves it, a real change does from its second answer on, and a reading that
# no answer has confirmed for an hour is gone rather than trusted.
SAMPLES_KEPT = 3
SAMPLE_MAX_AGE_SECONDS = 3600
# This process adds a sample to the shared reading only when it differs by a second from the last one it added
# or from the reading, or when its last one is a minute old: not a cache round trip on every call of the open path.
_REWRITE_SHIFT_SECONDS = 1.0
_REWRITE_AFTER_SECONDS = 60.0
# Per cache key: the last sample this process added, the median it left, and when.
_last_written: dict[str, tuple[float, float, datetime]] = {}


@dataclass(frozen=True)
class ClockReading:
    offset_seconds: float  # Salto's time minus ours: positive when our clock is behind
    measured_at: datetime  # the newest answer it rests on
    samples: int = 1  # how many stored samples it rests on

    @property
    def is_off(self) -> bool:
        return abs(self.offset_seconds) > CLOCK_TOLERANCE_SECONDS

    def age_seconds(self, now: datetime | None = None) -> float:
        return max(0.0, ((now or datetime.now(UTC)) - self.measured_at).total_seconds())

    def describe_age(self, now: datetime | None = None) -> str:
        """'measured 40 s ago': how fresh the figure is, for the console and /healthz."""
        age = self.age_seconds(now)
        return f"measured {age:.0f} s ago" if age < 120 else f"measured {age / 60:.0f} min ago"


def clock_cache_key(api_url: str) -> str:
    return f"salto_ks:clock_offset:{api_url.rstrip('/').lower()}"


def record_offset(cache: BaseCache, api_url: str, *, server_date: datetime, received_at: datetime) -> ClockReading:
    """This answer's offset; added to the shared samples when it differs from them or the last write is old.

    An answer that agrees with the reading is not written: the samples are the figures seen, not a count.
    """
    # The Date header is truncated to the second: add half a second so the expected error is zero.
    offset = (server_date - received_at).total_seconds() + 0.5
    reading = ClockReading(offset_seconds=round(offset, 1), measured_at=received_at)
    key = clock_cache_key(api_url)
    last = _last_written.get(key)
    if last is not None:
        last_sample, last_median, written_at = last
        shifts = (abs(value - reading.offset_seconds) for value in (last_sample, last_median))
        agrees = all(shift < _REWRITE_SHIFT_SECONDS for shift in shifts)
        if agrees and (received_at - written_at).total_seconds() < _REWRITE_AFTER_SECONDS:
            return reading
    samples = [*_samples(cache.get(key), now=received_at), (reading.offset_seconds, received_at)][-SAMPLES_KEPT:]
    cache.set(key, {"samples": [[value, at.isoformat()] for value, at in samples]}, timeout=SAMPLE_MAX_AGE_SECONDS)
    _last_written[key] = (reading.offset_seconds, statistics.median(value for value, _ in samples), received_at)
    return reading


def known_offset(cache: BaseCache, api_url: str, *, now: datetime | None = None) -> ClockReading | None:
    """The shared reading: the median offset of the last SAMPLES_KEPT answers of the past hour, or None."""
    samples = _samples(cache.get(clock_cache_key(api_url)), now=now or datetime.now(UTC))[-SAMPLES_KEPT:]
    if not samples:
        return None
    # Of two, the older stands until a third answer decides: a new figure needs a second answer to agree.
    voting = samples[:-1] if len(samples) % 2 == 0 else samples
    return ClockReading(
        offset_seconds=statistics.median(value for value, _ in voting),
        measured_at=max(at for _, at in samples),
        samples=len(samples),
    )


def _samples(raw: object, *, now: datetime) -> list[tuple[float, datetime]]:
    """The stored samples, oldest first, without the unreadable and the too old."""
    if isinstance(raw, dict) and "offset" in raw:  # the single reading written before samples were kept
        raw = {"samples": [[raw.get("offset"), raw.get("at")]]}
    if not isinstance(raw, dict) or not isinstance(raw.get("samples"), list):
        return []
    cut = now - timedelta(seconds=SAMPLE_MAX_AGE_SECONDS)
    samples = []
    for item in raw["samples"]:
        try:
            value, at = float(item[0]), datetime.fromisoformat(item[1])
        except (IndexError, KeyError, TypeError, ValueError):
            continue
        if at.tzinfo is not None and math.isfinite(value) and at >= cut:
            samples.append((value, at))
    return sorted(samples, key=lambda sample: sample[1])


def salto_time(reading: ClockReading | None, *, now: datetime | None = None) -> datetime:
    """Now in Salto's time: ours, unless the measured offset is beyond the tolerance."""
    now = now or datetime.now(UTC)
    if reading is None or not reading.is_off:
        return now
    return now + timedelta(seconds=reading.offset_seconds)


def clock_warning(offset_seconds: float) -> str:
    side = "behind" if offset_seconds > 0 else "ahead"
    return f"this server's clock is {abs(offset_seconds):.0f} s off Salto's ({side})"
