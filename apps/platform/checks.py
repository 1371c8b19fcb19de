"""Statelessness checks (``manage.py check --deploy``): nothing that must outlive a request may stay on one server.

"Horizontal mode" (setting ``QQ_HORIZONTAL``, env ``QQ_HORIZONTAL``, on by
default when DEBUG is off) means several app servers behind a load balancer;
most checks only apply then. IDs are ``platform.E1xx`` (breaks with two
servers) and ``platform.W1xx`` (works, but with a cost worth knowing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.contrib.sessions.backends import cache as cache_sessions
from django.contrib.sessions.backends import cached_db, db, file, signed_cookies
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.files.storage import FileSystemStorage
from django.utils.module_loading import import_string

from quantumquill.redis_cluster_env import CLUSTER_BACKEND

from .cluster_cache import CLUSTER_FIX_HINT, cluster_configuration_errors

SERVER_LOCAL_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache": "the process's memory",
    "django.core.cache.backends.filebased.FileBasedCache": "the server's disk",
    "django.core.cache.backends.dummy.DummyCache": "nowhere (a dummy cache)",
}
# Apps that run jobs inside every web process: with N servers, every job runs N times.
IN_PROCESS_SCHEDULERS = {
    "django_apscheduler": "APScheduler",
    "django_crontab": "django-crontab",
    "django_cron": "django-cron",
    "apscheduler": "APScheduler",
}
FILE_BEAT_SCHEDULERS = {"", "celery.beat:PersistentScheduler", "celery.beat.PersistentScheduler"}
HORIZONTAL_HINT = "Set QQ_HORIZONTAL=0 only if this deployment really runs a single app server."


def horizontal_mode() -> bool:
    """Whether several app servers share the traffic (``QQ_HORIZONTAL``; default: DEBUG is off)."""
    return bool(getattr(settings, "QQ_HORIZONTAL", not settings.DEBUG))


def _checks(*messages: Iterable[CheckMessage]) -> list[CheckMessage]:
    return [message for group in messages for message in group]


@register(Tags.caches, Tags.security, deploy=True)
def check_statelessness(
    *, app_configs: Sequence[AppConfig] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Run every statelessness check; the session-store error check applies even to a single server."""
    messages = _checks(_session_cache_errors_are_visible(), _session_store_has_its_own_redis())
    if horizontal_mode():
        messages += _checks(
            _sessions_are_shared(),
            _caches_are_shared(),
            _media_is_shared(),
            _databases_are_shared(),
            _no_in_process_scheduler(),
        )
    return messages


def _session_store_class() -> type | None:
    try:
        return getattr(import_module(settings.SESSION_ENGINE), "SessionStore", None)
    except ImportError:
        return None


def _cache_backend(alias: str) -> str:
    return str(settings.CACHES.get(alias, {}).get("BACKEND", ""))


def _is_django_redis_backend(backend: str) -> bool:
    """django-redis, or our Redis Cluster cache built on it (both honour ``IGNORE_EXCEPTIONS``)."""
    return "django_redis" in backend or backend == CLUSTER_BACKEND


