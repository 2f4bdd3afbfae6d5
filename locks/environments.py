"""Salto KS environments and where they live (base URLs from settings, so a sandbox can stand in)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings


class Environment(StrEnum):
    ACCEPTANCE = "acceptance"
    PRODUCTION = "production"


@dataclass(frozen=True)
class Endpoints:
    identity_url: str
    api_url: str


def endpoints_for(environment: Environment | str) -> Endpoints:
    env = Environment(environment)
    prefix = f"SALTO_KS_{env.name}"
    return Endpoints(
        identity_url=str(getattr(settings, f"{prefix}_IDENTITY_URL")).rstrip("/"),
        api_url=str(getattr(settings, f"{prefix}_API_URL")).rstrip("/"),
    )
