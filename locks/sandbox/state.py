"""The sandbox's world: accounts, the demo site, IQs, locks, per-(account, IQ) activation, tokens, opens, faults.

All reads and writes go through `SandboxState` methods holding one lock, because the server's event loop runs in
one thread while tests poke the state from others. Handlers in app.py never touch the fields directly.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from locks.sandbox import demo

SECRET_ALPHABET = string.ascii_letters + string.digits
SCOPE_CONNECT = "user_api.full_access"
ALLOWED_EXTRA_SCOPES = frozenset({"openid", "profile", "offline_access"})
TOKEN_LIFETIME_SECONDS = 3600
MAX_CLOCK_OFFSET_SECONDS = 7 * 24 * 3600


def otp_at(*, secret: str, pin: str, at: datetime) -> str:
    """Salto's OTP (API doc §7.2): md5(UTC YYYYmmddHHMMSS + secret + pin), first 5 hex characters.

    Deliberately a separate implementation from locks/otp.py, so contract tests compare two of them.
    """
    stamp = at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return hashlib.md5((stamp + secret + pin).encode(), usedforsecurity=False).hexdigest()[:5]


def apply_delta(*, old_pin: str, delta: str) -> str:
    """API doc §0: new digit = (old digit - delta digit) mod 10."""
    return "".join(str((int(o) - int(d)) % 10) for o, d in zip(old_pin, delta, strict=True))


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(16))


class SaltoFailure(Exception):
    """Raised by state methods; app.py turns it into Salto's error body {"ErrorCode", "Message"}."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def command_failed(status: int, code: str) -> SaltoFailure:
    return SaltoFailure(status, "3102", f"Request execution failed with code: {code}")


@dataclass
class Account:
    username: str
    password: str
    user_id: str
    first_name: str
    last_name: str


@dataclass
class IQ:
    id: str
    name: str
    mac: str
    online: bool
    otp_enabled: bool


@dataclass
class Lock:
    id: str
    name: str
    iq_id: str
    mac: str
    online: bool
    locked_state: str = "locked"


@dataclass
class Activation:
    """One account at one IQ (API doc §7.3)."""

    secret: str
    pin: str
    first_secret_taken: bool = False
    activated: bool = False
    activation_date: datetime | None = None
    failed_otp_count: int = 0
    blocked_until: datetime | None = None


@dataclass
class Token:
    username: str
    client_id: str
    scope: str
    expires_at: datetime


@dataclass
class Fault:
    """An injected misbehaviour for requests whose path contains `path_contains` (all requests when empty).

    Before acting (the default) the request never reaches its handler: nothing happens at Salto. With
    `after_acting` the handler runs first (a PATCH .../locking really opens the door and records the open and its
    entry) and only then is the answer delayed, replaced by `status`/`body`, or the connection dropped: the
    client cannot tell whether the door opened. With `act_late` the request is taken in at once and acted on
    after `delay_seconds` whether or not the client still waits for the answer: Salto acting after our timeout.
    """

    path_contains: str = ""
    method: str | None = None
    status: int | None = None
    retry_after: float | str | None = None  # seconds, or a header value sent verbatim (an HTTP date)
    delay_seconds: float = 0.0
    drop_connection: bool = False
    body: str | None = None
    content_type: str | None = None  # of `body`; None: text/plain
    after_acting: bool = False
    act_late: bool = False
    times: int | None = 1  # None: until cleared
    served: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path_contains": self.path_contains,
            "method": self.method,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_seconds": self.delay_seconds,
            "drop_connection": self.drop_connection,
            "body": self.body,
            "content_type": self.content_type,
            "after_acting": self.after_acting,
            "act_late": self.act_late,
            "times": self.times,
            "served": self.served,
        }


@dataclass
class OpenRecord:
    lock_id: str
    lock_name: str
    at: datetime
    username: str
    locked_state: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "lock_id": self.lock_id,
            "lock_name": self.lock_name,
            "at": iso(self.at),
            "username": self.username,
            "locked_state": self.locked_state,
        }


