"""An integration's life: saving the operator's edits, activating, deactivating, and the re-activation flag.

Each function is one short transaction on the integration row; none talks to Salto KS. The resets that an
identity change causes live here, so a reset is decided in one place and reported as data (ConfigSaveResult),
never inferred from a message's text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from integrations.models import IDENTITY_FIELDS, Integration
from integrations.outcomes import Outcome
from integrations.selectors import activation_missing_steps

logger = logging.getLogger(__name__)

IDENTITY_LABELS = {"environment": "Environment", "site_uid": "Site UID", "username": "Username"}
SECRET_LABELS = {"password": "Password", "iq_secret": "IQ secret", "current_pin": "current pin"}

# The manual's step 4, said when the switch goes on.
ACTIVATION_TEST_HINT = (
    "Test it: move a booking to a status under Lock may open from status and run the open action (Open door on "
    "the booking); verify the lock opens and (if configured) the open time and the check-in status are updated."
)


@dataclass(frozen=True)
class ConfigSaveResult:
    """What saving the operator's edits did: messages to show, and whether the identity was reset."""

    outcomes: list[Outcome] = field(default_factory=list)
    # Environment, Site UID or Username changed: everything that belonged to the old one was cleared and
    # the integration deactivated.
    identity_reset: bool = False
    # The IQ activation was cleared (an identity or an IQ id change): the integration must not be activated
    # in the same save, and its missing steps are already said by the reset's warning.
    activation_reset: bool = False


def integration_config_save(
    *, integration: Integration, changed_fields: Iterable[str], secrets_changed: Iterable[str] = ()
) -> ConfigSaveResult:
    """Save the operator's edits; when the identity changed, reset what belonged to the old one.

    Environment, Site UID or Username changed (ADR 0005, decision 9; ADR 0004): site id, access test, IQ
    secret, current pin, IQ activation and the lock cache are cleared and the integration is deactivated, so
    acceptance details are never used against production. Mappings are kept but show as flagged until GET locks.
    Password changed (same account): the access test is reset. The site id and the IQ activation stay,
    since they belong to the account, and Salto hands out the IQ secret only once per account and IQ.
    IQ id changed: the IQ secret, current pin and activation belonged to the old IQ and are cleared.
    History rows record secrets as "changed", never their values.
    """
    changed = set(changed_fields)
    secrets = [name for name in SECRET_LABELS if name in set(secrets_changed)]
    outcomes: list[Outcome] = []
    reasons = [f"{SECRET_LABELS[name]} changed" for name in secrets]
    is_new = integration.pk is None
    identity = sorted(changed & set(IDENTITY_FIELDS))
    identity_reset = not is_new and bool(identity)
    activation_reset = identity_reset
    if identity_reset:
        labels = ", ".join(IDENTITY_LABELS[name] for name in identity)
        was_active = integration.is_active
        _reset_identity(integration)
        reasons.append(f"{labels} changed: site id, access test, IQ activation and lock list reset")
        text = (
            f"{labels} changed, so the Site ID, access test, IQ activation (IQ secret and current pin) and the "
            "lock list were reset. Resolve site ID, Test / request access, GET PIN / Set PIN and GET locks again; "
            "mappings are kept but flagged until the locks are fetched again."
        )
        if was_active:
            text += " The integration was deactivated."
        outcomes.append(Outcome.warning(text))
    else:
        if not is_new and "password" in secrets:
            integration.access_test_ok = None
            integration.access_tested_at = None
            integration.access_test_message = ""
            outcomes.append(Outcome.warning("Password changed: click Test / request access to check it."))
        if not is_new and "iq_id" in changed:
            _reset_activation(integration)
            activation_reset = True
            reasons.append("IQ id changed: IQ activation reset")
            text = (
                "IQ id changed: the IQ secret, current pin and IQ activation belonged to the old IQ and were "
                "reset. Use GET PIN and Set PIN for the new IQ, and GET locks to see which locks hang on it."
            )
            if integration.is_active:
                integration.is_active = False
                text += " The integration was deactivated."
            outcomes.append(Outcome.warning(text))
    if reasons:
        integration._change_reason = "; ".join(reasons)  # type: ignore[attr-defined]
    with transaction.atomic():
        integration.save()
        if identity_reset:
            integration.cached_locks.all().delete()
    return ConfigSaveResult(outcomes=outcomes, identity_reset=identity_reset, activation_reset=activation_reset)


def _reset_activation(integration: Integration) -> None:
    integration.iq_secret = ""
    integration.current_pin = ""
    integration.activation_state = Integration.ActivationState.NOT_ACTIVATED
    integration.activated_at = None
    integration.reactivation_reason = ""


def _reset_identity(integration: Integration) -> None:
    integration.site_id = ""
    integration.salto_user_id = ""
    integration.site_resolved_at = None
    integration.access_test_ok = None
    integration.access_tested_at = None
    integration.access_test_message = ""
    _reset_activation(integration)
    integration.locks_refreshed_at = None
    integration.locks_refresh_message = ""
    integration.is_active = False


def integration_activate(*, integration: Integration) -> Outcome:
    """Set the integration active, or refuse with every missing step listed."""
    with transaction.atomic():
        current = Integration.objects.select_for_update().get(pk=integration.pk)
        if current.is_active:
            integration.is_active = True
            return Outcome.success(f"{current} is active.")
        steps = activation_missing_steps(integration=current)
        if steps:
            return Outcome.failure("The integration cannot be activated yet. Missing steps:", steps)
        current.is_active = True
        current._change_reason = "activated"  # type: ignore[attr-defined]
        current.save(update_fields=["is_active", "updated_at"])
    integration.is_active = True
    return Outcome.success(f"{current} is active: doors may now be opened for bookings.", [ACTIVATION_TEST_HINT])


def integration_deactivate(*, integration: Integration) -> Outcome:
    """Stop all new opens at once (rollback, ADR 0005 decision 10); the configuration is kept."""
    with transaction.atomic():
        updated = Integration.objects.filter(pk=integration.pk, is_active=True).update(
            is_active=False, updated_at=timezone.now()
        )
        if updated:
            current = Integration.objects.get(pk=integration.pk)
            current._change_reason = "deactivated"  # type: ignore[attr-defined]
            # A history row for the rollback: who switched the doors off, and when.
            current.save(update_fields=["updated_at"])
    integration.is_active = False
    return Outcome.success(
        f"{integration} is inactive: no new doors will be opened through it. The configuration is kept; "
        "tick Active again to resume."
    )


@transaction.atomic
def integration_flag_reactivation(*, integration: Integration, reason: str) -> None:
    """Mark the integration "needs re-activation"; opens are refused with REASON until Set PIN succeeds again.

    INTEGRATION is the state the rejected PIN came from. If Set PIN has succeeded since (a newer
    `activated_at`), the verdict is about credentials no longer in use and is dropped: it must not undo
    the operator's fresh activation.
    """
    fresh = Integration.objects.select_for_update().get(pk=integration.pk)
    if fresh.activated_at != integration.activated_at:
        logger.info("Integration %s re-activated meanwhile; stale re-activation flag dropped", integration.pk)
        return
    if fresh.needs_reactivation and fresh.reactivation_reason == reason:
        return
    fresh.activation_state = Integration.ActivationState.NEEDS_REACTIVATION
    fresh.reactivation_reason = reason
    fresh.save(update_fields=["activation_state", "reactivation_reason", "updated_at"])
    integration.activation_state = fresh.activation_state
    integration.reactivation_reason = reason
    logger.warning("Integration %s flagged for re-activation: %s", integration.pk, reason)
