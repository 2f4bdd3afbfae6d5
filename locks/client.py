"""The Salto KS Connect API client: plain values in, pydantic models out, typed errors.

One `SaltoClient` per (environment, account). It owns two httpx2 clients with explicit timeouts (identity
server and Connect API), a `TokenProvider` for the password-grant token, and raises what `locks/classify.py`
decides once per answer (the families of `locks/errors.py`). Nothing secret goes into a log line or an exception.

Reference: docs/salto-ks.md (sections cited above each call).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from django.conf import settings
from django.core.cache import cache as default_cache
from django.core.cache.backends.base import BaseCache
from pydantic import BaseModel, TypeAdapter, ValidationError

from locks import classify, errors
from locks.clock import ClockReading, known_offset, record_offset, salto_time
from locks.environments import Environment, endpoints_for
from locks.otp import compute_otp, is_valid_pin, pin_delta
from locks.schemas import (
    IQ,
    AccessToken,
    ActivatedIQ,
    Entry,
    Lock,
    Me,
    PinRequestResult,
    PinResponse,
    SecretResponse,
    Site,
    TokenResponse,
)
from locks.tokens import TokenProvider, token_cache_key

logger = logging.getLogger(__name__)

USER_AGENT = "ireserve-salto/0.1 (+Salto KS integration)"
SCOPE = "user_api.full_access"
API_PREFIX = "/v1.1"
# A site with thousands of locks at Salto's (unknown, probably 20) page size stays far below this;
# a server that keeps handing out new next links must not keep us looping forever.
MAX_PAGES = 500
_SITE_UID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_ID = re.compile(r"[A-Za-z0-9_.\-]{1,100}")

M = TypeVar("M", bound=BaseModel)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, shared by every client.

    Loading the CA bundle costs ~30 ms; a worker builds a client per open, and measured (bench/open_latency.py)
    that load was more than half of the time from status change to open. The context is read-only once built.
    """
    return httpx2.create_ssl_context()


REQUEST_HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json"}


