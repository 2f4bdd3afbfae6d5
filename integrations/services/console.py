"""The operator's console: one service per Salto KS button of the integration change page.

Resolve site ID, Test / request access, GET PIN, Set PIN and GET locks. Every service takes keyword
arguments, talks to Salto KS (through `integrations.salto`) outside any transaction, then writes its result
in a short transaction that first re-reads the row and checks the identity it used is still the stored one:
an operator may change Environment or account in another tab while a slow Salto call runs, and a result for
the old identity must never land on the new one.

Services return an `Outcome` (a message for the operator and its level); the admin only shows it. Saving,
activating and deactivating live in `lifecycle`; the reads the forms and admin need in `integrations.selectors`.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.models import CachedLock, Integration, LockMapping
from integrations.outcomes import Outcome, format_local
from integrations.salto import client_for
from integrations.selectors import mapping_target_label
from locks import errors
from locks.client import SaltoClient
from locks.clock import CLOCK_TOLERANCE_SECONDS
from locks.otp import is_valid_pin

logger = logging.getLogger(__name__)


class _IdentityChanged(Exception):
    """The integration's environment/site/account changed while we were talking to Salto."""


IDENTITY_CHANGED_MESSAGE = (
    "The Environment, Site UID or account was changed while Salto KS was being asked; the answer was "
    "discarded. Click the button again."
)


# --- helpers ------------------------------------------------------------------------------------------


def _identity(integration: Integration) -> tuple[str, ...]:
    return (
        integration.environment,
        integration.site_uid,
        integration.username,
        integration.password,
        integration.site_id,
        integration.iq_id,
    )


def _env_label(integration: Integration) -> str:
    return str(Integration.EnvironmentChoice(integration.environment).label)


def _save_guarded(
    integration: Integration, expected: tuple[str, ...], *, change_reason: str | None = None, **values: Any
) -> Integration:
    """Write VALUES on the integration row if its identity is still EXPECTED; update INTEGRATION in place."""
    with transaction.atomic():
        current = Integration.objects.select_for_update().get(pk=integration.pk)
        if _identity(current) != expected:
            raise _IdentityChanged
        for name, value in values.items():
            setattr(current, name, value)
            setattr(integration, name, value)
        if change_reason:
            current._change_reason = change_reason  # type: ignore[attr-defined]
        current.save(update_fields=[*values, "updated_at"])
    return integration


def _auth_message(exc: errors.SaltoAuthError, integration: Integration) -> str:
    env = _env_label(integration)
    if exc.reason == "invalid_grant":
        return (
            f"Bad account: Salto KS rejected the username or password in {env}. Check the Username and Password "
            "(no stray spaces), and that this account belongs to the selected Environment: an acceptance account "
            "does not exist in production and vice versa."
        )
    if exc.reason == "invalid_client":
        return (
            f"Salto KS does not accept the platform's client credentials for {env} (invalid_client). "
            "Check the client credentials (SALTO_KS_CLIENT_ID / SALTO_KS_CLIENT_SECRET, managed by the platform "
            "administrator) and that the Environment is right."
        )
    if exc.reason == "invalid_scope":
        return (
            "The platform's client may not request the Connect API scope (invalid_scope); "
            "ask Salto to enable user_api.full_access for the client."
        )
    return f"Salto KS refused access: {exc}."


def _generic_failure(exc: errors.SaltoError, integration: Integration, *, doing: str) -> str:
    if isinstance(exc, errors.SaltoAuthError):
        return _auth_message(exc, integration)
    if isinstance(exc, errors.IdentityUnreachable):
        return (
            f"The Salto KS identity server for {_env_label(integration)} cannot be reached: {exc}. "
            "Try again in a moment."
        )
    if isinstance(exc, errors.SaltoTransientError):
        return f"Salto KS could not be reached while {doing}: {exc}. Nothing was changed; try again in a moment."
    if isinstance(exc, errors.AccountLacksPermission):
        return (
            f"Error while {doing}: {exc}. Check the account's rights in Salto (use a service account with "
            "site-admin rights, not a personal address)."
        )
    return f"Error while {doing}: {exc}."


