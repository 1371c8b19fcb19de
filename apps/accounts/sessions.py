"""Which sessions belong to which user, so that they can be ended: after a password change, on deletion.

Sessions live in Redis keyed by a random session key, with no index by user;
this keeps one: a list of the user's session keys in the sessions cache,
written at each login. A key whose session has already expired costs nothing to
end again. (Django also refuses a session whose password hash is stale, which
covers a password change even for a session this list missed.)
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.core.cache import BaseCache, caches

INDEX_MAX = 200  # the newest sessions kept per user; older ones still end through the password hash


def _index_cache() -> BaseCache:
    alias = getattr(settings, "SESSION_CACHE_ALIAS", "default")
    return caches[alias if alias in settings.CACHES else "default"]


def _index_key(user_id: int) -> str:
    return f"user-sessions:{user_id}"


def user_session_add(*, user_id: int, session_key: str) -> None:
    cache = _index_cache()
    keys = [k for k in cache.get(_index_key(user_id)) or [] if k != session_key]
    cache.set(_index_key(user_id), [*keys, session_key][-INDEX_MAX:], timeout=settings.SESSION_COOKIE_AGE)


def user_sessions_end(*, user_id: int, keep: str | None = None) -> int:
    """End every session of the user except ``keep``; the number of sessions ended."""
    cache = _index_cache()
    keys = [k for k in cache.get(_index_key(user_id)) or [] if k != keep]
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    ended = 0
    for key in keys:
        store = store_class(session_key=key)
        if store.exists(key):
            store.delete(key)
            ended += 1
    if keep:
        cache.set(_index_key(user_id), [keep], timeout=settings.SESSION_COOKIE_AGE)
    else:
        cache.delete(_index_key(user_id))
    return ended