class SaltoClient:
    def __init__(
        self,
        *,
        environment: Environment | str,
        username: str,
        password: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        cache: BaseCache | None = None,
        transport: httpx2.BaseTransport | None = None,
        timeout: float | None = None,
        http: httpx2.Client | None = None,
    ) -> None:
        """HTTP: a shared client for the API calls (`locks.http.shared_http_client`), kept open by close(); without
        one this client has its own. Every call passes its own timeout, so a shared client's default is unused."""
        self.environment = Environment(environment)
        self.endpoints = endpoints_for(self.environment)
        self.username = username
        self._password = password
        self._client_id = client_id if client_id is not None else str(getattr(settings, "SALTO_KS_CLIENT_ID", ""))
        self._client_secret = (
            client_secret if client_secret is not None else str(getattr(settings, "SALTO_KS_CLIENT_SECRET", ""))
        )
        seconds = float(timeout if timeout is not None else getattr(settings, "SALTO_KS_HTTP_TIMEOUT_SECONDS", 10))
        self._timeout = httpx2.Timeout(seconds, connect=min(seconds, 5.0))
        self._owns_http = http is None
        self._http = http or httpx2.Client(
            headers=REQUEST_HEADERS, timeout=self._timeout, transport=transport, verify=_tls_context()
        )
        self._transport = transport
        self._oauth_client: OAuth2Client | None = None
        self._cache: BaseCache = cache if cache is not None else default_cache
        self.clock: ClockReading | None = None
        # The clock reading the last open's OTP was computed with (None: our own clock was used).
        self.otp_clock: ClockReading | None = None
        self.tokens = TokenProvider(
            fetch=self._request_token,
            cache=cache,
            cache_key=token_cache_key(
                environment=self.environment.value,
                identity_url=self.endpoints.identity_url,
                client_id=self._client_id,
                username=username,
            ),
            lock_seconds=seconds * 2 + 5,
        )

    def __repr__(self) -> str:
        return f"SaltoClient(environment={self.environment.value!r}, username={self.username!r})"

    def __enter__(self) -> SaltoClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()
        if self._oauth_client is not None:
            self._oauth_client.close()

    @property
    def _oauth(self) -> OAuth2Client:
        """authlib's client for the token request, made on first use: most opens find their token cached.

        authlib builds the password-grant request (HTTP Basic client auth, form body) and is the library the
        style guide picks for token requests. It neither caches across processes nor classifies failures the
        way we need, so TokenProvider wraps it and the compliance hook classifies every non-2xx answer before
        authlib parses it. One per SaltoClient: the hook is this client's (its secrets, its clock).
        """
        if self._oauth_client is None:
            self._oauth_client = OAuth2Client(
                client_id=self._client_id,
                client_secret=self._client_secret,
                token_endpoint_auth_method="client_secret_basic",
                scope=SCOPE,
                headers=REQUEST_HEADERS,
                timeout=self._timeout,
                transport=self._transport,
                verify=_tls_context(),
            )
            self._oauth_client.register_compliance_hook("access_token_response", self._check_token_response)
        return self._oauth_client

    # --- Authentication -------------------------------------------------------------------------

    def fetch_token(self, *, force: bool = False) -> AccessToken:
        """A valid access token, from the cache or a new password grant (FORCE skips the cache)."""
        return self.tokens.get(force=force)

    def _request_token(self) -> AccessToken:
        # Reference: docs/salto-ks.md §2.1 (POST {identity}/connect/token, Basic client auth,
        # grant_type=password, username, password, scope=user_api.full_access).
        url = self.endpoints.identity_url + "/connect/token"
        started = time.monotonic()
        issued_at = datetime.now(UTC)
        try:
            raw = self._oauth.fetch_token(
                url, grant_type="password", username=self.username, password=self._password, scope=SCOPE
            )
        except httpx2.TransportError as exc:
            self._log("POST", url, None, started)
            raise classify.transport_error(exc, identity=True) from None
        except errors.SaltoError:
            raise
        except (OAuthError, httpx2.HTTPStatusError, ValueError):
            # authlib raises its own errors for bodies it cannot parse; never chain them (they may
            # carry the request).
            raise errors.SaltoAuthError(
                "The Salto KS identity server sent an unreadable token response", reason="identity_error"
            ) from None
        self._log("POST", url, 200, started)
        try:
            body = TokenResponse.model_validate(dict(raw))
        except ValidationError as exc:
            raise errors.SaltoAuthError(
                f"The Salto KS identity server sent an unexpected token response ({_fields(exc)})",
                reason="identity_error",
            ) from None
        # Count the lifetime from before the request: the token cannot outlive what Salto promised.
        return AccessToken(
            access_token=body.access_token,
            expires_at=issued_at + timedelta(seconds=body.expires_in),
            scope=body.scope,
            token_type=body.token_type,
        )

    def _check_token_response(self, response: httpx2.Response) -> httpx2.Response:
        self._note_clock(response)
        if 200 <= response.status_code < 300:
            return response
        self._log("POST", str(response.request.url), response.status_code, None)
        raise classify.token_error(response, scrub=self._scrub)

    def get_me(self) -> Me:
        # Reference: docs/salto-ks.md §8 (GET /v1.1/me: the platform user, whose id entries carry as user_id).
        return _parse(Me, self._call("GET", "/me"))

    # --- Sites ----------------------------------------------------------------------------------

    def list_sites(self) -> list[Site]:
        # Reference: docs/salto-ks.md §4 (GET /v1.1/sites), §3.2 (envelope or bare array).
        return self._get_all("/sites", Site)

    def resolve_site(self, site_uid: str) -> Site:
        """The one site whose Site UID matches, ignoring case and surrounding spaces.

        Reference: docs/salto-ks.md §4 ($filter=site_uid eq '…', else list and match).
        """
        uid = (site_uid or "").strip()
        if not _SITE_UID.fullmatch(uid):
            # Quotes and other punctuation would let the value escape the OData string literal.
            raise errors.InvalidInput("A Site UID consists of letters, digits, '-', '_' or '.'")
        wanted = uid.casefold()
        try:
            filtered = self._get_all("/sites", Site, params={"$filter": f"site_uid eq '{uid}'"})
        except errors.SaltoPermanentError as exc:
            if exc.http_status != 400:
                raise
            # The filter is only observed on v1.1, never documented: a 400 means "no filter here", so scan.
            filtered = []
        matches = [s for s in filtered if (s.site_uid or "").strip().casefold() == wanted]
        if not matches:
            # The filter may be case-sensitive or ignored; a full scan decides.
            matches = [s for s in self.list_sites() if (s.site_uid or "").strip().casefold() == wanted]
        unique = list({s.id: s for s in matches}.values())
        if not unique:
            raise errors.SiteNotFound(f"No Salto KS site visible to this account has Site UID {uid}")
        if len(unique) > 1:
            raise errors.SiteAmbiguous(f"{len(unique)} Salto KS sites visible to this account have Site UID {uid}")
        return unique[0]

    # --- IQs ------------------------------------------------------------------------------------

    def list_iqs(self, site_id: str) -> list[IQ]:
        # Reference: docs/salto-ks.md §5 (GET /v1.1/sites/{site}/iqs).
        return self._get_all(f"/sites/{_id(site_id)}/iqs", IQ)

    def get_iq(self, site_id: str, iq_id: str) -> IQ:
        # Reference: docs/salto-ks.md §5 (GET /v1.1/sites/{site}/iqs/{iq}).
        response = self._call("GET", f"/sites/{_id(site_id)}/iqs/{_id(iq_id)}", not_found=errors.IQNotFound)
        return _parse(IQ, response)

    def get_iq_secret(self, site_id: str, iq_id: str) -> str:
        """The account's IQ secret; Salto hands it out only once (SecretAlreadyIssued afterwards).

        Reference: docs/salto-ks.md §7.3 step 1 (GET …/iqs/{iq}/secret → {"secret": "…"}), §0.
        """
        response = self._call("GET", f"/sites/{_id(site_id)}/iqs/{_id(iq_id)}/secret", not_found=errors.IQNotFound)
        body = classify.json_or_none(response)
        # A bare JSON string is tolerated too (PUT …/users/{id}/pin answers that way, §8).
        secret = body if isinstance(body, str) else _parse(SecretResponse, response).secret.get_secret_value()
        if not secret:
            raise errors.UnexpectedResponse("Salto KS returned an empty IQ secret", http_status=response.status_code)
        return secret

    def request_iq_pin(self, site_id: str, iq_id: str) -> PinRequestResult:
        """Ask Salto for the account's initial IQ PIN: in the body, or sent by SMS (204 or an empty body).

        Reference: docs/salto-ks.md §7.3 step 2 (GET …/iqs/{iq}/pin) and §0 "GET PIN".
        """
        response = self._call("GET", f"/sites/{_id(site_id)}/iqs/{_id(iq_id)}/pin", not_found=errors.IQNotFound)
        if response.status_code == 204 or not response.content.strip():
            return PinRequestResult(pin=None, sent_by="sms")
        body = classify.json_or_none(response)
        if isinstance(body, dict):
            pin: Any = _parse(PinResponse, response).pin.get_secret_value()
        elif body is None:
            pin = response.text.strip()  # tolerated: a plain-text PIN
        else:
            pin = body  # a bare JSON string (or number)
        pin = str(pin).strip().strip('"')
        if pin.isdigit() and len(pin) < 4:
            pin = pin.zfill(4)  # a PIN sent as a JSON number loses its leading zeros
        if not is_valid_pin(pin):
            raise errors.UnexpectedResponse(
                "Salto KS answered GET PIN with something that is not a 4-digit PIN", http_status=response.status_code
            )
        return PinRequestResult(pin=pin, sent_by="body")  # type: ignore[arg-type]

    def set_iq_pin(
        self,
        site_id: str,
        iq_id: str,
        *,
        secret: str,
        current_pin: str,
        new_pin: str,
        at: datetime | None = None,
    ) -> int:
        """Complete the IQ activation: prove the current PIN with an OTP and set NEW_PIN via the delta.

        Reference: docs/salto-ks.md §7.3 step 3 (PUT …/iqs/{iq}/pin {"otp", "delta"} → 204), §0 (delta).
        """
        if not is_valid_pin(current_pin) or not is_valid_pin(new_pin):
            raise errors.InvalidInput("The current and new IQ PIN must be four digits")
        if not secret:
            raise errors.InvalidInput("The IQ secret is missing")
        otps: list[str] = []
        delta = pin_delta(old_pin=current_pin, new_pin=new_pin)

        def body() -> dict[str, Any]:
            # As for an open: built once the token is in hand (a fresh token request measures Salto's clock).
            self.otp_clock = self.clock_reading()
            otp = compute_otp(secret=secret, pin=current_pin, at=at or salto_time(self.otp_clock))
            otps.append(otp)
            return {"otp": otp, "delta": delta}

        response = self._call(
            "PUT",
            f"/sites/{_id(site_id)}/iqs/{_id(iq_id)}/pin",
            json_body=body,
            not_found=errors.IQNotFound,
            secrets=_LazySecrets((secret, current_pin, new_pin), otps),
        )
        _require_answer(response, doing="Set PIN")
        return response.status_code

    def list_activated_iqs(self, site_id: str) -> list[ActivatedIQ]:
        # Reference: docs/salto-ks.md §7.3 (GET /v1.1/me/{site}/activated_iqs).
        return self._get_all(f"/me/{_id(site_id)}/activated_iqs", ActivatedIQ)

    # --- Locks ----------------------------------------------------------------------------------

    def list_locks(self, site_id: str) -> list[Lock]:
        # Reference: docs/salto-ks.md §6 (GET /v1.1/sites/{site}/locks), §3.2 (paging).
        return self._get_all(f"/sites/{_id(site_id)}/locks", Lock)

    def open_lock(
        self,
        site_id: str,
        lock_id: str,
        *,
        secret: str,
        pin: str,
        at: datetime | None = None,
        not_after: datetime | None = None,
        on_unauthorized: Callable[[httpx2.Response], None] | None = None,
    ) -> int:
        """Remote open with a fresh OTP; returns Salto's HTTP status.

        A 2xx with an empty or JSON body is success (the body is undocumented, §7.1); a 2xx with anything else
        (an HTML page, broken JSON) is OutcomeUnknown, like a 5xx or a read timeout.

        Reference: docs/salto-ks.md §7.1 (PATCH …/locks/{lock}/locking {"locked_state": "unlocked", "otp"}).
        Never retried here: a rejected OTP counts towards otp_blocked (§3.4). With NOT_AFTER, the command is
        not sent (DeadlinePassed) once that moment has passed — checked after the token is in hand and before
        each send — and no single phase of the call (connect, write, read) may outlast it: a door must not
        open late. ON_UNAUTHORIZED hears of a 401 before the one re-send with a new token, so the caller can
        record that send as its own.
        """
        if not is_valid_pin(pin):
            raise errors.InvalidInput("The IQ PIN must be four digits")
        if not secret:
            raise errors.InvalidInput("The IQ secret is missing")
        otps: list[str] = []

        def body() -> dict[str, Any]:
            # Built for each send, once the token is in hand: a fresh token request measures Salto's clock
            # (locks/clock.py), and a re-sent command after a 401 must not carry an OTP of the wrong time.
            self.otp_clock = self.clock_reading()
            otp = compute_otp(secret=secret, pin=pin, at=at or salto_time(self.otp_clock))
            otps.append(otp)
            return {"locked_state": "unlocked", "otp": otp}

        response = self._call(
            "PATCH",
            f"/sites/{_id(site_id)}/locks/{_id(lock_id)}/locking",
            json_body=body,
            not_found=errors.LockNotFound,
            secrets=_LazySecrets((secret, pin), otps),
            not_after=not_after,
            on_unauthorized=on_unauthorized,
        )
        _require_answer(response, doing="the open")
        return response.status_code

    # --- Entries --------------------------------------------------------------------------------

    def list_entries(self, site_id: str, *, since: datetime, lock_id: str | None = None) -> list[Entry]:
        """Entries at or after SINCE (of LOCK_ID only, if given), newest first, every page.

        Reference: docs/salto-ks.md §8 (GET /v1.1/sites/{site}/entries → {items, continuation_token}), §3.2
        ($filter DateTime'…'). How the continuation token goes back is unknown for Connect (unknown 10): it is
        sent both as the `continuation_token` query parameter and as the CLP-Continuation-Token header (the
        Hardware API's way), and paging stops at MAX_PAGES or when a token repeats.
        """
        if since.tzinfo is None:
            raise errors.InvalidInput("since must be an aware datetime")
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        clauses = [f"utc_date_time ge DateTime'{stamp}'"]
        if lock_id is not None:
            clauses.insert(0, f"lock_id eq '{_id(lock_id)}'")
        params = {"$filter": " and ".join(clauses), "$orderby": "utc_date_time desc", "$top": "100"}
        path = f"/sites/{_id(site_id)}/entries"
        entries: list[Entry] = []
        seen: set[str] = set()
        token: str | None = None
        for _ in range(MAX_PAGES):
            page_params = {**params, "continuation_token": token} if token else params
            headers = {"CLP-Continuation-Token": token} if token else None
            response = self._call("GET", path, params=page_params, headers=headers)
            body = classify.json_or_none(response)
            if isinstance(body, list):
                raw, token = body, None
            elif isinstance(body, dict) and isinstance(body.get("items"), list):
                raw, token = body["items"], body.get("continuation_token") or None
            else:
                raise errors.UnexpectedResponse("Salto KS answered the entries without a list", http_status=200)
            entries.extend(_parse_list(Entry, raw, response.status_code))
            if not token:
                break
            if token in seen:
                raise errors.UnexpectedResponse("Salto KS entries repeat a continuation token; stopping")
            seen.add(str(token))
        else:
            raise errors.UnexpectedResponse(f"Salto KS entries exceeded {MAX_PAGES} pages; stopping")
        # If the server ignored the filter we still only return what was asked for.
        return [
            e
            for e in entries
            if _aware(e.utc_date_time) >= since and (lock_id is None or e.lock_id is None or e.lock_id == lock_id)
        ]

    # --- Plumbing -------------------------------------------------------------------------------

    def _get_all(self, path: str, model: type[M], *, params: dict[str, str] | None = None) -> list[M]:
        """Every item of a list, following next_page_link (absolute, verbatim) to the end.

        Reference: docs/salto-ks.md §3.2 ({items, next_page_link, count} or a bare array).
        """
        items: list[M] = []
        url: str = self.endpoints.api_url + API_PREFIX + path
        seen: set[str] = set()
        page_params = params
        for _ in range(MAX_PAGES):
            response = self._call("GET", url, params=page_params)
            body = classify.json_or_none(response)
            if isinstance(body, list):
                raw_items, next_link = body, None
            elif isinstance(body, dict) and isinstance(body.get("items"), list):
                raw_items, next_link = body["items"], body.get("next_page_link")
                if body.get("continuation_token"):
                    # Entries page with a continuation token whose transport (header or query) is
                    # unknown for Connect (§3.2, unknown 10): do not guess, say that more may exist.
                    logger.warning("salto_ks %s returned a continuation_token that is not followed", path)
            else:
                raise errors.UnexpectedResponse(
                    "Salto KS answered a list request without a list", http_status=response.status_code
                )
            items.extend(_parse_list(model, raw_items, response.status_code))
            if not next_link:
                return items
            url = self._next_url(str(next_link))
            if url in seen:
                raise errors.UnexpectedResponse("Salto KS pagination repeats a page; stopping")
            seen.add(url)
            page_params = None
        raise errors.UnexpectedResponse(f"Salto KS pagination exceeded {MAX_PAGES} pages; stopping")

    def _next_url(self, link: str) -> str:
        base = urlsplit(self.endpoints.api_url)
        parts = urlsplit(link)
        if not parts.scheme:
            # Documented as absolute; a relative link is resolved against the API host defensively.
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        if parts.scheme == "http" and base.scheme == "https":
            # The old PHP SDK had to upgrade http next links behind Salto's TLS terminator (§3.2).
            parts = parts._replace(scheme="https")
        if parts.netloc.lower() != base.netloc.lower():
            # Following it would send our bearer token to another host.
            raise errors.UnexpectedResponse("Salto KS sent a next_page_link to another host; not followed")
        return urlunsplit(parts)

    def _call(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json_body: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        not_found: type[errors.SaltoPermanentError] | None = None,
        secrets: Iterable[str] = (),
        not_after: datetime | None = None,
        on_unauthorized: Callable[[httpx2.Response], None] | None = None,
    ) -> httpx2.Response:
        """One API call with the bearer token; a 401 drops the token and retries exactly once."""
        url = path_or_url if "://" in path_or_url else self.endpoints.api_url + API_PREFIX + path_or_url
        token = self.tokens.get()
        response = self._send(
            method, url, token, params, json_body, headers=headers, timeout=self._timeout_until(not_after)
        )
        if response.status_code == 401:
            # Tokens can be revoked or expire early (clock skew, password change): re-authenticate once.
            if on_unauthorized is not None:
                on_unauthorized(response)
            self.tokens.invalidate(token)
            token = self.tokens.get()
            response = self._send(
                method, url, token, params, json_body, headers=headers, timeout=self._timeout_until(not_after)
            )
            if response.status_code == 401:
                raise errors.SaltoAuthError(
                    "Salto KS rejected a freshly issued token", reason="unauthorized", http_status=401
                )
        if response.status_code >= 300:
            self._raise_for(response, not_found=not_found, secrets=(*secrets, token.access_token.get_secret_value()))
        return response

    def _timeout_until(self, not_after: datetime | None) -> httpx2.Timeout:
        """The client's timeout, cut so the command reaches Salto before NOT_AFTER; DeadlinePassed when too late.

        httpx applies each timeout to its own phase, so the phases before Salto has the whole request (waiting
        for a connection, connecting, writing) share what is left instead of each getting all of it; reading
        the answer may take the rest, since by then the command is already there.
        """
        if not_after is None:
            return self._timeout
        left = (not_after - datetime.now(UTC)).total_seconds()
        if left <= 0:
            raise errors.DeadlinePassed()
        configured = self._timeout.read or left
        budget = min(configured, left)
        return httpx2.Timeout(budget, pool=budget * 0.1, connect=budget * 0.5, write=budget * 0.4)

    def _send(
        self,
        method: str,
        url: str,
        token: AccessToken,
        params: dict[str, str] | None,
        json_body: dict[str, Any] | Callable[[], dict[str, Any]] | None,
        *,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
    ) -> httpx2.Response:
        request_headers = {**(headers or {}), "Authorization": f"Bearer {token.access_token.get_secret_value()}"}
        started = time.monotonic()
        try:
            payload = json_body() if callable(json_body) else json_body
            response = self._http.request(
                method, url, params=params, json=payload, headers=request_headers, timeout=timeout or self._timeout
            )
        except httpx2.TransportError as exc:
            self._log(method, url, None, started)
            raise classify.transport_error(exc, identity=False) from None
        self._log(method, url, response.status_code, started)
        self._note_clock(response)
        return response

    # --- Salto's clock ----------------------------------------------------------------------------

    def _note_clock(self, response: httpx2.Response) -> None:
        server_date = classify.server_date(response)
        if server_date is not None:
            self.clock = record_offset(
                self._cache, self.endpoints.api_url, server_date=server_date, received_at=datetime.now(UTC)
            )

    def clock_reading(self) -> ClockReading | None:
        """Salto's clock as measured: the shared median of the last answers, else this client's last answer."""
        return known_offset(self._cache, self.endpoints.api_url) or self.clock

    def otp_clock_error(self) -> float:
        """Seconds between the Salto time the last OTP was built for and Salto's time as this client last saw it.

        Near 0 when the OTP was computed at Salto's time; minutes when the offset was unknown or has changed
        since. An OTP rejection with an error beyond CLOCK_TOLERANCE_SECONDS is the clock's, not the PIN's.
        """
        if self.clock is None:
            return 0.0
        used = self.otp_clock
        before = used.offset_seconds if used is not None and used.is_off else 0.0
        after = self.clock.offset_seconds if self.clock.is_off else 0.0
        return after - before

    def salto_now(self) -> datetime:
        """Now at Salto: the moment an OTP is computed for (docs/salto-ks.md §7.2)."""
        return salto_time(self.clock_reading())

    def _raise_for(
        self,
        response: httpx2.Response,
        *,
        not_found: type[errors.SaltoPermanentError] | None,
        secrets: Iterable[str],
    ) -> NoReturn:
        raise classify.api_error(response, not_found=not_found, scrub=lambda text: self._scrub(text, secrets))

    def _scrub(self, text: str, extra: Iterable[str] = ()) -> str:
        """Remove every secret we know of from text Salto sent back (it might echo input)."""
        for value in (self._password, self._client_secret, *extra):
            if value and len(value) >= 4:
                text = text.replace(value, "[redacted]")
        return text

    def _log(self, method: str, url: str, status: int | None, started: float | None) -> None:
        path = urlsplit(url).path  # never the query string
        took = f" in {(time.monotonic() - started) * 1000:.0f} ms" if started is not None else ""
        if status is None:
            logger.info("salto_ks %s %s failed without response%s", method, path, took)
        else:
            level = logging.DEBUG if status < 400 else logging.INFO
            logger.log(level, "salto_ks %s %s -> %s%s", method, path, status, took)