def _sessions_are_shared() -> Iterable[CheckMessage]:
    engine = settings.SESSION_ENGINE
    store = _session_store_class()
    if store is None:
        yield Error(
            f"SESSION_ENGINE={engine!r} cannot be imported or has no SessionStore.",
            hint="Use apps.platform.session_store (QQ_SESSION_STORE=redis).",
            id="platform.E100",
        )
        return
    if issubclass(store, file.SessionStore):
        yield Error(
            "Sessions are stored in files on this server: a user logged in here is a stranger to every other server.",
            hint="Set QQ_SESSION_STORE=redis and SESSION_REDIS_URL (or SESSION_REDIS_SENTINELS or "
            "SESSION_REDIS_CLUSTER_NODES). " + HORIZONTAL_HINT,
            id="platform.E101",
        )
    elif issubclass(store, signed_cookies.SessionStore):
        yield Warning(
            "Sessions live in signed cookies: logging out cannot revoke a copied cookie on any server.",
            hint="Set QQ_SESSION_STORE=redis so a logout deletes the session for every server.",
            id="platform.W103",
        )
    elif issubclass(store, (cache_sessions.SessionStore, cached_db.SessionStore)):
        alias = settings.SESSION_CACHE_ALIAS
        where = SERVER_LOCAL_CACHES.get(_cache_backend(alias))
        if where is not None:
            yield Error(
                f"Sessions use cache {alias!r}, which keeps them in {where}: other servers cannot see them and a "
                "logout on one server does not hold on the others.",
                hint=f"Point CACHES[{alias!r}] at Redis (SESSION_REDIS_URL or SESSION_REDIS_CLUSTER_NODES). "
                + HORIZONTAL_HINT,
                id="platform.E101",
            )
    elif issubclass(store, db.SessionStore):
        yield Warning(
            "Sessions are read from the control database on every request.",
            hint="Copy them with `manage.py copy_sessions_to_redis`, then set QQ_SESSION_STORE=redis.",
            id="platform.W102",
        )


def _session_cache_errors_are_visible() -> Iterable[CheckMessage]:
    store = _session_store_class()
    alias = settings.SESSION_CACHE_ALIAS
    if store is None or not issubclass(store, cache_sessions.SessionStore) or alias not in settings.CACHES:
        return
    if not _is_django_redis_backend(_cache_backend(alias)):
        return
    cache_config: dict[str, Any] = settings.CACHES[alias]
    options: dict[str, Any] = cache_config.get("OPTIONS", {})
    ignored = options.get("IGNORE_EXCEPTIONS", getattr(settings, "DJANGO_REDIS_IGNORE_EXCEPTIONS", False))
    if ignored:
        yield Error(
            f"Cache {alias!r} holds the sessions but ignores Redis errors: an outage would look like "
            "'no session', log users out and delete their cookies.",
            hint=f"Set CACHES[{alias!r}]['OPTIONS']['IGNORE_EXCEPTIONS'] = False (it overrides "
            "DJANGO_REDIS_IGNORE_EXCEPTIONS).",
            id="platform.E104",
        )


def _redis_servers(location: Any) -> set[str]:
    """``host:port`` of every server a django-redis LOCATION (URL, list or comma list; cluster ``host:port``) names."""
    items = location if isinstance(location, (list, tuple)) else str(location).split(",")
    servers = set()
    for item in (str(raw).strip() for raw in items):
        if "://" not in item:  # a Redis Cluster node, listed as host:port
            servers.add(item)
            continue
        parts = urlsplit(item)
        servers.add(f"{parts.hostname}:{parts.port or 6379}" if parts.scheme != "unix" else parts.path)
    return servers


def _session_store_has_its_own_redis() -> Iterable[CheckMessage]:
    alias = settings.SESSION_CACHE_ALIAS
    store = _session_store_class()
    if store is None or not issubclass(store, cache_sessions.SessionStore) or alias not in settings.CACHES:
        return
    sessions = _redis_servers(settings.CACHES[alias].get("LOCATION", ""))
    others: dict[str, set[str]] = {
        f"cache {name!r}": _redis_servers(cfg.get("LOCATION", ""))
        for name, cfg in settings.CACHES.items()
        if name != alias and "redis" in str(cfg.get("BACKEND", "")).lower()  # django-redis, Django's, our cluster
    }
    broker = getattr(settings, "CELERY_BROKER_URL", "") or ""
    if broker.startswith(("redis://", "rediss://", "unix://")):
        others["the Celery broker"] = _redis_servers(broker)
    shared = sorted(name for name, servers in others.items() if servers & sessions)
    if shared:
        yield Warning(
            f"The session store shares its Redis server with {', '.join(shared)}: memory pressure from them "
            "makes it refuse or (with an evicting policy) drop sessions, which logs users out.",
            hint="Give sessions their own Redis (or Redis Cluster) with maxmemory-policy noeviction "
            "(SESSION_REDIS_URL or SESSION_REDIS_CLUSTER_NODES).",
            id="platform.W105",
        )


