"""What a console button or a lifecycle step tells the operator: an `Outcome`, and moments in local time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from django.utils import timezone

Level = Literal["success", "info", "warning", "error"]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    level: Level = "success"
    details: list[str] = field(default_factory=list)

    @classmethod
    def success(cls, message: str, details: list[str] | None = None) -> Outcome:
        return cls(True, message, "success", details or [])

    @classmethod
    def failure(cls, message: str, details: list[str] | None = None) -> Outcome:
        return cls(False, message, "error", details or [])

    @classmethod
    def warning(cls, message: str, details: list[str] | None = None) -> Outcome:
        return cls(True, message, "warning", details or [])

    @property
    def text(self) -> str:
        """Message and details as one line of plain text (for stored results and plain-text views)."""
        return " ".join([self.message, *self.details])


def format_local(moment: datetime) -> str:
    """A moment in the console's local time, with the zone's name, e.g. 25-11-2026 15:04 (Europe/Amsterdam)."""
    local = timezone.localtime(moment)
    return f"{local:%d-%m-%Y %H:%M} ({timezone.get_current_timezone_name()})"
