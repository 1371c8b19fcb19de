"""Redis settings read from the environment: URLs, Sentinel addresses, cluster nodes and the sessions cache.

Sessions get a Redis of their own (``SESSION_REDIS_URL``, a Sentinel-managed
primary via ``SESSION_REDIS_SENTINELS``, or a Redis Cluster via
``SESSION_REDIS_CLUSTER_NODES``, see ``redis_cluster_env``), apart from the general cache
(``REDIS_URL``) and the Celery broker: a cache may evict, a session store must
not. Every malformed value raises ``ImproperlyConfigured`` naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import ImproperlyConfigured

from quantumquill.env import env_float, env_int, env_str
from quantumquill.redis_cluster_env import cluster_cache, require_one_form

REDIS_URL_FORM = "redis://[:PASSWORD@]HOST:PORT/DB (or rediss://... for TLS, unix:///path/to/redis.sock?db=N)"
SENTINELS_FORM = "a comma-separated list of HOST:PORT such as 10.0.0.5:26379,10.0.0.6:26379"

SESSION_STORES = ("redis", "database")
SESSION_ENGINES = {
    "redis": "apps.platform.session_store",
    "database": "django.contrib.sessions.backends.db",
}


def parse_redis_url(url: str, *, variable: str) -> str:
    """Validate a Redis URL and return it stripped; the error names ``variable`` and the expected form."""
    value = url.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError as exc:
        raise ImproperlyConfigured(f"{variable} is not a valid URL ({exc}); expected {REDIS_URL_FORM}.") from None
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(
            f"{variable}={value!r} has scheme {parts.scheme or '(none)'!r}; expected {REDIS_URL_FORM}."
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ImproperlyConfigured(f"{variable}={value!r} names no socket path; expected {REDIS_URL_FORM}.")
        db = parse_qs(parts.query).get("db", ["0"])[-1]
    else:
        if not parts.hostname:
            raise ImproperlyConfigured(f"{variable}={value!r} names no host; expected {REDIS_URL_FORM}.")
        db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ImproperlyConfigured(
            f"{variable}={value!r} selects database {db!r}; a Redis database is a number such as 0. "
            f"Expected {REDIS_URL_FORM}."
        )
    return value


def parse_sentinels(raw: str, *, variable: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (``[::1]:26379`` for IPv6) into ``[(host, port), ...]``."""
    result: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, sep, port_text = item.rpartition(":")
        host = host.strip().removeprefix("[").removesuffix("]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ImproperlyConfigured(f"{variable} item {item!r} is not HOST:PORT; expected {SENTINELS_FORM}.")
        result.append((host, int(port_text)))
    if not result:
        raise ImproperlyConfigured(f"{variable} lists no Sentinel; expected {SENTINELS_FORM}.")
    return result


def session_store(environ: Mapping[str, str]) -> str:
    """Which session store the app servers use: ``redis`` (default) or ``database`` (the changeover period)."""
    value = (env_str("QQ_SESSION_STORE", "redis", environ=environ) or "redis").strip().lower()
    if value not in SESSION_STORES:
        raise ImproperlyConfigured(
            f"QQ_SESSION_STORE={value!r} is not a session store; expected one of {', '.join(SESSION_STORES)}."
        )
    return value


SESSION_FORMS = ("SESSION_REDIS_URL", "SESSION_REDIS_SENTINELS", "SESSION_REDIS_CLUSTER_NODES")
CACHE_FORMS = ("REDIS_URL", "REDIS_CLUSTER_NODES")


def session_cache(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``CACHES`` entry for sessions, or None when no session store (URL, Sentinels or cluster) is set."""
    require_one_form(environ, variables=SESSION_FORMS, store="session store")
    cluster = cluster_cache(environ, prefix="SESSION_REDIS", default_timeout=1.0, ignore_exceptions=False)
    if cluster is not None:
        cluster["TIMEOUT"] = None  # each session sets its own expiry
        return cluster
    url = (env_str("SESSION_REDIS_URL", "", environ=environ) or "").strip()
    sentinels = (env_str("SESSION_REDIS_SENTINELS", "", environ=environ) or "").strip()
    if not url and not sentinels:
        return None
    timeout = env_float("SESSION_REDIS_TIMEOUT", 1.0, minimum=0.05, maximum=30, environ=environ)
    options: dict[str, Any] = {
        # A Redis error must reach the session backend: ignored, it would look like "no session".
        "IGNORE_EXCEPTIONS": False,
        "SOCKET_CONNECT_TIMEOUT": timeout,
        "SOCKET_TIMEOUT": timeout,
    }
    if url:
        location: str | list[str] = parse_redis_url(url, variable="SESSION_REDIS_URL")
    else:
        location = _sentinel_location(environ, options, parse_sentinels(sentinels, variable="SESSION_REDIS_SENTINELS"))
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": location,
        "KEY_PREFIX": "qq",
        "TIMEOUT": None,
        "OPTIONS": options,
    }


def default_cache(environ: Mapping[str, str], *, hint: str) -> dict[str, Any]:
    """The general cache: ``REDIS_URL`` (one Redis) or ``REDIS_CLUSTER_NODES`` (a Redis Cluster), exactly one."""
    require_one_form(environ, variables=CACHE_FORMS, store="general cache")
    cluster = cluster_cache(environ, prefix="REDIS", default_timeout=2.0, ignore_exceptions=None)
    if cluster is not None:
        return cluster
    url = (env_str("REDIS_URL", "", environ=environ) or "").strip()
    if not url:
        raise ImproperlyConfigured(f"REDIS_URL is not set (nor REDIS_CLUSTER_NODES). {hint}")
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": parse_redis_url(url, variable="REDIS_URL"),
        "KEY_PREFIX": "qq",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    }


def session_retry_after(environ: Mapping[str, str]) -> int:
    """Seconds a 503 for an unavailable session store asks the browser to wait (``SESSION_REDIS_RETRY_AFTER``)."""
    return env_int("SESSION_REDIS_RETRY_AFTER", 30, minimum=1, maximum=3600, environ=environ)


def _sentinel_location(
    environ: Mapping[str, str], options: dict[str, Any], sentinels: list[tuple[str, int]]
) -> list[str]:
    service = (env_str("SESSION_REDIS_SENTINEL_SERVICE", "", environ=environ) or "").strip()
    if not service or not all(ch.isalnum() or ch in "-_." for ch in service):
        raise ImproperlyConfigured(
            f"SESSION_REDIS_SENTINEL_SERVICE={service!r} is not a Sentinel service name; set it to the name the "
            "Sentinels monitor (`sentinel monitor NAME ...`), such as mymaster."
        )
    if service != service.lower():
        # django-redis carries the service name as a URL host, which is case-insensitive.
        raise ImproperlyConfigured(
            f"SESSION_REDIS_SENTINEL_SERVICE={service!r} has capital letters; name the Sentinel service in "
            "lowercase (such as mymaster), because it travels as the host of a URL."
        )
    db = env_int("SESSION_REDIS_DB", 0, minimum=0, maximum=15, environ=environ)
    options.update(
        CLIENT_CLASS="django_redis.client.SentinelClient",
        CONNECTION_FACTORY="django_redis.pool.SentinelConnectionFactory",
        SENTINELS=sentinels,
    )
    password = env_str("SESSION_REDIS_PASSWORD", "", environ=environ)
    if password:
        options["PASSWORD"] = password
    sentinel_password = env_str("SESSION_REDIS_SENTINEL_PASSWORD", "", environ=environ)
    if sentinel_password:
        timeout = options["SOCKET_TIMEOUT"]
        options["SENTINEL_KWARGS"] = {
            "password": sentinel_password,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
    # One location, on the primary only: a session read from a lagging replica right after login
    # would look missing, and a missing session is a logout.
    return [f"redis://{service}/{db}?is_master=1"]
