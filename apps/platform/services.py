"""Writes for the platform app: copying database sessions into the Redis session store (one Redis or a cluster).

Each session is written exactly as Django's cache session engine writes it:
key ``<KEY_PREFIX>:<VERSION>:django.contrib.sessions.cache<session key>`` made
by the cache's own key function, value the session dict encoded by the cache's
own serializer and compressor, expiring when the database row does.

Copying is idempotent and never resurrects a logout: a marker key (same expiry)
records that a session was copied, and a session already in Redis is never
overwritten (it is the newer one). A re-run skips both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.sessions.backends.cache import KEY_PREFIX as CACHE_SESSION_PREFIX
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.core.cache import caches

from .cluster_cache import RedisClusterClient

COPY_MARKER_PREFIX = "qq.sessions.copied:"

# KEYS[1]: the session key, KEYS[2]: the copy marker; ARGV[1]: encoded session, ARGV[2]: seconds to live.
# Returns 0 when an earlier run copied it, 1 when copied now, 2 when Redis already had a session under this key.
_COPY_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return 1 end
return 2
"""


@dataclass
class SessionCopyTally:
    """What happened to the database sessions seen so far."""

    copied: int = 0
    copied_before: int = 0
    already_in_redis: int = 0
    unreadable: int = 0
    expired: int = 0

    @property
    def seen(self) -> int:
        return self.copied + self.copied_before + self.already_in_redis + self.unreadable + self.expired

    def add(self, other: SessionCopyTally) -> None:
        self.copied += other.copied
        self.copied_before += other.copied_before
        self.already_in_redis += other.already_in_redis
        self.unreadable += other.unreadable
        self.expired += other.expired


def _session_cache(alias: str) -> Any:
    cache = caches[alias]
    if not hasattr(cache, "client") or not hasattr(cache.client, "encode"):
        raise TypeError(f"Cache {alias!r} is not a django-redis cache; sessions can only be copied into Redis.")
    return cache


def _is_cluster(cache: Any) -> bool:
    return isinstance(cache.client, RedisClusterClient)


def session_copy_keys(*, cache_alias: str, session_key: str) -> tuple[str, str]:
    """The Redis keys of one session and of its copy marker, as the cache session engine makes them.

    On a Redis Cluster the marker carries the session's whole key as its hash tag
    (``...copied:{qq:1:django.contrib.sessions.cache<key>}``), so the two share a
    slot and one script can test and write both atomically. The session key
    itself is Django's, untagged: sessions spread over all masters.
    """
    cache = _session_cache(cache_alias)
    session = str(cache.client.make_key(CACHE_SESSION_PREFIX + session_key))
    if _is_cluster(cache):
        return session, str(cache.client.make_key(COPY_MARKER_PREFIX + "{" + session + "}"))
    return session, str(cache.client.make_key(COPY_MARKER_PREFIX + session_key))


def sessions_copy_batch(*, sessions: list[Session], now: datetime, cache_alias: str, dry_run: bool) -> SessionCopyTally:
    """Copy one batch of database sessions into Redis (or, with ``dry_run``, only report what would happen)."""
    cache = _session_cache(cache_alias)
    redis_client = cache.client.get_client(write=True)
    decoder = DatabaseSessionStore()
    tally = SessionCopyTally()
    planned: list[tuple[str, str, bytes, int]] = []
    for row in sessions:
        ttl = math.floor((row.expire_date - now).total_seconds())
        if ttl < 1:
            tally.expired += 1
            continue
        data = decoder.decode(row.session_data)
        if not data:  # a bad signature (another SECRET_KEY) or corrupt data: nothing a user could log in with
            tally.unreadable += 1
            continue
        key, marker = session_copy_keys(cache_alias=cache_alias, session_key=row.session_key)
        planned.append((key, marker, cache.client.encode(data), ttl))
    if not planned:
        return tally
    pipe = redis_client.pipeline(transaction=False)
    if dry_run:
        for key, marker, _value, _ttl in planned:
            pipe.exists(marker)
            pipe.exists(key)
        answers = pipe.execute()
        outcomes = [
            0 if marked else 2 if present else 1 for marked, present in zip(answers[::2], answers[1::2], strict=True)
        ]
    elif _is_cluster(cache):
        # A cluster pipeline cannot carry scripts: one call each, routed to the slot's master.
        script = redis_client.register_script(_COPY_SCRIPT)
        outcomes = [int(script(keys=[key, marker], args=[value, ttl])) for key, marker, value, ttl in planned]
    else:
        script = redis_client.register_script(_COPY_SCRIPT)
        for key, marker, value, ttl in planned:
            script(keys=[key, marker], args=[value, ttl], client=pipe)
        outcomes = [int(answer) for answer in pipe.execute()]
    tally.copied_before += outcomes.count(0)
    tally.copied += outcomes.count(1)
    tally.already_in_redis += outcomes.count(2)
    return tally