def _missing(integration: Integration, *needs: str) -> list[str]:
    texts = {
        "site_uid": "Enter the Site UID first.",
        "site_id": "Resolve site ID first (Authentication tab).",
        "iq_id": "Enter the IQ id (the UUID of the IQ gateway) first.",
        "iq_secret": "There is no IQ secret yet: click GET PIN first.",
        "current_pin": "The current pin is empty: click GET PIN, or type the PIN Salto KS sent you into current pin.",
        "username": "Enter the Username first.",
        "password": "Enter the Password first.",
    }
    return [texts[name] for name in needs if not str(getattr(integration, name) or "").strip()]


# --- Resolve site ID ----------------------------------------------------------------------------------


def site_resolve_id(*, integration: Integration) -> Outcome:
    """Look up the Site UID among the account's sites and store the site's id (the only writer of Site ID)."""
    missing = _missing(integration, "site_uid", "username", "password")
    if missing:
        return Outcome.failure("Resolve site ID: " + " ".join(missing))
    expected = _identity(integration)
    uid = integration.site_uid
    env = _env_label(integration)
    try:
        with client_for(integration) as client:
            site = client.resolve_site(uid)
    except errors.InvalidInput as exc:
        return Outcome.failure(f"Resolve site ID: {exc}; check the Site UID (e.g. NL6254340082).")
    except errors.SiteNotFound:
        return Outcome.failure(
            f"Site UID {uid} was not found among the sites account {integration.username} can see in {env}. "
            "Check the Site UID and that the Environment matches it (an acceptance site is not visible in "
            "production and vice versa). No site id after resolving → check the client credentials."
        )
    except errors.SiteAmbiguous:
        return Outcome.failure(
            f"Site UID {uid} was found more than once among the sites this account can see in {env}. "
            "The Site ID was not changed; ask Salto to sort out the duplicate site."
        )
    except errors.SaltoError as exc:
        message = _generic_failure(exc, integration, doing="resolving the site")
        if not isinstance(exc, errors.SaltoAuthError | errors.SaltoTransientError | errors.AccountLacksPermission):
            message += " An error while resolving → check the account's rights in Salto."
        return Outcome.failure(message)
    try:
        _save_guarded(integration, expected, site_id=site.id, site_resolved_at=timezone.now())
    except _IdentityChanged:
        return Outcome.failure(IDENTITY_CHANGED_MESSAGE)
    name = f" “{site.customer_reference}”" if site.customer_reference else ""
    return Outcome.success(f"Site ID resolved: Site UID {uid} is site{name} with id {site.id}.")


# --- Test / request access ----------------------------------------------------------------------------


def access_test(*, integration: Integration) -> Outcome:
    """Fetch a fresh token for the account; record and report success (with expiry) or the exact reason."""
    missing = _missing(integration, "username", "password")
    if missing:
        return Outcome.failure("Test / request access: " + " ".join(missing))
    expected = _identity(integration)
    try:
        with client_for(integration) as client:
            token = client.fetch_token(force=True)
    except errors.SaltoError as exc:
        outcome = Outcome.failure("Access failed: " + _generic_failure(exc, integration, doing="requesting access"))
    else:
        outcome = Outcome.success(
            f"Access OK: Salto KS issued a token for {integration.username} in {_env_label(integration)}, "
            f"valid until {format_local(token.expires_at)}."
        )
    try:
        _save_guarded(
            integration,
            expected,
            access_tested_at=timezone.now(),
            access_test_ok=outcome.ok,
            access_test_message=outcome.text,
        )
    except _IdentityChanged:
        return Outcome.failure(IDENTITY_CHANGED_MESSAGE)
    return outcome


# --- GET PIN ------------------------------------------------------------------------------------------


