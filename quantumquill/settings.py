"""QuantumQuill settings: every endpoint and secret comes from the environment.

With nothing configured, the embedded stack started by ``make run`` (or
``python -m quantumquill.devstack up``) provides the values through its state
file; production sets the variables itself.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from quantumquill.db_env import apply_pooler, database_pooler, direct_connections
from quantumquill.devstack.stack import load_state_env
from quantumquill.env import (
    env_bool,
    env_contentgen_client,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_required,
    env_str,
    parse_database_url,
    parse_shard_urls,
)
from quantumquill.redis_cluster_env import CLUSTER_BACKEND
from quantumquill.redis_env import SESSION_ENGINES, default_cache, session_cache, session_retry_after, session_store

BASE_DIR = Path(__file__).resolve().parent.parent

# Fall back to a running embedded stack only when the control database is not configured at all.
_env: dict[str, str] = dict(os.environ)
if not _env.get("DATABASE_URL"):
    _env = {**(load_state_env() or {}), **_env}

_HINT_EMBEDDED = "Set it in the environment, or start the embedded stack with `make run`."

DEBUG = env_bool("DJANGO_DEBUG", False, environ=_env)
SECRET_KEY = env_required("DJANGO_SECRET_KEY", hint=_HINT_EMBEDDED + " Use a long random value.", environ=_env)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"], environ=_env)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [], environ=_env)
# Names the app server in a response header, so a load-balanced test can see who answered.
INSTANCE_NAME = env_str("QQ_INSTANCE_NAME", "", environ=_env) or ""

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Files (docs/storage-and-cdn.md): apps.storage precedes staticfiles, so that its collectstatic (which
    # compares content, not times) replaces the stock one.
    "apps.storage",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "shardrouter",
    "apps.security",  # HTTPS, login throttling, API tokens, strict parsing (docs/security.md)
    "apps.accounts",
    "apps.content",
    "apps.platform",  # stateless app servers: session engine, middleware, checks
    # JSON API (apps.content.api): DRF with token auth, OpenAPI schema and a self-hosted docs UI.
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Exports of generations: private files behind short-lived signed links.
    "apps.exports",
    # Live data moves: `manage.py shardmove`.
    "migrations_tooling",
    "apps.ops",  # the operator console under /ops/ (staff only, read-only)
    # Analytics warehouse: `manage.py warehouse`, /analytics/ (docs/analytics.md).
    "apps.analytics",
    # Metrics, /readyz, JSON request logs, traces (docs/observability.md).
    "apps.observability",
    # Login throttling: failed logins counted per username and per address (apps.security).
    "axes",
]

MIDDLEWARE = [
    # Stateless app servers (apps.platform): request ID first so every log line carries it; the instance
    # header on every response; sessions that answer 503 instead of logging users out when Redis is down.
    "apps.platform.middleware.RequestIdMiddleware",
    "apps.platform.middleware.ServedByMiddleware",
    # Errors under /api/v1/ in JSON (404 for malformed IDs, 413, 503), never the HTML pages.
    "apps.platform.api_errors.ApiJsonErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apps.platform.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "shardrouter.middleware.ShardContextMiddleware",
    "quantumquill.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "quantumquill.urls"
WSGI_APPLICATION = "quantumquill.wsgi.application"
ASGI_APPLICATION = "quantumquill.asgi.application"

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

# --- Databases: the control database plus any number of shard databases --------------------------


def _database(url: str, variable: str) -> dict[str, Any]:
    config = parse_database_url(url, variable=variable)
    # Persistent connections with health checks: a restarted shard server is picked up again.
    config["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0, environ=_env)
    config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASES: dict[str, dict[str, Any]] = {
    "default": _database(env_required("DATABASE_URL", hint=_HINT_EMBEDDED, environ=_env), "DATABASE_URL"),
}
for _alias, _url in parse_shard_urls(
    env_str("SHARD_DATABASE_URLS", "", environ=_env) or "", variable="SHARD_DATABASE_URLS"
).items():
    DATABASES[_alias] = _database(_url, f"SHARD_DATABASE_URLS ({_alias})")

# A connection pooler in front of the servers (docs/connections.md): DATABASE_POOLER=transaction for
# PgBouncer in transaction mode; the move engine then reaches the servers through their direct URLs.
DATABASE_POOLER = database_pooler(_env)
apply_pooler(DATABASES, DATABASE_POOLER)
SHARDMOVE: dict[str, Any] = {
    "REQUIRE_DIRECT_CONNECTIONS": DATABASE_POOLER == "transaction",
    "DIRECT_CONNECTIONS": direct_connections(_env, DATABASES),
    # Mirrored reads while a move catches up: this share (0..1) of the range's routed reads also runs on the
    # target, compared in the background (docs/data-moves.md); 0 turns it off.
    "MIRROR_READS_SHARE": env_float("QQ_MIRROR_READS_SHARE", 0.0, minimum=0, maximum=1, environ=_env),
}

DATABASE_ROUTERS = ["shardrouter.router.ShardRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SHARDROUTER: dict[str, Any] = {
    # Apps whose tables live on the shards, keyed by each row's user ID.
    "SHARDED_APPS": ["content", "exports"],
    # How often each process checks the control database for a new shard-map version.
    "REFRESH_INTERVAL": env_float("SHARDMAP_REFRESH_INTERVAL", 1.0, minimum=0.05, maximum=60, environ=_env),
    # How long a write waits (retrying) while its range is frozen for a cut-over.
    "WRITE_BUFFER_SECONDS": env_float("SHARD_WRITE_BUFFER_SECONDS", 5.0, minimum=0, maximum=60, environ=_env),
    # After a write, the user's reads stay on the write database this long (read-your-writes).
    "READ_YOUR_WRITES_SECONDS": env_float("SHARD_READ_YOUR_WRITES_SECONDS", 5.0, minimum=0, environ=_env),
    "PIN_CACHE": "default",
    # Live data moves: `shardmap assign` refuses ranges a move owns.
    "MAP_EDIT_GUARDS": ["migrations_tooling.guards.refuse_ranges_of_active_moves"],
    # Live data moves: `migrate_shards` orders additive migrations around them and refuses the rest.
    "MIGRATION_COORDINATOR": "migrations_tooling.ddl.coordinate_migrations",
    # Mirrored reads while a move catches up (SHARDMOVE["MIRROR_READS_SHARE"], docs/data-moves.md).
    "READ_OBSERVERS": ["migrations_tooling.mirror.observe_read"],
}

# --- Redis: the general cache ---------------------------------------------------------------------

# REDIS_URL for one Redis, or REDIS_CLUSTER_NODES for a Redis Cluster (then set CELERY_BROKER_URL too).
CACHES = {"default": default_cache(_env, hint=_HINT_EMBEDDED)}
REDIS_URL = "" if CACHES["default"]["BACKEND"] == CLUSTER_BACKEND else str(CACHES["default"]["LOCATION"])

# --- Sessions: a Redis of their own (apps.platform; see docs/stateless.md) -------------------------
# SESSION_REDIS_URL, or SESSION_REDIS_SENTINELS + SESSION_REDIS_SENTINEL_SERVICE for failover, or
# SESSION_REDIS_CLUSTER_NODES for a Redis Cluster; exactly one of them.
# QQ_SESSION_STORE=database keeps sessions in the control DB for the changeover period only.

QQ_HORIZONTAL = env_bool("QQ_HORIZONTAL", not DEBUG, environ=_env)
SESSION_CACHE_ALIAS = "sessions"
_session_cache = session_cache(_env)
if _session_cache is not None:
    CACHES[SESSION_CACHE_ALIAS] = _session_cache
QQ_SESSION_STORE = session_store(_env)
if QQ_SESSION_STORE == "redis" and _session_cache is None:
    raise ImproperlyConfigured(
        "SESSION_REDIS_URL is not set (nor SESSION_REDIS_SENTINELS or SESSION_REDIS_CLUSTER_NODES): sessions live "
        "in Redis. " + _HINT_EMBEDDED
    )
SESSION_ENGINE = SESSION_ENGINES[QQ_SESSION_STORE]
SESSION_STORE_RETRY_AFTER = session_retry_after(_env)  # the Retry-After of a 503 while the store is unavailable

# --- Celery -------------------------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL, environ=_env)
if not CELERY_BROKER_URL:
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL is not set, and REDIS_CLUSTER_NODES cannot serve as the broker (Celery does not speak the "
        "cluster protocol): set CELERY_BROKER_URL to a single Redis (redis://HOST:PORT/1) or RabbitMQ (amqp://...)."
    )
CELERY_TASK_ALWAYS_EAGER = False

# --- Content generation: the gRPC service, its Celery jobs and live streams (docs/generation.md) ------

# The client's variables (target, token, TLS, deadline, retries, breaker) have one reader with one set of
# defaults and limits: contentgen_service.client.ClientConfig.from_env, built once here.
_CONTENTGEN_CLIENT = env_contentgen_client(environ=_env)
_CONTENTGEN_TIMEOUT = _CONTENTGEN_CLIENT.timeout_seconds
CONTENTGEN: dict[str, Any] = {
    # Client of the service (contentgen_service.client): where it is, the shared token, TLS.
    "TARGET": _CONTENTGEN_CLIENT.target,
    "TOKEN": _CONTENTGEN_CLIENT.token,
    "TLS": _CONTENTGEN_CLIENT.tls,
    "TLS_CA_FILE": str(_CONTENTGEN_CLIENT.tls_ca_file) if _CONTENTGEN_CLIENT.tls_ca_file else None,
    "TLS_SERVER_NAME": _CONTENTGEN_CLIENT.tls_server_name,
    # Deadline of every generation call, from a job or a live stream.
    "TIMEOUT_SECONDS": _CONTENTGEN_TIMEOUT,
    # gRPC-level retries of UNAVAILABLE within one call, and the per-process circuit breaker.
    "MAX_ATTEMPTS": _CONTENTGEN_CLIENT.max_attempts,
    "BREAKER_FAILURES": _CONTENTGEN_CLIENT.breaker_failures,
    "BREAKER_RESET_SECONDS": _CONTENTGEN_CLIENT.breaker_reset_seconds,
    # Job-level retries: claims a generation may use before a retryable failure becomes final, and the
    # exponential backoff (with jitter) between them.
    # Retries are budgeted by time from creation (capped exponential backoff with jitter); the attempt cap
    # is a safety net. A call refused by the client's open circuit is not an attempt.
    "RETRY_BUDGET_SECONDS": env_float("CONTENTGEN_RETRY_BUDGET_SECONDS", 600.0, minimum=1, environ=_env),
    "JOB_MAX_ATTEMPTS": env_int("CONTENTGEN_JOB_MAX_ATTEMPTS", 30, minimum=1, maximum=1000, environ=_env),
    "RETRY_BACKOFF_SECONDS": env_float("CONTENTGEN_RETRY_BACKOFF_SECONDS", 2.0, minimum=0.05, environ=_env),
    "RETRY_BACKOFF_MAX_SECONDS": env_float("CONTENTGEN_RETRY_BACKOFF_MAX_SECONDS", 60.0, minimum=0.05, environ=_env),
    # Celery time limits follow the call deadline; a claim older than the hard limit is abandoned
    # (its holder was killed) and may be taken over.
    "JOB_SOFT_TIME_LIMIT": int(_CONTENTGEN_TIMEOUT) + 5,
    "JOB_TIME_LIMIT": int(_CONTENTGEN_TIMEOUT) + 10,
    "CLAIM_LEASE_SECONDS": int(_CONTENTGEN_TIMEOUT) + 10,
    # A generation created on the page waits this long before its job runs, so that the page's live
    # stream gets to generate it while the user watches; without JavaScript the job still does it.
    "PAGE_JOB_DELAY_SECONDS": env_float("CONTENTGEN_PAGE_JOB_DELAY_SECONDS", 3.0, minimum=0, environ=_env),
    # A stream waiting on a generation running elsewhere re-reads it this often.
    "STREAM_POLL_SECONDS": env_float("CONTENTGEN_STREAM_POLL_SECONDS", 0.5, minimum=0.05, maximum=10, environ=_env),
    # The sweeper in every worker (apps.content.sweeper): how often it looks (0: off), and how late a
    # queued row's job must be before it is sent again. Also the defaults of `generations_requeue`.
    "SWEEP_INTERVAL_SECONDS": env_float("CONTENTGEN_SWEEP_INTERVAL_SECONDS", 30.0, minimum=0, environ=_env),
    "SWEEP_OVERDUE_SECONDS": env_float("CONTENTGEN_SWEEP_OVERDUE_SECONDS", 30.0, minimum=0, environ=_env),
}
# Generation jobs: acknowledged only once done (a worker killed mid-job leaves the message to be delivered
# again), one message reserved per worker process at a time; claims make a second delivery harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any]
# A publish that finds the broker down gives up after one quick retry (the row is the outbox and the sweeper
# re-sends), so creating a generation never waits seconds for the broker; workers reconnect on their own.
_PUBLISH_FAILS_FAST = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
if (CELERY_BROKER_URL or "").startswith(("amqp://", "amqps://", "pyamqp://")):
    # RabbitMQ at scale (docs/generation.md, "Broker"): a replicated quorum queue, publisher confirms (a
    # job is sent once the broker has stored it), countdowns by RabbitMQ's native delayed delivery.
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True, **_PUBLISH_FAILS_FAST}
else:
    # Redis redelivers a message not acknowledged within this time; it must exceed the longest retry
    # countdown. A message a killed worker held is re-sent by the sweeper long before that.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, **_PUBLISH_FAILS_FAST}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# --- JSON API: Django REST framework and drf-spectacular (apps.content.api) ------------------------

REST_FRAMEWORK = {
    # Token first, so an unauthenticated request gets 401 with "WWW-Authenticate: Token".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Counted in the shared Redis cache, so the limits hold across app servers. Raise them for load tests.
    "DEFAULT_THROTTLE_RATES": {
        "api_user": env_rate("API_THROTTLE_USER", "1200/min", environ=_env),
        "generation_create": env_rate("API_THROTTLE_CREATE", "120/min", environ=_env),
        "auth_token": env_rate("API_THROTTLE_TOKEN", "60/min", environ=_env),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "QuantumQuill API",
    "DESCRIPTION": "Generate text, follow it live (server-sent events) and read your generations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "PATH_CONVERTER_OVERRIDES": {"snowflake": {"type": "string", "pattern": "^[0-9]{1,19}$"}},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Auth, i18n, static -------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "content:list"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    # request_id: the X-Request-ID of the request being served ("-" outside one); see apps.platform.request_id.
    "filters": {"request_id": {"()": "apps.platform.request_id.RequestIdFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO", environ=_env)},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- File storage and CDN (docs/storage-and-cdn.md) ---------------------------------------------------
# QQ_STORAGE=local (the default, for `make run`): files stay on this machine and the app serves them
#   (static through whitenoise; media through short-lived signed links checked by apps.storage).
# QQ_STORAGE=s3: static files in their own bucket under hashed names, served from the CDN domain;
#   media (exported documents) in a separate private bucket, reached only through short-lived signed URLs.

QQ_STORAGE = (env_str("QQ_STORAGE", "local", environ=_env) or "local").strip().lower()
# How long a signed link to a private file works (S3 allows at most 7 days; keep it short).
QQ_MEDIA_URL_EXPIRE_SECONDS = env_int("QQ_MEDIA_URL_EXPIRE_SECONDS", 300, minimum=1, maximum=604800, environ=_env)
# CloudFront distribution that `manage.py cdn_invalidate` invalidates (optional: --distribution-id).
QQ_CLOUDFRONT_DISTRIBUTION_ID = env_str("QQ_CLOUDFRONT_DISTRIBUTION_ID", "", environ=_env) or ""
# Optional TrueType font for PDF exports (non-Latin text); well-known system fonts are tried otherwise.
QQ_EXPORT_PDF_FONT = env_str("QQ_EXPORT_PDF_FONT", "", environ=_env) or ""
if QQ_EXPORT_PDF_FONT and not Path(QQ_EXPORT_PDF_FONT).is_file():
    raise ImproperlyConfigured(
        f"QQ_EXPORT_PDF_FONT={QQ_EXPORT_PDF_FONT!r} is not a file; name a .ttf font or unset it."
    )

# fpdf2's font subsetting logs every glyph at INFO.
LOGGING["loggers"]["fontTools"] = {"level": "WARNING"}

MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "var" / "media"
STORAGES: dict[str, dict[str, Any]]

if QQ_STORAGE == "local":
    STORAGES = {
        "default": {
            "BACKEND": "apps.storage.backends.SignedLocalMediaStorage",
            "OPTIONS": {"location": MEDIA_ROOT, "querystring_expire": QQ_MEDIA_URL_EXPIRE_SECONDS},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # Static files straight from the source folders (no collectstatic needed), also under gunicorn.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "apps.storage.middleware.LocalStaticFilesMiddleware",
    )
    WHITENOISE_USE_FINDERS = True
elif QQ_STORAGE == "s3":
    from apps.storage.conf import s3_storages_from_env

    STORAGES, STATIC_URL = s3_storages_from_env(_env, expire_seconds=QQ_MEDIA_URL_EXPIRE_SECONDS)
else:
    raise ImproperlyConfigured(f"QQ_STORAGE={QQ_STORAGE!r} is not a storage; expected 'local' or 's3'.")

# --- Security (apps.security; docs/security.md) -------------------------------------------------------
# HTTPS: on by default when not debugging. The app servers sit behind the proxy of deploy/nginx.conf, which
# overwrites X-Forwarded-Proto with the scheme the client used, so Django may trust that header
# (QQ_TRUST_PROXY_HEADERS=0 when clients can reach the app servers directly).
QQ_HTTPS = env_bool("QQ_HTTPS", not DEBUG, environ=_env)
QQ_TRUST_PROXY_HEADERS = env_bool("QQ_TRUST_PROXY_HEADERS", not DEBUG, environ=_env)
if QQ_TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", QQ_HTTPS, environ=_env)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", QQ_HTTPS, environ=_env)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", QQ_HTTPS, environ=_env)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # supervisors probe the app server itself, over plain HTTP
SECURE_HSTS_SECONDS = env_int(
    "DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if QQ_HTTPS else 0, minimum=0, maximum=63_072_000, environ=_env
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", QQ_HTTPS, environ=_env)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", QQ_HTTPS, environ=_env)
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "apps.security.views.csrf_failure"

# NUL bytes are refused before anything reads the request; axes turns lockouts into their response last.
MIDDLEWARE.insert(
    MIDDLEWARE.index("apps.platform.middleware.ServedByMiddleware") + 1, "apps.security.middleware.NulByteMiddleware"
)
MIDDLEWARE.append("axes.middleware.AxesMiddleware")

# Login throttling (django-axes): failures are counted in the control database, so every app server
# sees the same counts and staff can read them; per username and, separately, per client address.
AUTHENTICATION_BACKENDS = ["apps.security.backends.LoginThrottleBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("QQ_LOGIN_FAILURE_LIMIT", 10, minimum=1, maximum=1000, environ=_env)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("QQ_LOGIN_LOCKOUT_SECONDS", 900, minimum=1, maximum=86_400, environ=_env))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "apps.security.throttling.lockout_response"
AXES_CLIENT_IP_CALLABLE = "apps.security.throttling.client_address"
AXES_VERBOSE = False
# Sign-ups per client address (counted in the shared cache), e.g. "20/hour".
QQ_SIGNUP_RATE = env_rate("QQ_SIGNUP_RATE", "20/hour", environ=_env)

# API tokens: hashed, named, revocable; they expire after this many days.
QQ_API_TOKEN_DAYS = env_int("QQ_API_TOKEN_DAYS", 90, minimum=1, maximum=3650, environ=_env)
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = [
    "apps.security.authentication.ApiTokenAuthentication",
    "rest_framework.authentication.SessionAuthentication",
]
# Strict request parsing: bodies over the size answer 413, JSON nested deeper than the depth answers 400.
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["apps.security.parsers.StrictJSONParser"]
QQ_API_JSON_MAX_BYTES = env_int("QQ_API_JSON_MAX_BYTES", 1_048_576, minimum=1024, environ=_env)
QQ_API_JSON_MAX_DEPTH = env_int("QQ_API_JSON_MAX_DEPTH", 32, minimum=2, maximum=200, environ=_env)
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "apps.security.schema.document_error_responses",
]

# --- Observability: metrics, readiness, JSON request logs, traces (docs/observability.md) ---------------
# /metrics and /readyz, per-request metrics and one JSON log line per request; every database alias is
# measured by the instrumented backend (quantumquill.db.postgresql).
QQ_METRICS: dict[str, Any] = {
    "ENABLED": env_bool("QQ_METRICS_ENABLED", True, environ=_env),
    # Cluster state that costs queries (shards, queue depth, moves) is measured at most this often, by one process.
    "CLUSTER_INTERVAL": env_float("QQ_METRICS_CLUSTER_INTERVAL", 5.0, minimum=0.5, maximum=300, environ=_env),
    # Multi-process mode: a worker writes its requests' metrics to the value files this often (pending.py).
    "FLUSH_INTERVAL": env_float("QQ_METRICS_FLUSH_INTERVAL", 1.0, minimum=0.05, maximum=10, environ=_env),
}
if QQ_METRICS["ENABLED"]:
    MIDDLEWARE.insert(
        MIDDLEWARE.index("apps.platform.middleware.RequestIdMiddleware") + 1,
        "apps.observability.middleware.RequestMetricsMiddleware",
    )
    for _config in DATABASES.values():
        _config["ENGINE"] = "quantumquill.db.postgresql"
QQ_LOG_FORMAT = (env_str("QQ_LOG_FORMAT", "json", environ=_env) or "json").strip().lower()
if QQ_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"QQ_LOG_FORMAT={QQ_LOG_FORMAT!r} is not a log format; expected 'json' or 'plain'.")
LOGGING["formatters"]["json"] = {"()": "apps.observability.logs.JsonFormatter"}
LOGGING["handlers"]["console"]["formatter"] = QQ_LOG_FORMAT

# --- Analytics warehouse (apps.analytics, docs/analytics.md) ---------------------------------------
# WAREHOUSE_URL=postgres://... selects a PostgreSQL warehouse; otherwise a DuckDB file (WAREHOUSE_DUCKDB_PATH).
_warehouse_url = env_str("WAREHOUSE_URL", "", environ=_env) or ""
if _warehouse_url:
    parse_database_url(_warehouse_url, variable="WAREHOUSE_URL")  # a malformed URL stops start-up here
WAREHOUSE = {
    "URL": _warehouse_url,
    "DUCKDB_PATH": Path(env_str("WAREHOUSE_DUCKDB_PATH", "", environ=_env) or BASE_DIR / "var" / "warehouse.duckdb"),
    "POLL_SECONDS": env_float("WAREHOUSE_POLL_SECONDS", 0.5, minimum=0.05, maximum=60, environ=_env),
    # The psql an initial load into DuckDB reads the sources with (docs/analytics.md): unset finds one, "off" reads
    # through the Python driver.
    "PSQL": env_str("WAREHOUSE_PSQL", "", environ=_env) or "",
}
