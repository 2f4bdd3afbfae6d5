"""Access tokens for the Salto KS Connect API, cached in the Django cache and fetched by one caller at a time.

Reference: docs/salto-ks.md §2.1 (password grant, expires_in 3600) and §2.2 (the token).

Many web processes and Celery workers may need a token at the same moment (a burst of check-ins at
the top of the hour). Without coordination every one of them would run a password grant, which is
slow and may trip lock-out on the identity server. So: look in the cache; if empty, take a short lock
with `cache.add` (atomic SET NX on Redis); look again (someone may have finished while we queued);
fetch; store until 60 s before expiry; release. The others poll the cache until the token appears.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache as default_cache
from django.core.cache.backends.base import BaseCache

from locks.errors import SaltoAuthError
from locks.schemas import AccessToken

logger = logging.getLogger(__name__)

EXPIRY_MARGIN_SECONDS = 60


def token_cache_key(*, environment: str, identity_url: str, client_id: str, username: str) -> str:
    """A cache key per (environment, identity server, platform client, account); never contains the password."""
    ident = "\0".join([environment, identity_url, client_id, username.strip().lower()])
    return "salto_ks:token:" + hashlib.sha256(ident.encode()).hexdigest()[:32]


FIRST_POLL_SECONDS = 0.005


class TokenProvider:
    def __init__(
        self,
        *,
        fetch: Callable[[], AccessToken],
        cache_key: str,
        cache: BaseCache | None = None,
        margin_seconds: int = EXPIRY_MARGIN_SECONDS,
        lock_seconds: float = 30.0,
        poll_seconds: float = 0.05,
    ) -> None:
        self._fetch = fetch
        self._cache = cache if cache is not None else default_cache
        self._key = cache_key
        self._lock_key = cache_key + ":lock"
        self._failure_key = cache_key + ":failed"
        self._margin = margin_seconds
        # The lock outlives a slow fetch (HTTP timeout) so a second caller does not start its own;
        # it still expires by itself if its holder crashed.
        self._lock_seconds = lock_seconds
        self._poll = poll_seconds

    def __repr__(self) -> str:
        return f"TokenProvider(cache_key={self._key!r})"

    def get(self, *, force: bool = False) -> AccessToken:
        if force:
            self.invalidate()
        else:
            cached = self._cached()
            if cached is not None:
                return cached
        deadline = time.monotonic() + self._lock_seconds + 5
        while True:
            nonce = secrets.token_hex(8)
            if self._cache.add(self._lock_key, nonce, timeout=int(self._lock_seconds) + 1):
                try:
                    # Second look: another caller may have stored a token between our miss and our lock.
                    cached = self._cached()
                    if cached is not None:
                        return cached
                    return self._fetch_and_store()
                finally:
                    if self._cache.get(self._lock_key) == nonce:
                        self._cache.delete(self._lock_key)
            # Someone else is fetching: wait for their token rather than asking Salto again. Look again soon
            # (a token fetch takes milliseconds to a second), backing off to the poll interval.
            pause = min(self._poll, FIRST_POLL_SECONDS)
            while self._cache.get(self._lock_key) is not None and time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(self._poll, pause * 2)
                cached = self._cached()
                if cached is not None:
                    return cached
                failure = self._cache.get(self._failure_key)
                if isinstance(failure, dict):
                    # The fetch we waited for failed on credentials; repeating it N times would only
                    # add failed logins to the account (and could lock it), so share the verdict.
                    raise SaltoAuthError(failure.get("summary"), reason=failure["reason"])
            cached = self._cached()
            if cached is not None:
                return cached
            if time.monotonic() >= deadline:
                logger.warning("salto_ks token lock held too long; fetching without it")
                return self._fetch_and_store()

    def invalidate(self, rejected: AccessToken | None = None) -> None:
        """Drop the cached token. With REJECTED, only if it is still the cached one (another caller may
        already have replaced it with a fresh token that we must not throw away)."""
        if rejected is not None:
            current = self._cache.get(self._key)
            if not isinstance(current, dict) or current.get("access_token") != rejected.access_token.get_secret_value():
                return
        self._cache.delete(self._key)

    def _fetch_and_store(self) -> AccessToken:
        try:
            token = self._fetch()
        except SaltoAuthError as exc:
            if exc.reason in ("invalid_client", "invalid_grant", "invalid_scope"):
                self._cache.set(self._failure_key, {"reason": exc.reason, "summary": exc.summary}, timeout=5)
            raise
        self._cache.delete(self._failure_key)
        ttl = int((token.expires_at - _now()).total_seconds()) - self._margin
        if ttl > 0:
            self._cache.set(self._key, _dump(token), timeout=ttl)
        return token

    def _cached(self) -> AccessToken | None:
        raw = self._cache.get(self._key)
        if not isinstance(raw, dict):
            return None
        try:
            token = AccessToken.model_validate(raw)
        except ValueError:
            return None
        # The cache TTL already stops at the margin; checking again guards against a cache whose
        # clock differs from ours and against entries written with another margin.
        if token.expires_at - timedelta(seconds=self._margin) <= _now():
            return None
        return token


def _dump(token: AccessToken) -> dict[str, Any]:
    return {
        "access_token": token.access_token.get_secret_value(),
        "expires_at": token.expires_at.isoformat(),
        "scope": token.scope,
        "token_type": token.token_type,
    }


def _now() -> datetime:
    return datetime.now(UTC)