@dataclass
class SandboxConfig:
    page_size: int = demo.DEMO_PAGE_SIZE
    otp_block_threshold: int = 5
    otp_block_seconds: float = 20 * 60
    otp_window_past_seconds: int = 180
    otp_window_future_seconds: int = 60
    # An entry shows on GET .../entries only this long after its utc_date_time (Salto's event pipeline lags).
    entries_delay_seconds: float = 0.0
    # The sandbox's clock runs this far from the machine's (negative: behind): OTPs, entries, tokens, Date headers.
    clock_offset_seconds: float = 0.0


@dataclass
class _World:
    accounts: dict[str, Account] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=dict)
    iqs: dict[str, IQ] = field(default_factory=dict)
    locks: dict[str, Lock] = field(default_factory=dict)
    activations: dict[tuple[str, str], Activation] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    refresh_tokens: dict[str, Token] = field(default_factory=dict)
    token_requests: int = 0
    token_requests_by_grant: dict[str, int] = field(default_factory=dict)
    tokens_issued: int = 0
    opens: list[OpenRecord] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)


def _demo_world() -> _World:
    world = _World()
    world.clients[demo.DEMO_CLIENT_ID] = demo.DEMO_CLIENT_SECRET
    world.accounts[demo.DEMO_USERNAME.lower()] = Account(
        demo.DEMO_USERNAME, demo.DEMO_PASSWORD, demo.DEMO_USER_ID, demo.DEMO_FIRST_NAME, demo.DEMO_LAST_NAME
    )
    for iq in demo.DEMO_IQS:
        world.iqs[iq.id] = IQ(iq.id, iq.name, iq.mac, iq.online, iq.otp_enabled)
    for lock in demo.DEMO_LOCKS:
        world.locks[lock.id] = Lock(lock.id, lock.name, lock.iq_id, lock.mac, lock.online)
    return world


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SandboxState:
    """Thread-safe state of one sandbox. `clock` can be replaced in tests (e.g. to pass a block's expiry)."""

    def __init__(self, *, config: SandboxConfig | None = None, clock: Callable[[], datetime] = _utcnow) -> None:
        self._lock = threading.RLock()
        self.config = config or SandboxConfig()
        self.clock = clock
        self._world = _demo_world()

    # --- control -------------------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._world = _demo_world()
            self.config = SandboxConfig()

    def configure(self, **values: Any) -> SandboxConfig:
        with self._lock:
            converted: dict[str, Any] = {}
            for name, value in values.items():
                if not hasattr(self.config, name):
                    raise ValueError(f"unknown setting {name!r}")
                converted[name] = type(getattr(self.config, name))(value)
                if isinstance(converted[name], float) and not math.isfinite(converted[name]):
                    raise ValueError(f"{name} must be a finite number")
            if converted.get("entries_delay_seconds", 0) < 0:
                raise ValueError("entries_delay_seconds must not be negative")
            if abs(converted.get("clock_offset_seconds", 0)) > MAX_CLOCK_OFFSET_SECONDS:
                raise ValueError(f"clock_offset_seconds must be within ±{MAX_CLOCK_OFFSET_SECONDS}")
            for name, value in converted.items():
                setattr(self.config, name, value)
            return self.config

    def now(self) -> datetime:
        """The sandbox's (Salto's) now: `clock` plus `config.clock_offset_seconds`."""
        return self.clock() + timedelta(seconds=self.config.clock_offset_seconds)

    # --- persistence (the demo keeps IQ activations across restarts, as a real Salto site would) ----------

    def export_activations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "username": username,
                    "iq_id": iq_id,
                    "secret": activation.secret,
                    "pin": activation.pin,
                    "first_secret_taken": activation.first_secret_taken,
                    "activated": activation.activated,
                    "activation_date": iso(activation.activation_date) if activation.activation_date else None,
                }
                for (username, iq_id), activation in self._world.activations.items()
            ]

    def import_activations(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                date = row.get("activation_date")
                self._world.activations[(str(row["username"]), str(row["iq_id"]))] = Activation(
                    secret=str(row["secret"]),
                    pin=str(row["pin"]),
                    first_secret_taken=bool(row["first_secret_taken"]),
                    activated=bool(row["activated"]),
                    activation_date=datetime.fromisoformat(date) if date else None,
                )

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._world.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._world.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._world.faults]

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first matching fault, counted as served (and dropped once used up)."""
        with self._lock:
            for fault in self._world.faults:
                if fault.path_contains not in path or (fault.method and fault.method.upper() != method):
                    continue
                fault.served += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._world.faults.remove(fault)
                return Fault(**{**fault.as_dict()})
            return None

    def record_request(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._world.requests.append({"method": method, "path": path, "status": status, "at": iso(self.now())})
            del self._world.requests[:-500]

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._world.requests)

    def set_lock_online(self, lock_id: str, online: bool) -> None:
        with self._lock:
            self._lock_or_fail(lock_id).online = online

    def set_iq_online(self, iq_id: str, online: bool) -> None:
        with self._lock:
            self._iq_or_fail(iq_id).online = online

    def change_pin_outside(self, iq_id: str, *, username: str = demo.DEMO_USERNAME, pin: str | None = None) -> str:
        """Someone changed the account's IQ PIN elsewhere (app, another console): stored PINs stop working."""
        with self._lock:
            activation = self._activation(username, self._iq_or_fail(iq_id).id)
            if pin is None:
                pin = activation.pin
                while pin == activation.pin:
                    pin = f"{secrets.randbelow(10000):04d}"
            elif not (len(pin) == 4 and pin.isdigit()):
                raise ValueError("pin must be 4 digits")
            activation.pin = pin
            return pin

    def reset_iq_user(self, iq_id: str, *, username: str = demo.DEMO_USERNAME) -> None:
        """An IQ reset for this account in Salto: a new secret can be fetched and the account activated again."""
        with self._lock:
            self._iq_or_fail(iq_id)
            self._world.activations[(username.lower(), iq_id)] = Activation(new_secret(), demo.DEMO_INITIAL_PIN)

    def activate(self, iq_id: str, *, username: str = demo.DEMO_USERNAME) -> dict[str, str]:
        """Shortcut for tests: mark the account activated at the IQ and return its secret and PIN."""
        with self._lock:
            activation = self._activation(username, self._iq_or_fail(iq_id).id)
            activation.first_secret_taken = True
            activation.activated = True
            activation.activation_date = self.now()
            return {"secret": activation.secret, "pin": activation.pin}

    def expire_tokens(self) -> int:
        with self._lock:
            count = len(self._world.tokens)
            self._world.tokens.clear()
            return count

    def token_request_count(self) -> dict[str, Any]:
        with self._lock:
            return {
                "count": self._world.token_requests,
                "by_grant_type": dict(self._world.token_requests_by_grant),
                "issued": self._world.tokens_issued,
            }

    def opens(self) -> list[dict[str, Any]]:
        with self._lock:
            return [o.as_dict() for o in self._world.opens]

    def activation_view(self, iq_id: str, username: str = demo.DEMO_USERNAME) -> dict[str, Any]:
        with self._lock:
            a = self._activation(username, iq_id)
            return {
                "username": username,
                "iq_id": iq_id,
                "secret": a.secret,
                "pin": a.pin,
                "first_secret_taken": a.first_secret_taken,
                "activated": a.activated,
                "activation_date": iso(a.activation_date) if a.activation_date else None,
                "failed_otp_count": a.failed_otp_count,
                "blocked_until": iso(a.blocked_until) if a.blocked_until else None,
            }

    def summary(self) -> dict[str, Any]:
        with self._lock:
            w = self._world
            return {
                "now": iso(self.now()),
                "config": vars(self.config).copy(),
                "site": {"id": demo.DEMO_SITE_ID, "site_uid": demo.DEMO_SITE_UID, "name": demo.DEMO_SITE_NAME},
                "accounts": [a.username for a in w.accounts.values()],
                "iqs": [
                    {"id": i.id, "name": i.name, "online": i.online, "otp_enabled": i.otp_enabled}
                    for i in w.iqs.values()
                ],
                "locks": [
                    {
                        "id": lk.id,
                        "name": lk.name,
                        "iq_id": lk.iq_id,
                        "online": lk.online,
                        "iq_online": w.iqs[lk.iq_id].online,
                        "locked_state": lk.locked_state,
                        "opens": sum(1 for o in w.opens if o.lock_id == lk.id),
                    }
                    for lk in w.locks.values()
                ],
                "activations": [self.activation_view(iq_id, user) for (user, iq_id) in w.activations],
                "tokens": {**self.token_request_count(), "active": len(w.tokens)},
                "opens": [o.as_dict() for o in w.opens],
                "faults": [f.as_dict() for f in w.faults],
                "outbox": list(w.outbox),
            }

    # --- identity ------------------------------------------------------------------------------------------

    def count_token_request(self, grant_type: str) -> None:
        with self._lock:
            self._world.token_requests += 1
            by_grant = self._world.token_requests_by_grant
            by_grant[grant_type] = by_grant.get(grant_type, 0) + 1

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        with self._lock:
            expected = self._world.clients.get(client_id)
            return expected is not None and secrets.compare_digest(expected, client_secret)

    def account_for_login(self, username: str, password: str) -> Account | None:
        with self._lock:
            account = self._world.accounts.get(username.strip().lower())
            if account is None or not secrets.compare_digest(account.password, password):
                return None
            return account

    def issue_token(self, *, username: str, client_id: str, scope: str) -> dict[str, Any]:
        with self._lock:
            access = secrets.token_urlsafe(32)
            expires_at = self.now() + timedelta(seconds=TOKEN_LIFETIME_SECONDS)
            self._world.tokens[access] = Token(username, client_id, scope, expires_at)
            self._world.tokens_issued += 1
            body: dict[str, Any] = {
                "access_token": access,
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "token_type": "Bearer",
                "scope": scope,
            }
            if "offline_access" in scope.split():
                refresh = secrets.token_urlsafe(32)
                self._world.refresh_tokens[refresh] = Token(username, client_id, scope, expires_at)
                body["refresh_token"] = refresh
            return body

    def redeem_refresh_token(self, refresh_token: str, client_id: str) -> Token | None:
        """One-time use, as IdentityServer's default: the old refresh token stops working."""
        with self._lock:
            token = self._world.refresh_tokens.get(refresh_token)
            if token is None or token.client_id != client_id:
                return None
            del self._world.refresh_tokens[refresh_token]
            return token

    def account_for_token(self, access_token: str) -> Account | None:
        with self._lock:
            token = self._world.tokens.get(access_token)
            if token is None:
                return None
            if token.expires_at <= self.now():
                del self._world.tokens[access_token]
                return None
            return self._world.accounts.get(token.username.lower())

    # --- API -----------------------------------------------------------------------------------------------

    def site_json(self) -> dict[str, Any]:
        with self._lock:
            w = self._world
            return {
                "id": demo.DEMO_SITE_ID,
                "site_uid": demo.DEMO_SITE_UID,
                "customer_reference": demo.DEMO_SITE_NAME,
                "country_code": "NL",
                "time_zone": demo.DEMO_TIME_ZONE,
                "active_user_amount": len(w.accounts),
                "subscribed_user_amount": 10,
                "subscription_valid": True,
                "active_iq_amount": len(w.iqs),
                "pin_enabled": True,
                "installation_state": "released",
                "mkey_compatible": True,
                "store_events_ttl": "90.00:00:00",
                "owner": {
                    "id": demo.DEMO_USER_ID,
                    "first_name": demo.DEMO_FIRST_NAME,
                    "last_name": demo.DEMO_LAST_NAME,
                    "email": demo.DEMO_USERNAME,
                    "tag_number": None,
                    "image_url": None,
                    "is_managed_by_current_site": False,
                    "has_profile": True,
                },
            }

    def me_json(self, account: Account) -> dict[str, Any]:
        return {
            "id": account.user_id,
            "first_name": account.first_name,
            "last_name": account.last_name,
            "email": account.username,
            "phone": None,
            "language": "en",
            "tag_number": None,
        }

    def check_site(self, site_id: str) -> None:
        try:
            uuid.UUID(site_id)
        except ValueError:
            # Observed: a Site UID (or anything not a UUID) in the path gives 400 1100 (API doc §4).
            raise SaltoFailure(400, "1100", f"The value '{site_id}' is not valid.") from None
        if site_id.lower() != demo.DEMO_SITE_ID:
            raise SaltoFailure(404, "2202", "Site not found")

    def _iq_json(self, iq: IQ) -> dict[str, Any]:
        return {
            "id": iq.id,
            "customer_reference": iq.name,
            "time_zone": demo.DEMO_TIME_ZONE,
            "mac": iq.mac,
            "operator": None,
            "state": "active",
            "online": iq.online,
            "signal_strength": 21 if iq.online else 0,
            "revision": "2.0",
            "led_enabled": True,
            "data_sync_state": "not_synced",
            "restore_required": False,
            "reset_date": None,
            "otp_enabled": iq.otp_enabled,
        }

    def _lock_json(self, lock: Lock) -> dict[str, Any]:
        iq = self._world.iqs[lock.iq_id]
        return {
            "id": lock.id,
            "customer_reference": lock.name,
            "mac": lock.mac,
            "floor": None,
            "lock_type": "escutcheon_pin",
            "locked_state": lock.locked_state,
            # A lock is online when it is reachable through its IQ.
            "online": lock.online and iq.online,
            "iq_link_state": "attached",
            "communication_type": "rf_net",
            "battery_level": "fresh",
            "left_open_alarm": False,
            "intrusion_alarm": False,
            "privacy_mode": False,
            "tag_registration_state": "not_started",
            "offline_access_keys_limit": 39,
            "offline_access_keys_count": 0,
            "easy_office_mode_schedule": None,
            "iq": {
                "id": iq.id,
                "customer_reference": iq.name,
                "mac_address": iq.mac,
                "is_online": iq.online,
                "revision": "2.0",
                "otp_enabled": iq.otp_enabled,
            },
            "repeater": None,
        }

    def iqs_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._iq_json(iq) for iq in self._world.iqs.values()]

    def iq_json(self, iq_id: str) -> dict[str, Any]:
        with self._lock:
            return self._iq_json(self._iq_or_fail(iq_id))

    def locks_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._lock_json(lock) for lock in self._world.locks.values()]

    def lock_json(self, lock_id: str) -> dict[str, Any]:
        with self._lock:
            return self._lock_json(self._lock_or_fail(lock_id))

    def entries_json(self) -> list[dict[str, Any]]:
        """The entries visible now: each one `entries_delay_seconds` after its utc_date_time."""
        with self._lock:
            visible_until = self.now() - timedelta(seconds=self.config.entries_delay_seconds)
            return [
                dict(e)
                for e in self._world.entries
                if datetime.fromisoformat(e["utc_date_time"].replace("Z", "+00:00")) <= visible_until
            ]

    def get_secret(self, account: Account, iq_id: str) -> str:
        with self._lock:
            activation = self._activation(account.username, self._iq_or_fail(iq_id).id)
            if activation.activated:
                raise SaltoFailure(403, "2203", "Cannot get first secret for an already activated Iq.")
            activation.first_secret_taken = True
            return activation.secret

    def request_pin(self, account: Account, iq_id: str, *, send_email: bool) -> str | None:
        """The IQ PIN in the body (our product decision), or None after 'mailing' it (send_email=true → 204)."""
        with self._lock:
            activation = self._activation(account.username, self._iq_or_fail(iq_id).id)
            if activation.activated:
                raise command_failed(403, "command_forbidden")
            if send_email:
                self._world.outbox.append(
                    {"to": account.username, "iq_id": iq_id, "pin": activation.pin, "at": iso(self.now())}
                )
                return None
            return activation.pin

    def set_pin(self, account: Account, iq_id: str, *, otp: str | None, delta: str | None) -> None:
        with self._lock:
            activation = self._activation(account.username, self._iq_or_fail(iq_id).id)
            if not otp:
                raise SaltoFailure(400, "1100", "The otp field is required.")
            if delta is None or len(delta) != 4 or not delta.isdigit():
                raise SaltoFailure(400, "1101", "Validation failed: delta must be 4 digits.")
            self._verify_otp(activation, otp)
            activation.pin = apply_delta(old_pin=activation.pin, delta=delta)
            if not activation.activated:
                activation.activated = True
                activation.activation_date = self.now()

    def activated_iqs(self, account: Account) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "iq_id": iq_id,
                    "activation_date": iso(a.activation_date) if a.activation_date else None,
                    "activated": True,
                }
                for (user, iq_id), a in self._world.activations.items()
                if user == account.username.lower() and a.activated
            ]

    def operate_lock(self, account: Account, lock_id: str, *, locked_state: Any, otp: Any) -> None:
        """PATCH .../locking. Order of checks is ours where the real API is unknown (docs/salto-ks.md)."""
        with self._lock:
            lock = self._lock_or_fail(lock_id)
            if locked_state not in ("unlocked", "locked", "office_mode"):
                raise SaltoFailure(400, "1100", "The locked_state field is required.")
            iq = self._world.iqs[lock.iq_id]
            if iq.otp_enabled:
                activation = self._activation(account.username, iq.id)
                if not otp:
                    raise SaltoFailure(404, "2202", "Otp is invalid")
                self._raise_if_blocked(activation)
                if not activation.activated:
                    raise command_failed(400, "pin_not_changed")
            # Our choice: refuse offline before checking the OTP, so an offline door never burns OTP attempts.
            if not iq.online:
                raise command_failed(409, "iq_offline")
            if not lock.online:
                raise command_failed(409, "lock_offline")
            if iq.otp_enabled:
                self._verify_otp(activation, str(otp))
            now = self.now()
            if locked_state == "unlocked":
                # The lock re-locks itself after a few seconds, so its state stays "locked".
                self._world.opens.append(OpenRecord(lock.id, lock.name, now, account.username, locked_state))
                self._world.entries.append(self._entry(lock, iq, account, now))
            else:
                lock.locked_state = locked_state

    # --- internals (caller holds the lock) -----------------------------------------------------------------

    def _entry(self, lock: Lock, iq: IQ, account: Account, now: datetime) -> dict[str, Any]:
        local = now.astimezone(ZoneInfo(demo.DEMO_TIME_ZONE)).replace(tzinfo=None)
        return {
            "id": str(uuid.uuid4()),
            "event_category": "lock_opened",
            "event_detail": None,
            "utc_date_time": iso(now),
            "local_date_time": local.isoformat(timespec="milliseconds"),
            "lock_id": lock.id,
            "lock_mac_address": lock.mac,
            "lock_customer_reference": lock.name,
            "user_id": account.user_id,
            "user_first_name": account.first_name,
            "user_last_name": account.last_name,
            "user_image_url": None,
            "user_alias": None,
            "iq_id": iq.id,
            "iq_customer_reference": iq.name,
            "iq_mac_address": iq.mac,
            "iq_revision": "2.0",
            "exit_requested": False,
            "access_by": "remote",
            "access_detail": None,
            "ttl_in_seconds": None,
            "expiration_date_time": None,
        }

    def _raise_if_blocked(self, activation: Activation) -> None:
        if activation.blocked_until is None:
            return
        if self.now() < activation.blocked_until:
            raise command_failed(403, "otp_blocked")
        activation.blocked_until = None
        activation.failed_otp_count = 0

    def _verify_otp(self, activation: Activation, otp: str) -> None:
        self._raise_if_blocked(activation)
        now = self.now().replace(microsecond=0)
        candidate = otp.strip().lower()
        window = range(-self.config.otp_window_past_seconds, self.config.otp_window_future_seconds + 1)
        if any(
            otp_at(secret=activation.secret, pin=activation.pin, at=now + timedelta(seconds=s)) == candidate
            for s in window
        ):
            activation.failed_otp_count = 0
            return
        activation.failed_otp_count += 1
        if activation.failed_otp_count >= self.config.otp_block_threshold:
            activation.blocked_until = self.now() + timedelta(seconds=self.config.otp_block_seconds)
        raise command_failed(400, "otp_invalid")

    def _activation(self, username: str, iq_id: str) -> Activation:
        key = (username.lower(), iq_id)
        if key not in self._world.activations:
            self._world.activations[key] = Activation(new_secret(), demo.DEMO_INITIAL_PIN)
        return self._world.activations[key]

    def _iq_or_fail(self, iq_id: str) -> IQ:
        iq = self._world.iqs.get(iq_id.lower())
        if iq is None:
            raise SaltoFailure(404, "2202", "Iq not found")
        return iq

    def _lock_or_fail(self, lock_id: str) -> Lock:
        lock = self._world.locks.get(lock_id.lower())
        if lock is None:
            raise SaltoFailure(404, "2202", "Lock not found")
        return lock