def iq_pin_get(*, integration: Integration) -> Outcome:
    """Fetch the IQ secret (first time only) and ask Salto for the current IQ PIN."""
    missing = _missing(integration, "site_id", "iq_id")
    if missing:
        return Outcome.failure("GET PIN: " + " ".join(missing))
    expected = _identity(integration)
    iq_id = integration.iq_id
    notes: list[str] = []
    try:
        with client_for(integration) as client:
            if not integration.iq_secret:
                try:
                    secret = client.get_iq_secret(integration.site_id, iq_id)
                except errors.SecretAlreadyIssued:
                    return Outcome.failure(
                        f"GET PIN: Salto KS refuses to hand out the IQ secret because account {integration.username} "
                        f"was already activated at IQ {iq_id} (here, in the Salto KS app or elsewhere). "
                        "Reset the IQ user of this account in Salto KS, then click GET PIN again."
                    )
                # Salto hands the secret out once: store it before anything else can fail.
                _save_guarded(
                    integration, expected, iq_secret=secret, change_reason="IQ secret changed (fetched by GET PIN)"
                )
                notes.append("The IQ secret was fetched and stored encrypted.")
            result = client.request_iq_pin(integration.site_id, iq_id)
    except _IdentityChanged:
        return Outcome.failure(IDENTITY_CHANGED_MESSAGE)
    except errors.IQNotFound:
        return Outcome.failure(
            f"GET PIN: IQ id {iq_id} was not found on this site. Check the IQ id (the UUID of the IQ gateway "
            "linked to the site, not its name).",
            notes,
        )
    except errors.CommandForbidden:
        return Outcome.failure(
            f"GET PIN: Salto KS refuses to send the PIN because account {integration.username} is already "
            f"activated at IQ {iq_id}. If you know the IQ's current PIN, type it into current pin and use Set PIN; "
            "otherwise reset the IQ user of this account in Salto KS.",
            notes,
        )
    except errors.SaltoError as exc:
        return Outcome.failure("GET PIN failed: " + _generic_failure(exc, integration, doing="getting the PIN"), notes)

    if result.pin is not None:
        try:
            _save_guarded(
                integration,
                expected,
                current_pin=result.pin.get_secret_value(),
                change_reason="current pin changed (filled by GET PIN)",
            )
        except _IdentityChanged:
            return Outcome.failure(IDENTITY_CHANGED_MESSAGE)
        return Outcome.success(
            "GET PIN: the IQ's current PIN was filled into current pin (stored encrypted, never shown). "
            "Now enter the desired 4-digit PIN in new pin and click Set PIN.",
            notes,
        )
    return Outcome.warning(
        f"GET PIN: Salto KS sent the current PIN by SMS to the phone number of account {integration.username}. "
        "Type it into current pin, enter the desired 4-digit PIN in new pin and click Set PIN.",
        notes,
    )


# --- Set PIN ------------------------------------------------------------------------------------------


