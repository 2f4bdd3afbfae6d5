"""The only place an Integration becomes a SaltoClient.

The platform's OAuth client id/secret come from settings (ADR 0005, decision 11: the operator enters only the
Salto KS account); the account's password is decrypted from the integration here and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from locks.client import SaltoClient
from locks.environments import Environment
from locks.http import shared_http_client

if TYPE_CHECKING:
    from integrations.models import Integration


def client_for(integration: Integration, *, timeout: float | None = None) -> SaltoClient:
    """A client for the integration's environment and account (stored, or about to be). A context manager.

    TIMEOUT (seconds) overrides SALTO_KS_HTTP_TIMEOUT_SECONDS for every call of this client. Its connections
    come from the process's pool for the environment (locks/http.py), which closing it leaves open.
    """
    environment = Environment(integration.environment)
    return SaltoClient(
        environment=environment,
        http=shared_http_client(environment),
        username=integration.username,
        password=integration.password,
        client_id=str(settings.SALTO_KS_CLIENT_ID),
        client_secret=str(settings.SALTO_KS_CLIENT_SECRET),
        timeout=timeout,
    )
