"""Salto KS environments: which identity server and which Connect API host to talk to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings


class Environment(StrEnum):
    # Acceptance and production are separate Salto installations with their own users, sites,
    # IQs and client credentials (docs/salto-ks.md §1): credentials of one never work on the other.
    ACCEPTANCE = "acceptance"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class Endpoints:
    identity_url: str
    api_url: str


def endpoints_for(environment: Environment | str) -> Endpoints:
    """Base URLs for ENVIRONMENT, read from settings at call time so tests and the sandbox can override them.

    Reference: docs/salto-ks.md §1 (hosts; defaults live in ireserve_salto/settings.py).
    """
    env = Environment(environment)
    prefix = f"SALTO_KS_{env.name}"
    identity_url = str(getattr(settings, f"{prefix}_IDENTITY_URL"))
    api_url = str(getattr(settings, f"{prefix}_API_URL"))
    return Endpoints(identity_url=identity_url.rstrip("/"), api_url=api_url.rstrip("/"))
