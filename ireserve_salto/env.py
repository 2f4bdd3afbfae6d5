"""Typed readers for environment variables.

Every setting comes through one of these helpers so that a bad value stops the
process at start-up with a message naming the variable, instead of surfacing
later as an obscure error deep inside a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        """The value of NAME, or of the file named by NAME_FILE (container secrets)."""
        value = self._environ.get(name)
        if value is not None:
            return value
        file_name = self._environ.get(f"{name}_FILE")
        if file_name:
            try:
                return Path(file_name).read_text().strip()
            except OSError as exc:
                raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name!r}: {exc.strerror}") from exc
        return None

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else value.strip()

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), not {value!r}")

    def number(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
        if maximum is not None and number > maximum:
            raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}")
        return number

    def items(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]

    def url(self, name: str, default: str | None, *, schemes: tuple[str, ...]) -> str | None:
        """A URL whose scheme is one of SCHEMES and which names a host (or, for sqlite, a path)."""
        value = self.text(name, default)
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        allowed = ", ".join(f"{scheme}://" for scheme in schemes)
        if parts.scheme not in schemes:
            raise ImproperlyConfigured(f"{name} must start with one of {allowed}; got {_redact(value)!r}")
        if parts.scheme != "sqlite" and not parts.hostname:
            raise ImproperlyConfigured(f"{name} has no host name: {_redact(value)!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has an invalid port: {_redact(value)!r}") from None
        return value


def _redact(url: str) -> str:
    """The URL with any password replaced, so a settings error never prints a credential."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
