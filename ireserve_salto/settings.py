"""Django settings, read from the environment in this one place (see README, "Configuration")."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from ireserve_salto.env import Env

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()

DEBUG = env.flag("DEBUG", default=False)

_DEV_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"
SECRET_KEY = env.text("SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else None)
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")

ALLOWED_HOSTS = env.items("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.items("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "simple_history",
    "bookings",
    "locks",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "ireserve_salto.urls"
WSGI_APPLICATION = "ireserve_salto.wsgi.application"
ASGI_APPLICATION = "ireserve_salto.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env.url(
    "DATABASE_URL",
    default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
assert DATABASE_URL is not None
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; a generous timeout keeps the demo's web process and eager tasks
    # from failing with "database is locked" when they write at the same moment.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and cache (optional) ------------------------------------------------
REDIS_URL: str | None = env.url("REDIS_URL", default=None, schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ireserve"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
# Without a broker the demo runs tasks in-process; they are still queued on commit by the callers.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# The worker: opening a door is waiting for Salto (I/O), so threads, many of them, in one process (ADR 0006:
# measured by bench/burst.py against prefork and gevent). Each thread holds its own PostgreSQL connection
# (persistent, CONN_MAX_AGE above): size the database's max_connections for it.
CELERY_WORKER_POOL = env.text("CELERY_WORKER_POOL", "threads") or "threads"
CELERY_WORKER_CONCURRENCY = env.number("CELERY_WORKER_CONCURRENCY", 32, minimum=1, maximum=256)
CELERY_WORKER_PREFETCH_MULTIPLIER = env.number("CELERY_WORKER_PREFETCH_MULTIPLIER", 4, minimum=1, maximum=64)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A message taken by a worker that died comes back after this long: well inside the 120 s freshness limit (the
# sweeper, every 15 s, re-queues lost messages too). Countdowns longer than this may be delivered twice, which
# the conditional claim makes harmless.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60}
CELERY_TIMEZONE = "UTC"
# The queue of the door-opening task ("" = Celery's default queue): a deployment can give opens workers of
# their own, so a long lock-list refresh never delays a door. Routed by ireserve_salto.celery.route_task.
OPENING_TASK_QUEUE = env.text("OPENING_TASK_QUEUE", "") or ""
CELERY_TASK_ROUTES = ["ireserve_salto.celery.route_task"]

# --- Time -----------------------------------------------------------------------------------
TIME_ZONE = env.text("TIME_ZONE", "Europe/Amsterdam") or "Europe/Amsterdam"
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en"

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Secrets at rest ------------------------------------------------------------------------
# Fernet keys, newest first; a key is dropped only after `manage.py rotate_secrets` re-encrypted
# everything under the newest one.
_DEV_FIELD_KEY = "ZGV2ZWxvcG1lbnQtb25seS1maWVsZC1rZXktMDAwMDA="
FIELD_ENCRYPTION_KEYS: list[str] = env.items("FIELD_ENCRYPTION_KEYS") or ([_DEV_FIELD_KEY] if DEBUG else [])
if not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off")

# --- Salto KS -------------------------------------------------------------------------------
SALTO_KS_CLIENT_ID = env.text("SALTO_KS_CLIENT_ID", "") or ""
SALTO_KS_CLIENT_SECRET = env.text("SALTO_KS_CLIENT_SECRET", "") or ""
_HTTP = ("http", "https")
SALTO_KS_ACCEPTANCE_IDENTITY_URL = env.url(
    "SALTO_KS_ACCEPTANCE_IDENTITY_URL", "https://identity-acc.eu.my-clay.com", schemes=_HTTP
)
SALTO_KS_ACCEPTANCE_API_URL = env.url(
    "SALTO_KS_ACCEPTANCE_API_URL", "https://clp-accept-user.my-clay.com", schemes=_HTTP
)
SALTO_KS_PRODUCTION_IDENTITY_URL = env.url(
    "SALTO_KS_PRODUCTION_IDENTITY_URL", "https://identity.eu.my-clay.com", schemes=_HTTP
)
SALTO_KS_PRODUCTION_API_URL = env.url("SALTO_KS_PRODUCTION_API_URL", "https://connect.my-clay.com", schemes=_HTTP)
SALTO_KS_HTTP_TIMEOUT_SECONDS = env.number("SALTO_KS_HTTP_TIMEOUT_SECONDS", 10, minimum=1, maximum=120)

# --- Opening doors --------------------------------------------------------------------------
OPEN_FRESHNESS_SECONDS = env.number("OPEN_FRESHNESS_SECONDS", 120, minimum=5, maximum=3600)
OPEN_DEDUPE_SECONDS = env.number("OPEN_DEDUPE_SECONDS", 10, minimum=0, maximum=600)
# A send whose answer was lost is settled by Salto's entries: looked at every POLL seconds, and only when they
# show nothing for GRACE seconds after the last send (entries may lag) is it sent again, inside the freshness.
OPEN_ENTRIES_GRACE_SECONDS = env.number("OPEN_ENTRIES_GRACE_SECONDS", 20, minimum=0, maximum=600)
OPEN_ENTRIES_POLL_SECONDS = env.number("OPEN_ENTRIES_POLL_SECONDS", 3, minimum=1, maximum=60)
# Check every open against Salto's entries afterwards: confirmed, "no record", or a double open.
OPEN_CONFIRM_OPENS = env.flag("OPEN_CONFIRM_OPENS", True)
# How long a worker holds a row it is sending or checking: longer than the task's hard time limit (45 s), so
# no live worker still holds a row the sweeper takes back as abandoned.
OPEN_SENDING_LEASE_SECONDS = env.number("OPEN_SENDING_LEASE_SECONDS", 50, minimum=5, maximum=600)

# --- REST API -------------------------------------------------------------------------------
# How long an Idempotency-Key is remembered (integrations/idempotency.py); after it, the key is new again.
IDEMPOTENCY_KEY_TTL_SECONDS = env.number("IDEMPOTENCY_KEY_TTL_SECONDS", 86400, minimum=60, maximum=7 * 86400)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "iReserve Salto KS API",
    "DESCRIPTION": "Bookings and door openings through Salto KS.",
    "VERSION": "1.0.0",
}

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "admin:login"

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env.text("LOG_LEVEL", "INFO") or "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # httpx2/httpcore log every request line with its full URL at INFO; our client logs calls itself, path only.
    "loggers": {name: {"level": "WARNING"} for name in ("httpx2", "httpcore2", "httpx", "httpcore")},
}
