"""Keeping an integration healthy: the periodic health check of token, IQ and activation.

The check runs from Celery beat for every active integration so that a PIN or secret changed outside
(the Salto app, another system) is noticed before the next guest finds a closed door.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.utils import timezone

from integrations.models import Integration
from integrations.salto import client_for
from integrations.services.lifecycle import integration_flag_reactivation
from locks.errors import SaltoError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    message: str
    flagged: bool = False


def integration_health_check(*, integration: Integration) -> HealthResult:
    """Token, IQ online, and the account still activated at the IQ; the result is stored for the Activity tab."""
    result: HealthResult
    try:
        with client_for(integration) as client:
            # Reference: token (docs/salto-ks.md §2), GET /v1.1/sites/{site}/iqs/{iq} (§5),
            # GET /v1.1/me/{site}/activated_iqs (§7.3)
            client.fetch_token()
            problems: list[str] = []
            flag_reason = ""
            if integration.iq_id:
                iq = client.get_iq(integration.site_id, integration.iq_id)
                if not iq.online:
                    problems.append(f"IQ {iq.customer_reference or integration.iq_id} is offline")
                activated = client.list_activated_iqs(integration.site_id)
                still = any(a.iq_id == integration.iq_id and a.activated for a in activated)
                if integration.is_activated and not still:
                    flag_reason = "the Salto KS account is no longer activated at the IQ (PIN/secret changed outside)"
                    problems.append(flag_reason)
            if flag_reason:
                integration_flag_reactivation(integration=integration, reason=flag_reason)
            ok = not problems
            message = "Token, IQ online and activation OK." if ok else "; ".join(problems).capitalize() + "."
            result = HealthResult(ok=ok, message=message, flagged=bool(flag_reason))
    except SaltoError as exc:
        result = HealthResult(ok=False, message=f"Health check failed: {exc}")
    Integration.objects.filter(pk=integration.pk).update(
        health_checked_at=timezone.now(), health_ok=result.ok, health_message=result.message
    )
    log = logger.info if result.ok else logger.warning
    log("Health check of integration %s: %s", integration.pk, result.message)
    return result
