"""QuantumQuill settings: every endpoint and secret comes from the environment.

With nothing configured, the embedded stack started by ``make run`` (or
``python -m quantumquill.devstack up``) provides the values through its state
file; production sets the variables itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from quantumquill.devstack.stack import load_state_env
from quantumquill.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_required,
    env_str,
    parse_database_url,
    parse_shard_urls,
)

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
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "shardrouter",
    "apps.accounts",
    "apps.content",
    # --- live data moves (issue #5): `manage.py shardmove` ---
    "migrations_tooling",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
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

DATABASE_ROUTERS = ["shardrouter.router.ShardRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SHARDROUTER = {
    # Apps whose tables live on the shards, keyed by each row's user ID.
    "SHARDED_APPS": ["content"],
    # How often each process checks the control database for a new shard-map version.
    "REFRESH_INTERVAL": env_float("SHARDMAP_REFRESH_INTERVAL", 1.0, minimum=0.05, maximum=60, environ=_env),
    # How long a write waits (retrying) while its range is frozen for a cut-over.
    "WRITE_BUFFER_SECONDS": env_float("SHARD_WRITE_BUFFER_SECONDS", 5.0, minimum=0, maximum=60, environ=_env),
    # After a write, the user's reads stay on the write database this long (read-your-writes).
    "READ_YOUR_WRITES_SECONDS": env_float("SHARD_READ_YOUR_WRITES_SECONDS", 5.0, minimum=0, environ=_env),
    "PIN_CACHE": "default",
}
# --- live data moves (issue #5): `shardmap assign` refuses ranges a move owns -----------------------
SHARDROUTER["MAP_EDIT_GUARDS"] = ["migrations_tooling.guards.refuse_ranges_of_active_moves"]

# --- Redis: the general cache ---------------------------------------------------------------------

REDIS_URL = env_required("REDIS_URL", hint=_HINT_EMBEDDED, environ=_env)
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} is not a Redis URL; expected redis://HOST:PORT/DB.")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "qq",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    },
}

# --- Celery -------------------------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL, environ=_env)
CELERY_TASK_ALWAYS_EAGER = False

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO", environ=_env)},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
