"""The small part of OData (v3 style) the Salto KS Connect API is seen to accept: `$filter` with `eq ne gt ge lt le`
joined by ` and `, `$orderby field [asc|desc]`, `$top`, `$skip`.

Values: 'text' (quotes doubled inside), true/false/null, numbers, DateTime'2026-01-01T00:00:00Z'.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class ODataError(ValueError):
    """An expression the sandbox cannot evaluate (the real API answers 400 ErrorCode 1102)."""


_CLAUSE = re.compile(
    r"""^\s*(?P<field>[A-Za-z_][A-Za-z0-9_./]*)\s+(?P<op>eq|ne|gt|ge|lt|le)\s+
        (?P<value>'(?:[^']|'')*'|DateTime'[^']*'|true|false|null|-?\d+(?:\.\d+)?)\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ODataError(f"DateTime without a time zone: {text!r}")
    return value


def _literal(raw: str) -> Any:
    low = raw.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low == "null":
        return None
    if low.startswith("datetime'"):
        try:
            return parse_datetime(raw[9:-1])
        except ValueError as exc:
            raise ODataError(str(exc)) from exc
    if raw.startswith("'"):
        return raw[1:-1].replace("''", "'")
    return float(raw) if "." in raw else int(raw)


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: Any

    def matches(self, item: dict[str, Any]) -> bool:
        current: Any = item
        for part in self.field.split("/"):
            if not isinstance(current, dict) or part not in current:
                raise ODataError(f"Unknown field {self.field!r}")
            current = current[part]
        value = self.value
        if isinstance(value, datetime) and isinstance(current, str):
            current = parse_datetime(current)
        if current is None or value is None:
            return _OPS[self.op](current, value) if self.op in ("eq", "ne") else False
        try:
            return _OPS[self.op](current, value)
        except TypeError as exc:
            raise ODataError(f"Cannot compare {self.field!r} with {value!r}") from exc


def parse_filter(expression: str | None) -> list[Clause]:
    if not expression or not expression.strip():
        return []
    clauses = []
    for part in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(part)
        if match is None:
            raise ODataError(f"Unsupported filter clause {part!r}")
        clauses.append(Clause(match["field"], match["op"].lower(), _literal(match["value"])))
    return clauses


def apply_filter(items: Iterable[dict[str, Any]], expression: str | None) -> list[dict[str, Any]]:
    clauses = parse_filter(expression)
    return [item for item in items if all(clause.matches(item) for clause in clauses)]


def apply_orderby(items: list[dict[str, Any]], expression: str | None) -> list[dict[str, Any]]:
    if not expression or not expression.strip():
        return items
    result = list(items)
    # Apply the keys right to left so the first key wins (sorted() is stable).
    for part in reversed([p.strip() for p in expression.split(",") if p.strip()]):
        words = part.split()
        field = words[0]
        direction = words[1].lower() if len(words) > 1 else "asc"
        if direction not in ("asc", "desc") or len(words) > 2:
            raise ODataError(f"Unsupported $orderby {part!r}")
        if result and any(field not in item for item in result):
            raise ODataError(f"Unknown $orderby field {field!r}")
        result.sort(key=lambda item: (item[field] is not None, item[field]), reverse=direction == "desc")
    return result


def parse_int(raw: str | None, *, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ODataError(f"{name} must be a whole number") from exc
    if value < 0:
        raise ODataError(f"{name} must not be negative")
    return value
