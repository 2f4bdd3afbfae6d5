"""The only place an Integration becomes a SaltoClient.

The platform's OAuth client id/secret come from settings (decision 11: the operator enters only the
Salto KS account); the account's password is decrypted from the integration here and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from locks.client import SaltoClient
from locks.environments import Environment

if TYPE_CHECKING:
    from integrations.models import Integration


def client_for_values(*, environment: str, username: str, password: str, timeout: float | None = None) -> SaltoClient:
    """A client for an account given as plain values (the stored ones, or ones about to be saved)."""
    return SaltoClient(
        environment=Environment(environment),
        # Stray spaces around a pasted username are a classic cause of invalid_grant (manual's hints).
        username=username.strip(),
        password=password,
        client_id=str(settings.SALTO_KS_CLIENT_ID),
        client_secret=str(settings.SALTO_KS_CLIENT_SECRET),
        timeout=timeout,
    )


def client_for(integration: Integration, *, timeout: float | None = None) -> SaltoClient:
    """A client for the integration's stored environment and account. Use it as a context manager.

    TIMEOUT (seconds) overrides SALTO_KS_HTTP_TIMEOUT_SECONDS for every call of this client.
    """
    return client_for_values(
        environment=integration.environment,
        username=integration.username,
        password=integration.password,
        timeout=timeout,
    )
