"""The Salto KS error taxonomy, decided once in the client, once per response.

Callers switch on three families:
- `SaltoAuthError`: getting or using a token failed because a credential is wrong (`reason` says which).
- `SaltoTransientError`: worth trying again later, after `retry_after` seconds if Salto said so (timeouts,
  connection errors, 5xx, 429, and an identity server that cannot be reached).
- `SaltoPermanentError`: Salto refused the request (or we refused to send it); repeating it unchanged fails
  again. `error_code` carries Salto's ErrorCode.
Named subclasses carry the quirks a caller acts on (the OTP family that needs re-activation, offline lock or
IQ, secret already issued, ...), so no caller reads Salto's message text to decide anything.
`str(exc)` is a human sentence that never contains a password, token, secret, PIN or OTP.

Reference: docs/salto-ks.md §2.2 (identity errors), §3.3 (error format and codes), §3.4 and §0 (retries).
"""

from __future__ import annotations

from typing import Literal

AuthReason = Literal["invalid_client", "invalid_grant", "invalid_scope", "identity_error", "unauthorized"]


class SaltoError(Exception):
    kind: str = "salto_error"
    summary: str = "Salto KS request failed"
    # False when the command never reached Salto's API (refused input, deadline passed, a connection that
    # failed to open, a failed token request): Salto cannot have acted on it.
    sent: bool = True

    def __init__(
        self,
        summary: str | None = None,
        *,
        http_status: int | None = None,
        error_code: str | None = None,
        salto_message: str | None = None,
        kind: str | None = None,
    ) -> None:
        self.http_status = http_status
        self.error_code = error_code
        self.salto_message = salto_message
        if kind is not None:
            self.kind = kind
        if summary is not None:
            self.summary = summary
        super().__init__(self._sentence())

    def _sentence(self) -> str:
        details = []
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        if self.error_code is not None:
            details.append(f"ErrorCode {self.error_code}")
        if self.salto_message:
            details.append(f"Salto says: {self.salto_message}")
        return f"{self.summary} ({', '.join(details)})" if details else self.summary

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, http_status={self.http_status!r}, "
            f"error_code={self.error_code!r}, salto_message={self.salto_message!r})"
        )


# --- Family 1: authentication --------------------------------------------------------------------------


class SaltoAuthError(SaltoError):
    """A credential is wrong (platform client, account, scope) or a fresh token was rejected."""

    kind = "auth"

    def __init__(self, summary: str | None = None, *, reason: AuthReason, **kwargs: object) -> None:
        self.reason: AuthReason = reason
        kwargs.setdefault("kind", f"auth_{reason}")
        super().__init__(summary, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, http_status={self.http_status!r})"


# --- Family 2: transient -------------------------------------------------------------------------------


