"""GET /healthz: is the database reachable, and the broker when one is configured."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


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
    return JsonResponse({"status": "ok" if healthy else "unhealthy", "checks": checks}, status=200 if healthy else 503)