def iq_pin_set(*, integration: Integration, new_pin: str) -> Outcome:
    """Set NEW_PIN on the IQ, signed with the OTP of the current pin and IQ secret; on success: activated."""
    new_pin = (new_pin or "").strip()
    missing = _missing(integration, "site_id", "iq_id", "iq_secret", "current_pin")
    if not is_valid_pin(new_pin):
        missing.append("Enter the desired 4-digit PIN in new pin.")
    if missing:
        return Outcome.failure("Set PIN: " + " ".join(missing) + " Nothing was changed.")
    if not is_valid_pin(integration.current_pin):
        return Outcome.failure("Set PIN: the current pin must be 4 digits. Nothing was changed.")
    expected = _identity(integration)
    clock_error = 0.0
    try:
        with client_for(integration) as client:
            asked_at = client.salto_now()
            try:
                status = client.set_iq_pin(
                    integration.site_id,
                    integration.iq_id,
                    secret=integration.iq_secret,
                    current_pin=integration.current_pin,
                    new_pin=new_pin,
                )
            finally:
                clock_error = client.otp_clock_error()
            # Reference: GET /v1.1/me/{site}/activated_iqs (docs/salto-ks.md §7.3). A 2xx alone is not proof:
            # only Salto's own record of the activation lets the new PIN become the current one.
            try:
                confirmed = _activation_confirmed(client, integration, since=asked_at, clean_answer=status == 204)
            except errors.SaltoError as exc:
                return Outcome.failure(
                    f"Set PIN: Salto KS accepted the new PIN, but the activation could not be verified ({exc}). The "
                    "old PIN is kept as current pin, though the IQ probably has the new one: click Set PIN again; "
                    "if it then says the OTP was rejected, the new PIN is active — type it into current pin."
                )
    except errors.OtpInvalid as exc:
        said = f" Salto KS said: {exc.salto_message}." if exc.salto_message else ""
        if abs(clock_error) > CLOCK_TOLERANCE_SECONDS:
            # The code was built for a time minutes away from Salto's: it says nothing about the PIN, and
            # sending the operator to retype PINs would only count towards Salto's block.
            return Outcome.failure(
                f"Set PIN failed — OTP rejected, but this server's clock is {clock_error:+.0f} s off Salto's, so "
                f"the one-time code was built for the wrong time; the current pin may well be right.{said} Nothing "
                "was changed. Click Set PIN once more: the code is now computed at Salto's time. If the server's "
                "clock keeps drifting, correct it (NTP)."
            )
        return Outcome.failure(
            "Set PIN failed — OTP rejected: the current pin is wrong (or the stored IQ secret no longer matches "
            f"this IQ). Nothing was changed.{said} Check current pin (GET PIN again if unsure); repeated wrong "
            "codes make Salto KS block OTPs for about 20 minutes."
        )
    except errors.OtpBlocked:
        return Outcome.failure(
            "Set PIN failed: Salto KS has blocked OTPs for this account after repeated wrong codes; wait about "
            "20 minutes, check current pin, then try again. Nothing was changed."
        )
    except errors.OutcomeUnknown as exc:
        return Outcome.failure(
            f"Set PIN: Salto KS did not answer properly ({exc}). The IQ may or may not have taken the new PIN; the "
            "old PIN is kept as current pin. Click Set PIN again; if it then says the OTP was rejected, the new "
            "PIN is already active — type it into current pin."
        )
    except errors.SaltoTransientError as exc:
        # Not reachable, or rate limited: the new PIN never reached the IQ.
        return Outcome.failure(
            "Set PIN failed: "
            + _generic_failure(exc, integration, doing="setting the PIN")
            + " The new PIN was not sent; the current pin is unchanged."
        )
    except errors.SaltoError as exc:
        return Outcome.failure(
            "Set PIN failed: " + _generic_failure(exc, integration, doing="setting the PIN") + " Nothing was changed."
        )
    if not confirmed:
        return Outcome.failure(
            "Set PIN: Salto KS answered, but its list of activated IQs does not show this account activated at IQ "
            f"{integration.iq_id} since the request. The old PIN is kept as current pin. Click Set PIN again; if it "
            "then says the OTP was rejected, the new PIN is already active — type it into current pin."
        )
    now = timezone.now()
    try:
        _save_guarded(
            integration,
            expected,
            current_pin=new_pin,
            activation_state=Integration.ActivationState.ACTIVATED,
            activated_at=now,
            reactivation_reason="",
            change_reason="current pin changed (Set PIN); IQ activated",
        )
    except _IdentityChanged:
        # The IQ did take the PIN; say so, since the operator will need it.
        return Outcome.failure(
            "Set PIN succeeded at Salto KS, but the integration's Environment, Site or account changed meanwhile, "
            "so it was not recorded here. The IQ's PIN is now the one you entered in new pin."
        )
    return Outcome.success(f"IQ is activated (since {format_local(now)}). The new PIN is stored as current pin.")


# Salto's activation_date and our request come from two clocks (offset measured, locks/clock.py), and Salto
# may stamp the activation a moment before answering.
ACTIVATION_DATE_MARGIN = timedelta(seconds=120)