@register(Tags.caches)
def check_redis_clusters(
    *, app_configs: Sequence[AppConfig] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """At start-up (``runserver``, ``check``, every command): each cache on a Redis Cluster reaches a real cluster."""
    return [
        Error(problem, hint=CLUSTER_FIX_HINT, id="platform.E112")
        for problem in cluster_configuration_errors(settings.CACHES).values()
    ]


def _caches_are_shared() -> Iterable[CheckMessage]:
    for alias, config in settings.CACHES.items():
        where = SERVER_LOCAL_CACHES.get(str(config.get("BACKEND", "")))
        if where is None or alias == settings.SESSION_CACHE_ALIAS:
            continue
        if alias == "default":
            yield Error(
                f"The default cache keeps its data in {where}: shared state such as read-your-writes pins and "
                "rate limits would differ from server to server.",
                hint="Point CACHES['default'] at Redis (REDIS_URL). " + HORIZONTAL_HINT,
                id="platform.E106",
            )
        else:
            yield Warning(
                f"Cache {alias!r} keeps its data in {where}; each server sees its own copy.",
                hint=f"Use it only for per-process data that may differ between servers, or point CACHES[{alias!r}] "
                "at Redis.",
                id="platform.W107",
            )


def _media_is_shared() -> Iterable[CheckMessage]:
    storages: dict[str, dict[str, Any]] = getattr(settings, "STORAGES", {})
    backend = str(storages.get("default", {}).get("BACKEND", ""))
    try:
        storage_class = import_string(backend)
    except ImportError:
        return  # Django reports an unimportable storage itself
    if isinstance(storage_class, type) and issubclass(storage_class, FileSystemStorage):
        yield Error(
            "Uploaded and generated files (STORAGES['default']) are written to this server's disk: other servers "
            "cannot serve them and they vanish with the server.",
            hint="Use an S3 storage (django-storages) for STORAGES['default']. " + HORIZONTAL_HINT,
            id="platform.E108",
        )


def _databases_are_shared(databases: dict[str, dict[str, Any]] | None = None) -> Iterable[CheckMessage]:
    for alias, config in (settings.DATABASES if databases is None else databases).items():
        if "sqlite" in str(config.get("ENGINE", "")):
            yield Error(
                f"Database {alias!r} is SQLite, a file on one server.",
                hint="Use PostgreSQL (DATABASE_URL / SHARD_DATABASE_URLS). " + HORIZONTAL_HINT,
                id="platform.E109",
            )


def _no_in_process_scheduler(installed_apps: list[str] | None = None) -> Iterable[CheckMessage]:
    installed = {name.split(".")[0] for name in (settings.INSTALLED_APPS if installed_apps is None else installed_apps)}
    for module, label in sorted(IN_PROCESS_SCHEDULERS.items()):
        if module in installed:
            yield Warning(
                f"{label} ({module}) runs scheduled jobs inside the web processes: with N servers each job runs N "
                "times, and stops when that server does.",
                hint="Schedule with a single Celery beat using a shared schedule (django-celery-beat or RedBeat).",
                id="platform.W110",
            )
    if getattr(settings, "CRONJOBS", None):
        yield Warning(
            "CRONJOBS is set: django-crontab installs the jobs into this server's crontab.",
            hint="Schedule with a single Celery beat using a shared schedule (django-celery-beat or RedBeat).",
            id="platform.W110",
        )
    scheduler = str(getattr(settings, "CELERY_BEAT_SCHEDULER", "") or "")
    if getattr(settings, "CELERY_BEAT_SCHEDULE", None) and scheduler in FILE_BEAT_SCHEDULERS:
        yield Warning(
            "Celery beat keeps its schedule state in a local file (PersistentScheduler): two beats would both "
            "send every task, and a moved beat forgets when tasks last ran.",
            hint="Set CELERY_BEAT_SCHEDULER to django_celery_beat.schedulers:DatabaseScheduler (or RedBeat) and run "
            "exactly one beat.",
            id="platform.W111",
        )
