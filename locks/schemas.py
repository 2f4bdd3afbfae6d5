"""Pydantic models for every Salto KS payload the client reads. Unknown fields are ignored.

Reference: docs/salto-ks.md §2.1 (token), §4 (sites), §5 (IQs), §6 (locks), §7.3 (activation), §8 (entries).
Fields the sources only saw sometimes are optional, so a missing one does not break a whole list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr


class _SaltoModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Site(_SaltoModel):
    id: str
    site_uid: str | None = None
    customer_reference: str | None = None
    time_zone: str | None = None


class IQ(_SaltoModel):
    id: str
    customer_reference: str | None = None
    # None = Salto did not say; callers treat it like "not online".
    online: bool | None = None
    otp_enabled: bool | None = None
    state: str | None = None
    mac: str | None = None


class LockIQRef(_SaltoModel):
    id: str
    customer_reference: str | None = None
    is_online: bool | None = None
    otp_enabled: bool | None = None


class Lock(_SaltoModel):
    id: str
    customer_reference: str | None = None
    online: bool | None = None
    locked_state: str | None = None
    iq: LockIQRef | None = None

    @property
    def iq_id(self) -> str | None:
        return self.iq.id if self.iq else None


class ActivatedIQ(_SaltoModel):
    # GET /me/{site}/activated_iqs says "iq_id"; the per-user variant says "id" (§7.3): accept both.
    iq_id: str = Field(validation_alias=AliasChoices("iq_id", "id"))
    activated: bool = True
    activation_date: datetime | None = None


class AccessToken(_SaltoModel):
    access_token: SecretStr
    expires_at: datetime
    scope: str | None = None
    token_type: str = "Bearer"


class PinRequestResult(_SaltoModel):
    pin: SecretStr | None = None
    sent_by: Literal["body", "sms"]


class Me(_SaltoModel):
    """The account itself (GET /v1.1/me): its platform user id is the `user_id` of the entries it causes."""

    id: str
    email: str | None = None


class Entry(_SaltoModel):
    id: str
    event_category: str | None = None
    utc_date_time: datetime
    lock_id: str | None = None
    user_id: str | None = None
    access_by: str | None = None


# --- Raw response bodies (internal) -------------------------------------------------------------


class TokenResponse(_SaltoModel):
    access_token: SecretStr
    expires_in: int = Field(gt=0)
    token_type: str = "Bearer"
    scope: str | None = None


class OAuthErrorBody(_SaltoModel):
    error: str
    error_description: str | None = None


class SecretResponse(_SaltoModel):
    secret: SecretStr


class PinResponse(_SaltoModel):
    pin: SecretStr