# --- Helpers ------------------------------------------------------------------------------------


def _id(value: str) -> str:
    # Ids go into URL paths; refuse anything that could add a path segment or a query.
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise errors.InvalidInput("A Salto KS id consists of letters, digits, '-', '_' or '.'")
    return value


def _parse(model: type[M], response: httpx2.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise errors.UnexpectedResponse(
            f"Salto KS sent an unexpected {model.__name__} ({_fields(exc)})", http_status=response.status_code
        ) from None


def _parse_list(model: type[M], raw_items: list[Any], status: int) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_python(raw_items)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise errors.UnexpectedResponse(
            f"Salto KS sent an unexpected {model.__name__} list ({_fields(exc)})", http_status=status
        ) from None


def _fields(exc: ValidationError) -> str:
    # Only where and what kind of problem, never the input values (they may be secrets).
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['type']}" for e in exc.errors(include_input=False))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _require_answer(response: httpx2.Response, *, doing: str) -> None:
    """A 2xx counts as an answer only with no body or a JSON one; an HTML page or broken JSON does not.

    Such a body means something between us and Salto answered (a proxy, a maintenance page), or Salto's
    answer was cut: whether the command ran is unknown.
    """
    if response.status_code == 204 or not response.content.strip():
        return
    try:
        json.loads(response.content)
    except ValueError:
        raise errors.OutcomeUnknown(
            f"Salto KS answered {doing} with a body that is not JSON",
            http_status=response.status_code,
            kind="unreadable_answer",
        ) from None


class _LazySecrets:
    """Secrets to scrub that are only known once a request is built (the OTP of each send)."""

    def __init__(self, fixed: Iterable[str], later: list[str]) -> None:
        self._fixed = tuple(fixed)
        self._later = later

    def __iter__(self) -> Iterator[str]:
        return iter((*self._fixed, *self._later))
