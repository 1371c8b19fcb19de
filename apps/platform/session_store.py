"""Session engine: Django's cache sessions on Redis, but loud when Redis is unreachable.

Django's cache backend treats any cache error as "no such session": the user
looks logged out, the session middleware deletes their cookie, and a POST
fails its CSRF check. Here a Redis outage raises ``SessionStoreUnavailable``
instead, which ``apps.platform.middleware.SessionMiddleware`` answers with a
503; nothing is written, so the session is still there when Redis is back.

Keys and values are exactly those of ``django.contrib.sessions.backends.cache``
(the same class underneath), so switching between the two needs no migration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore
from django.core.cache.backends.base import BaseCache
from django_redis.exceptions import ConnectionInterrupted
from redis import exceptions as redis_errors

# Errors that mean "the store cannot answer now", as opposed to "there is no such session".
# ReadOnlyError: a demoted primary during a Sentinel failover; OutOfMemoryError: a full
# noeviction store refusing writes. On a Redis Cluster: ClusterError (CLUSTERDOWN, a master
# down, TRYAGAIN while a slot moves) and RedisClusterException (a slot with no master, no
# node reachable; apps.platform.cluster_cache raises those as ConnectionError already).
STORE_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
    redis_errors.RedisClusterException,
    ConnectionInterrupted,
)


class SessionStoreUnavailable(Exception):
    """The session store did not answer; the session may well exist, so nothing may be assumed about it."""


@contextmanager
def _store_errors(action: str, *, other_errors_mean_no_session: bool = False) -> Iterator[None]:
    try:
        yield
    except STORE_ERRORS as exc:
        raise SessionStoreUnavailable(f"Session store unavailable while trying to {action}: {exc}") from exc
    except Exception:
        # As Django does on reads: a key the cache refuses (odd characters, too long) is simply no session.
        if not other_errors_mean_no_session:
            raise


class SessionStore(CacheSessionStore):
    """``django.contrib.sessions.backends.cache.SessionStore`` that raises ``SessionStoreUnavailable`` on outages."""

    _cache: BaseCache  # set by the parent's __init__ (caches[SESSION_CACHE_ALIAS])

    def load(self) -> dict[str, Any]:
        session_data = None
        with _store_errors("read a session", other_errors_mean_no_session=True):
            session_data = self._cache.get(self.cache_key)
        return self._loaded(session_data)

    async def aload(self) -> dict[str, Any]:
        session_data = None
        with _store_errors("read a session", other_errors_mean_no_session=True):
            session_data = await self._cache.aget(await self.acache_key())
        return self._loaded(session_data)

    def _loaded(self, session_data: dict[str, Any] | None) -> dict[str, Any]:
        if session_data is not None:
            return dict(session_data)
        self._session_key = None  # no such session: a new key will be issued if anything is stored
        return {}

    def exists(self, session_key: str) -> bool:
        with _store_errors("check a session key"):
            return bool(super().exists(session_key))

    async def aexists(self, session_key: str) -> bool:
        with _store_errors("check a session key"):
            return bool(await super().aexists(session_key))

    def save(self, must_create: bool = False) -> None:
        with _store_errors("save a session"):
            super().save(must_create=must_create)

    async def asave(self, must_create: bool = False) -> None:
        with _store_errors("save a session"):
            await super().asave(must_create=must_create)

    def delete(self, session_key: str | None = None) -> None:
        with _store_errors("delete a session"):
            super().delete(session_key)

    async def adelete(self, session_key: str | None = None) -> None:
        with _store_errors("delete a session"):
            await super().adelete(session_key)
