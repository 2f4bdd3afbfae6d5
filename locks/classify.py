"""Which error a Salto KS answer is: decided here, once per response, for the identity server and the API.

The client calls these and raises what they return; nothing outside `locks/` looks at a status code, an
ErrorCode or the words of Salto's message again. The families and named kinds are in `locks/errors.py`.

Reference: docs/salto-ks.md §2.2 (identity errors), §3.3 (error format and codes), §3.4 (retries), §7.1 and
§7.3 (the open and activation failures).
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx2
from pydantic import ValidationError

from locks import errors
from locks.schemas import OAuthErrorBody

MAX_MESSAGE_CHARS = 300

Scrub = Callable[[str], str]

_OAUTH_SUMMARIES = {
    "invalid_client": "The platform client id/secret is not accepted by this Salto KS environment",
    "invalid_grant": "Salto KS rejected the username or password of the account",
    "invalid_scope": "The platform client may not request scope user_api.full_access",
}

# ErrorCode 3102 "Request execution failed with code: <word>" (§3.3): the word decides.
_WORDS: tuple[tuple[str, type[errors.SaltoPermanentError]], ...] = (
    ("otp_blocked", errors.OtpBlocked),
    ("otp_invalid", errors.OtpInvalid),
    ("pin_not_changed", errors.PinNotChanged),
    ("command_forbidden", errors.CommandForbidden),
)


# Failures that happen before a byte of the request reached Salto: it cannot have acted on it.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.UnsupportedProtocol)

# The largest wait a Retry-After may ask of us; anything beyond (1e20, inf) is clamped here, and the caller
# clamps again to what its own deadline allows.
MAX_RETRY_AFTER_SECONDS = 3600.0


def _not_sent(exc: errors.SaltoError) -> errors.SaltoError:
    exc.sent = False
    return exc


def transport_error(exc: httpx2.TransportError, *, identity: bool) -> errors.SaltoError:
    """No readable answer: a timeout or a connection that failed. Always transient.

    For the API, a failure once the request may have been written (read timeout, connection closed or reset
    while waiting for the answer) is OutcomeUnknown: Salto may have acted. Connecting failed: it did not.
    """
    # The token request is never the command itself: whatever happened to it, the command was not sent.
    if identity:
        if isinstance(exc, httpx2.TimeoutException):
            return _not_sent(errors.IdentityUnreachable("The Salto KS identity server did not answer in time"))
        return _not_sent(
            errors.IdentityUnreachable(f"Cannot reach the Salto KS identity server ({type(exc).__name__})")
        )
    if isinstance(exc, _NOT_SENT):
        if isinstance(exc, httpx2.TimeoutException):
            return _not_sent(
                errors.SaltoTransientError("Salto KS could not be reached in time", kind="connect_timeout")
            )
        return _not_sent(
            errors.SaltoTransientError(f"Cannot reach Salto KS ({type(exc).__name__})", kind="connection_error")
        )
    if isinstance(exc, httpx2.TimeoutException):
        return errors.OutcomeUnknown("Salto KS did not answer in time", kind="timeout")
    return errors.OutcomeUnknown(f"The connection to Salto KS was lost ({type(exc).__name__})", kind="connection_lost")


def token_error(response: httpx2.Response, *, scrub: Scrub) -> errors.SaltoError:
    """A non-2xx answer of the identity server's token endpoint (so the command itself was not sent)."""
    return _not_sent(_token_error(response, scrub=scrub))


def _token_error(response: httpx2.Response, *, scrub: Scrub) -> errors.SaltoError:
    status = response.status_code
    text = scrub(response.text)
    try:
        oauth = OAuthErrorBody.model_validate_json(response.content)
    except ValidationError:
        oauth = None
    if oauth is not None and oauth.error in _OAUTH_SUMMARIES:
        return errors.SaltoAuthError(
            _OAUTH_SUMMARIES[oauth.error],
            reason=oauth.error,  # type: ignore[arg-type]
            http_status=status,
            error_code=oauth.error,
            salto_message=scrub(oauth.error_description or "") or None,
        )
    if status == 404 or status >= 500 or status == 429:
        # Acceptance's identity servers were seen answering 404 on every path for hours (§1): not reachable
        # right now, like a 5xx or rate limiting; never a verdict on the credentials.
        return errors.IdentityUnreachable(
            http_status=status,
            salto_message=short(text) or None,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )
    return errors.SaltoAuthError(
        "The Salto KS identity server refused the token request",
        reason="identity_error",
        http_status=status,
        error_code=oauth.error if oauth else None,
        salto_message=short(text) or None,
    )