def _activation_confirmed(
    client: SaltoClient, integration: Integration, *, since: datetime, clean_answer: bool
) -> bool:
    """Salto lists the account activated at the IQ, activated by this very request as far as can be told.

    Without Salto's documented answer (a 204), only an activation_date from this very request proves it; an older
    or missing date may belong to an earlier activation (a re-activation after a PIN change outside: whether
    Salto moves that date on a PIN change is unknown, docs/salto-ks.md §7.3).
    """
    for activated in client.list_activated_iqs(integration.site_id):
        if activated.iq_id != integration.iq_id or not activated.activated:
            continue
        when = activated.activation_date
        if clean_answer or (when is not None and _aware(when) >= since - ACTIVATION_DATE_MARGIN):
            return True
    return False


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- GET locks ----------------------------------------------------------------------------------------


def locks_refresh(*, integration: Integration) -> Outcome:
    """Replace the cached lock list with the site's locks (all pages) and report what the operator must know."""
    missing = _missing(integration, "site_id")
    if missing:
        return Outcome.failure("GET locks: " + " ".join(missing))
    expected = _identity(integration)
    try:
        with client_for(integration) as client:
            locks = client.list_locks(integration.site_id)
    except errors.SaltoError as exc:
        outcome = Outcome.failure(
            "GET locks failed: "
            + _generic_failure(exc, integration, doing="fetching the locks")
            + " The lock list was not changed."
        )
        with contextlib.suppress(_IdentityChanged):
            _save_guarded(integration, expected, locks_refresh_message=outcome.text)
        return outcome

    now = timezone.now()
    iq_id = integration.iq_id
    rows = [
        CachedLock(
            integration=integration,
            lock_id=lock.id,
            name=lock.customer_reference or lock.id,
            iq_id=lock.iq_id or "",
            iq_name=(lock.iq.customer_reference or "") if lock.iq else "",
            # Salto not saying counts as offline: the dropdown should not promise a reachable door.
            online=bool(lock.online),
            iq_online=bool(lock.iq.is_online) if lock.iq and lock.iq.is_online is not None else True,
            refreshed_at=now,
        )
        for lock in {lock.id: lock for lock in locks}.values()
    ]
    names = {row.lock_id: row.name for row in rows}
    offline = [row.name for row in rows if not row.online or not row.iq_online]
    other_iq = [row.name for row in rows if iq_id and row.iq_id and row.iq_id != iq_id]
    try:
        with transaction.atomic():
            current = Integration.objects.select_for_update().get(pk=integration.pk)
            if _identity(current) != expected:
                raise _IdentityChanged
            CachedLock.objects.filter(integration=current).delete()
            CachedLock.objects.bulk_create(rows)
            gone: list[str] = []
            for mapping in LockMapping.objects.filter(integration=current).select_related("object__parent"):
                if mapping.lock_id not in names:
                    gone.append(f"{mapping_target_label(mapping)} → {mapping.lock_name or mapping.lock_id}")
                elif mapping.lock_name != names[mapping.lock_id]:
                    mapping.lock_name = names[mapping.lock_id]  # renamed in Salto
                    mapping.save(update_fields=["lock_name"])
            details = []
            if offline:
                details.append("Offline: " + ", ".join(sorted(offline)) + ".")
            if other_iq:
                details.append("On another IQ (cannot be mapped): " + ", ".join(sorted(other_iq)) + ".")
            if not iq_id:
                details.append("Enter the IQ id to see which locks hang on this integration's IQ.")
            if gone:
                details.append("Mapped locks that no longer exist in the site: " + "; ".join(gone) + ".")
            count = len(rows)
            outcome_cls = Outcome.warning if gone else Outcome.success
            outcome = outcome_cls(f"GET locks: {count} lock{'s' if count != 1 else ''} in the site.", details)
            current.locks_refreshed_at = now
            current.locks_refresh_message = outcome.text
            current.save(update_fields=["locks_refreshed_at", "locks_refresh_message", "updated_at"])
            integration.locks_refreshed_at = now
            integration.locks_refresh_message = outcome.text
    except _IdentityChanged:
        return Outcome.failure(IDENTITY_CHANGED_MESSAGE)
    return outcome
