"""GET /healthz: is the database reachable, and the broker when one is configured."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, "ok"
    except Exception as exc:  # any driver error means "unhealthy"; the type is the useful part
        return False, type(exc).__name__


def _broker_ok(redis_url: str) -> tuple[bool, str]:
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        return True, "ok"
    except redis.RedisError as exc:
        return False, type(exc).__name__


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    healthy, checks["database"] = _database_ok()
    redis_url: str | None = getattr(settings, "REDIS_URL", None)
    if redis_url:
        broker_healthy, checks["broker"] = _broker_ok(redis_url)
        healthy = healthy and broker_healthy
    else:
        checks["broker"] = "not configured (tasks run in-process)"
    clock_ok = True
    for environment, text, ok in _salto_clocks():
        checks[f"salto_clock_{environment}"] = text
        clock_ok = clock_ok and ok
    # A clock off Salto's is reported but does not take this process out of service: opens still work (the
    # OTP is computed at Salto's time), and the server's time must be repaired by a person.
    status = ("ok" if clock_ok else "degraded") if healthy else "unhealthy"
    return JsonResponse({"status": status, "checks": checks}, status=200 if healthy else 503)


def _salto_clocks() -> list[tuple[str, str, bool]]:
    """Per environment with a measurement: how far this server's clock is from Salto's (locks/clock.py)."""
    from django.core.cache import cache

    from locks.clock import clock_warning, known_offset
    from locks.environments import Environment, endpoints_for

    readings = []
    for environment in Environment:
        try:
            reading = known_offset(cache, endpoints_for(environment).api_url)
        except Exception:
            # A cache that is down is the broker check's to report.
            logger.warning("Salto clock offset of %s not readable", environment.value, exc_info=True)
            continue
        if reading is None:
            continue
        if reading.is_off:
            readings.append(
                (environment.value, f"{clock_warning(reading.offset_seconds)}, {reading.describe_age()}", False)
            )
        else:
            within = f"ok ({reading.offset_seconds:+.0f} s, {reading.describe_age()})"
            readings.append((environment.value, within, True))
    return readings