def api_error(
    response: httpx2.Response, *, not_found: type[errors.SaltoPermanentError] | None, scrub: Scrub
) -> errors.SaltoError:
    """A non-2xx answer of the Connect API (a 401 after the one re-authentication included)."""
    status = response.status_code
    code, message = error_fields(response)
    message = scrub(message)
    detail: dict[str, Any] = {"http_status": status, "error_code": code, "salto_message": message or None}
    if status == 429:
        # A rate limiter answers before the command runs: refused, clearly not acted on (§3.4).
        return errors.SaltoTransientError(
            "Salto KS is rate limiting",
            retry_after=retry_after(response.headers.get("Retry-After")),
            kind="rate_limited",
            **detail,
        )
    if status >= 500:
        # A server error may come after the command ran (the door opened, then the answer failed).
        return errors.OutcomeUnknown(
            "Salto KS answered with a server error",
            retry_after=retry_after(response.headers.get("Retry-After")),
            kind="server_error",
            **detail,
        )
    if status == 401:
        return errors.SaltoAuthError("Salto KS rejected the token", reason="unauthorized", **detail)
    words = (message or "").lower()
    for word, kind in _WORDS:
        if word in words:
            return kind(**detail)
    if code == "2202" and "otp" in words:
        # 404 2202 "Otp is invalid" when the OTP is missing or the account is not activated (§7.1).
        return errors.OtpInvalid(**detail)
    if code == "2203" and "secret" in words:
        return errors.SecretAlreadyIssued(**detail)
    if "offline" in words:
        # No documented code for an offline lock or IQ (§7.1): the words decide, here and nowhere else.
        iq = "iq_offline" in words or "iq offline" in words
        return (errors.IQOffline if iq else errors.LockOffline)(**detail)
    if status == 403:
        return errors.AccountLacksPermission(**detail)
    if status == 404 and not_found is not None:
        return not_found(**detail)
    if status == 404:
        return errors.SaltoPermanentError("Salto KS does not know this resource", kind="not_found", **detail)
    return errors.SaltoPermanentError(**detail)


def json_or_none(response: httpx2.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def error_fields(response: httpx2.Response) -> tuple[str | None, str]:
    """Salto's ErrorCode (as a string; observed both "3102" and 3102) and Message, from whatever body came."""
    body = json_or_none(response)
    if isinstance(body, dict):
        lowered = {str(k).lower(): v for k, v in body.items()}
        code = lowered.get("errorcode")
        message = lowered.get("message") or lowered.get("detail") or lowered.get("title") or ""
        return (str(code) if code is not None else None), short(str(message))
    if isinstance(body, str):
        return None, short(body)
    # Plain text, e.g. "API calls quota exceeded! maximum admitted 3 per 1m." (§3.3), or HTML.
    text = response.text if "html" not in response.headers.get("content-type", "") else ""
    return None, short(text)


def short(text: str) -> str:
    text = " ".join(text.split())
    return text[:MAX_MESSAGE_CHARS] + ("…" if len(text) > MAX_MESSAGE_CHARS else "")


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds in [0, MAX_RETRY_AFTER_SECONDS] (delta-seconds or an HTTP date); None if unreadable.

    Read defensively: a negative value or a date in the past is 0, a huge value or `inf` is the cap, NaN and
    anything else unreadable is None (no advice).
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def server_date(response: httpx2.Response) -> datetime | None:
    """The moment Salto's server says it answered (its Date header), or None when missing or unreadable."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
