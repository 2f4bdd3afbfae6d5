"""The Salto KS one-time password ("Code") and the PIN delta used to set an IQ PIN.

Reference: docs/salto-ks.md §7.2 (OTP formula, door-proven by two unrelated integrators) and
§0 / §7.3 (delta convention measured by S6). Keep both here so a change happens in one place.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

_PIN = re.compile(r"[0-9]{4}")


def is_valid_pin(value: str) -> bool:
    """True for exactly four ASCII digits (the IQ PIN format)."""
    return isinstance(value, str) and _PIN.fullmatch(value) is not None


def compute_otp(*, secret: str, pin: str, at: datetime) -> str:
    """md5(UTC YYYYmmddHHMMSS + secret + pin), first five hex characters.

    The timestamp is the whole UTC second, truncated (never rounded): 23:59:59.874 is 23:59:59.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive datetime is ambiguous; guessing the zone would give an OTP off by hours.
        raise ValueError("compute_otp needs an aware datetime")
    if not is_valid_pin(pin):
        raise ValueError("the PIN must be four digits")
    if not secret:
        raise ValueError("the IQ secret is empty")
    stamp = at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    # md5 is what Salto uses here; it is a protocol detail, not our choice of hash.
    return hashlib.md5((stamp + secret + pin).encode(), usedforsecurity=False).hexdigest()[:5]


def pin_delta(*, old_pin: str, new_pin: str) -> str:
    """The delta that turns OLD_PIN into NEW_PIN: each digit (old - new) mod 10. "0000" keeps the PIN."""
    _require_pins(old_pin, new_pin)
    return "".join(str((int(o) - int(n)) % 10) for o, n in zip(old_pin, new_pin, strict=True))


def _require_pins(*values: str) -> None:
    for value in values:
        if not is_valid_pin(value):
            raise ValueError("PINs and deltas must be four digits")