class SaltoTransientError(SaltoError):
    """Timeouts, connection errors, 5xx and 429: worth retrying later (after `retry_after` seconds if set)."""

    kind = "transient"
    summary = "Salto KS is temporarily unavailable"

    def __init__(self, summary: str | None = None, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(summary, **kwargs)  # type: ignore[arg-type]


class OutcomeUnknown(SaltoTransientError):
    """The request may have reached Salto and been acted on, but no readable answer came back.

    A timeout after the request was written, a connection lost after sending, a 5xx, a 2xx whose body cannot
    be read. For a command that acts (an open) this is not "try again": whether it happened must be found
    out first (Salto's entries), or the door opens twice. `kind` says which of the four it was.
    """

    kind = "outcome_unknown"
    summary = "Salto KS may have acted, but its answer was lost or unreadable"


class IdentityUnreachable(SaltoTransientError):
    # Acceptance's identity servers were seen answering 404 on every path for hours (§1); that, 5xx, 429,
    # timeouts and refused connections mean "not reachable right now", never "bad credentials".
    kind = "identity_unreachable"
    summary = "The Salto KS identity server is not available"


# --- Family 3: permanent -------------------------------------------------------------------------------


class SaltoPermanentError(SaltoError):
    """Salto refused the request; repeating it unchanged will fail again."""

    kind = "permanent"
    summary = "Salto KS refused the request"


class InvalidInput(SaltoPermanentError, ValueError):
    """We refused to send a request because an input is malformed (caught before any HTTP call)."""

    kind = "invalid_input"
    summary = "Invalid input"
    sent = False


class DeadlinePassed(SaltoPermanentError):
    """Not sent: the caller's deadline passed before the request could go out (e.g. while getting a token).

    Nothing reached Salto; sending later would break the very deadline, so it is final like a refusal.
    """

    kind = "deadline_passed"
    summary = "Not sent: the deadline passed before the request could be sent"
    sent = False


class UnexpectedResponse(SaltoPermanentError):
    """Salto answered 2xx with a body we cannot read (shape changed, pagination loop, foreign next link)."""

    kind = "unexpected_response"
    summary = "Salto KS sent a response this client does not understand"


class ReactivationRequired(SaltoPermanentError):
    """The stored IQ secret or PIN cannot sign an open: only GET PIN / Set PIN repairs it.

    Never retried: each rejected OTP counts towards otp_blocked, which blocks the account for ~20 minutes (§3.4).
    """

    kind = "reactivation_required"


class OtpInvalid(ReactivationRequired):
    # 400 ErrorCode 3102 "…otp_invalid" for a wrong OTP; also 404 ErrorCode 2202 "Otp is invalid" when the
    # OTP is missing or the account is not activated at the lock's IQ (§7.1).
    kind = "otp_invalid"
    summary = "Salto KS rejected the one-time code (wrong IQ secret/PIN, clock skew, or account not activated)"


class OtpBlocked(ReactivationRequired):
    # 403 ErrorCode 3102 "…otp_blocked" after 3-8 bad OTPs; clears itself after ~20 minutes (§3.4).
    kind = "otp_blocked"
    summary = "Salto KS has blocked one-time codes for this account after repeated failures (wait about 20 min)"


class PinNotChanged(ReactivationRequired):
    # ErrorCode 3102 "…pin_not_changed": the IQ activation (Set PIN) was never completed (§7.3).
    kind = "pin_not_changed"
    summary = "The IQ activation is not complete (Set PIN was not done)"


class DeviceOffline(SaltoPermanentError):
    """The lock or its IQ cannot be reached by Salto right now.

    No documented ErrorCode exists (§7.1); the client recognises the words lock_offline / iq_offline (what the
    sandbox answers, 409 ErrorCode 3102) or "offline" in Salto's message.
    """

    kind = "offline"


class LockOffline(DeviceOffline):
    kind = "lock_offline"
    summary = "Salto KS reports the lock is offline"


class IQOffline(DeviceOffline):
    kind = "iq_offline"
    summary = "Salto KS reports the lock's IQ is offline"


class SecretAlreadyIssued(SaltoPermanentError):
    # 403 ErrorCode 2203 "Cannot get first secret for an already activated Iq.": Salto hands the secret
    # out once; after activation (here, in the mobile app, or elsewhere) only an IQ user reset helps (§7.3).
    kind = "secret_already_issued"
    summary = "Salto KS already issued the IQ secret for this account; reset the IQ user in Salto KS first"


class CommandForbidden(SaltoPermanentError):
    # 403 ErrorCode 3102 "…command_forbidden", e.g. GET PIN after the account is already activated (§7.3).
    kind = "command_forbidden"
    summary = "Salto KS forbids this command for the account in its current state"


class AccountLacksPermission(SaltoPermanentError):
    # 403 (often ErrorCode 2203) when the account's role lacks the permission (§3.3, §7.1).
    kind = "permission_denied"
    summary = "The Salto KS account lacks permission for this operation"


class SiteNotFound(SaltoPermanentError):
    kind = "site_not_found"
    summary = "No Salto KS site visible to this account has that Site UID"


class SiteAmbiguous(SaltoPermanentError):
    kind = "site_ambiguous"
    summary = "More than one Salto KS site visible to this account has that Site UID"


class LockNotFound(SaltoPermanentError):
    kind = "lock_not_found"
    summary = "Salto KS does not know this lock on this site"


class IQNotFound(SaltoPermanentError):
    kind = "iq_not_found"
    summary = "Salto KS does not know this IQ on this site"
