"""Commonwatt settings: one file, driven by environment variables.

The embedded default (no environment at all) runs on a SQLite file under
``var/``; tests and production set ``DATABASE_URL`` to PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise ValueError("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# Meter secrets must be recoverable (they key the HMAC of every reading), so
# they are stored encrypted with this key; it defaults to one derived from
# SECRET_KEY. Rotating it means re-issuing meter secrets.
METER_SECRET_KEY = env_str("METER_SECRET_KEY", "")

VAR_DIR = Path(env_str("COMMONWATT_VAR_DIR", str(BASE_DIR / "var")))

INSTALLED_APPS = [
    # The web app first: its templates (payments/base.html: the site layout
    # around the payments pages) take precedence over the apps below.
    "web",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "utility.ledger",
    "utility.audit",
    "utility.residents",
    "utility.payments",
    "meters",
    "settlement",
    "contracts",
    "marketplace",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves collected static files (htmx, Chart.js, API docs) under gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "utility.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "utility" / "templates"],
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

WSGI_APPLICATION = "utility.wsgi.application"
ASGI_APPLICATION = "utility.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'commonwatt.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default: several threads (web, ingest, settlement) share one
    # file; wait for the writer instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# collectstatic fills it (production); it exists so WhiteNoise has a root.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated API call gets 401 with a
        # WWW-Authenticate header rather than 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "web.apis.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "60/min"),
        "user": env_str("API_THROTTLE_USER", "600/min"),
        # Moving money and asking for a token: tighter.
        "money": env_str("API_THROTTLE_MONEY", "60/min"),
        "token": env_str("API_THROTTLE_TOKEN", "10/min"),
    },
    "EXCEPTION_HANDLER": "web.apis.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "web.apis.schema.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

# Celery (docs/operations.md, "Worker and beat"). Without a broker URL (the
# embedded default) every task runs in-process at .delay(), eagerly.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# A task is acknowledged only after it ran and requeued when its worker process
# dies; every task is safe to run twice, so a crash costs a repeat, never a loss.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")
# Redis hands out again a task whose whole worker vanished (SIGKILL, power
# loss) once it has been unacknowledged this long. Keep it above the longest
# task (settling 100,000 meters takes seconds); a shorter one only repeats a
# long task, which is safe. The beat's next settle_due (a minute) comes first.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 3600),
    "unacked_restore_interval": env_int("CELERY_RESTORE_INTERVAL_S", 10),
    "unacked_restore_throttle": 1,
}
# Each run expires before the next one is due, so a stopped worker does not
# come back to a backlog of identical runs.
CELERY_BEAT_SCHEDULE = {
    "settle-due": {"task": "settlement.tasks.settle_due", "schedule": 60.0, "options": {"expires": 55}},
    "decisions-send-pending": {
        "task": "meters.tasks.send_pending_decisions",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}

MQTT_URL = env_str("MQTT_URL", "mqtt://127.0.0.1:1883")
# `manage.py demo --serve` runs a Mosquitto of its own on this port (0: any free port).
DEMO_MQTT_PORT = env_int("DEMO_MQTT_PORT", 0) or None
# Outbound MQTT (decisions, acks, price): "paho" talks to MQTT_URL, "memory"
# records in-process (unit tests, the embedded demo). See meters/mqtt.py.
MQTT_PUBLISHER = env_str("MQTT_PUBLISHER", "paho" if MQTT_URL else "memory")
MQTT_PUBLISH_TIMEOUT_S = env_int("MQTT_PUBLISH_TIMEOUT_S", 10)
# The backend's broker username in the generated password file and ACL
# (`manage.py mosquitto_config`); its password comes from MQTT_BACKEND_PASSWORD.
MQTT_BACKEND_USERNAME = env_str("MQTT_BACKEND_USERNAME", "backend")
# `manage.py ingest_mqtt`: a stable client id and a persistent session, so the
# broker queues readings (QoS 1) while the ingest is down, for up to this long.
MQTT_INGEST_CLIENT_ID = env_str("MQTT_INGEST_CLIENT_ID", "commonwatt-ingest")
MQTT_INGEST_SESSION_EXPIRY_S = env_int("MQTT_INGEST_SESSION_EXPIRY_S", 7 * 24 * 3600)
# /metrics (Prometheus): when set, a scrape must send "Authorization: Bearer <token>".
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# Fiat ramps (docs/payments.md). "fake" is the embedded default: a local
# stand-in for Stripe that pays, onboards and sends signed webhooks without an
# account; it is refused when a live key is configured. "stripe" talks to
# Stripe (STRIPE_API_BASE points the client elsewhere, e.g. localstripe).
PAYMENTS_BACKEND = env_str("PAYMENTS_BACKEND", "fake")
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
# Connect events (payouts, account updates) come from a second endpoint in the
# dashboard with its own signing secret; both secrets are accepted.
STRIPE_CONNECT_WEBHOOK_SECRET = env_str("STRIPE_CONNECT_WEBHOOK_SECRET", "")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Where a resident's coin price and currency come from (a grid's rules); a
# dotted path, so the core app does not import the meters app.
PAYMENTS_PRICE_SOURCE = env_str("PAYMENTS_PRICE_SOURCE", "meters.pricing.coin_price_for")
# The web app's pages (issue 7); see the "Web" block at the end.
LOGIN_URL = env_str("LOGIN_URL", "web:login")
LOGIN_REDIRECT_URL = "web:dashboard"
LOGOUT_REDIRECT_URL = "web:login"
CELERY_BEAT_SCHEDULE["payments-reconcile"] = {"task": "utility.payments.tasks.payments_reconcile", "schedule": 300.0}
CELERY_BEAT_SCHEDULE["payments-fake-redeliver"] = {
    "task": "utility.payments.tasks.fake_events_redeliver",
    "schedule": 60.0,
}

# The chain mirror (contracts/, docs/chain.md). "embedded": an in-process EVM
# that each process deploys and re-mirrors on start; "rpc": a JSON-RPC node at
# CHAIN_RPC_URL, written with CHAIN_OPERATOR_KEY (the contract's owner).
# CHAIN_MODE "accounts" posts every changed balance; "merkle" posts one root.
CHAIN_BACKEND = env_str("CHAIN_BACKEND", "embedded")
CHAIN_RPC_URL = env_str("CHAIN_RPC_URL", "")
CHAIN_OPERATOR_KEY = env_str("CHAIN_OPERATOR_KEY", "")
CHAIN_CONTRACT_ADDRESS = env_str("CHAIN_CONTRACT_ADDRESS", "")
CHAIN_MODE = env_str("CHAIN_MODE", "accounts")
# Gas budget of one batch transaction: sets the batch size (bench/RESULTS-chain.md).
CHAIN_BATCH_GAS = env_int("CHAIN_BATCH_GAS", 15_000_000)
CHAIN_RPC_TIMEOUT_S = env_int("CHAIN_RPC_TIMEOUT_S", 10)
CHAIN_RECEIPT_TIMEOUT_S = env_int("CHAIN_RECEIPT_TIMEOUT_S", 60)
CELERY_BEAT_SCHEDULE["chain-drain"] = {"task": "contracts.tasks.mirror_drain", "schedule": 30.0}
# The marketplace (marketplace/, docs/market.md): close ended auctions, take
# contract payments, end contracts, publish the price of each new interval.
CELERY_BEAT_SCHEDULE["market-tick"] = {
    "task": "marketplace.tasks.market_tick",
    "schedule": 60.0,
    "options": {"expires": 55},
}

# --- Web (web/, issue 7): pages, the REST API, security -------------------
# htmx and Chart.js come from npm (`npm ci --prefix web`); this finder serves
# exactly those two files from web/node_modules, so nothing third-party is
# committed (web/checks.py warns when they are missing).
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "web.staticfinders.VendorFinder",
]
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Commonwatt <no-reply@localhost>")
# The login limiter (web/ratelimit.py) and DRF's throttles count in the cache:
# a shared one (CACHE_URL=redis://...) makes the limits hold across processes.
CACHE_URL = env_str("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "commonwatt"}
    )
}
# Sessions read from the cache, written through to the database.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
LOGIN_FAILURES_MAX = env_int("LOGIN_FAILURES_MAX", 5)  # per username and address...
LOGIN_FAILURES_PER_ADDRESS_MAX = env_int("LOGIN_FAILURES_PER_ADDRESS_MAX", 30)  # ...and per address
LOGIN_LOCKOUT_S = env_int("LOGIN_LOCKOUT_S", 900)
AUTHENTICATION_BACKENDS = ["web.ratelimit.RateLimitedBackend"]

# Production security: on whenever DEBUG is off, each overridable by env
# (`manage.py check --deploy --fail-level WARNING` passes; web/tests).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

SPECTACULAR_SETTINGS = {
    "TITLE": "Commonwatt API",
    "DESCRIPTION": (
        "Residents: wallet, meters, readings, settlements, funding, top-ups, withdrawals. "
        "Operators (staff): grids, meters, settlements, alerts. Money in integer micro-coins "
        "(`*_uk`, 1 k = 1,000,000 µk), energy in integer watt-hours (`*_wh`). "
        "Authenticate with `Authorization: Token <key>` (POST /api/auth/token/) or a session."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/",
}
# --- end web ----------------------------------------------------------------
