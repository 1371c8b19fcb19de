"""The shard map in force: loaded from the control database, cached per process, refreshed by version.

Each process keeps an immutable ``ShardMap`` snapshot. At most once per
``REFRESH_INTERVAL`` (1 s by default) a routing decision triggers a check of
the newest version in the control database; a new version replaces the
snapshot atomically, so every process sees a change within about a second of
it being committed, without a restart. Between checks routing costs one
bisect over the ranges and no I/O.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg

from .conf import get_settings
from .control import control_connection
from .errors import ShardMapError
from .keyspace import ShardMap, ShardRange

logger = logging.getLogger(__name__)

_LATEST = "SELECT version, ranges FROM shardrouter_shardmaprevision ORDER BY version DESC LIMIT 1"


def snapshot_from_row(row: tuple[Any, Any] | None) -> ShardMap:
    """The map a ``(version, ranges)`` row of shardrouter_shardmaprevision describes."""
    if row is None:
        raise ShardMapError(
            "The control database holds no shard map. Run `manage.py migrate_shards` (it creates the "
            "initial map, everything on 'default')."
        )
    version, ranges_json = row
    return ShardMap(int(version), tuple(ShardRange.from_json(item) for item in ranges_json))


class ShardMapCache:
    """Process-wide holder of the current snapshot; safe to use from any thread."""

    def __init__(self) -> None:
        self._snapshot: ShardMap | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()
        # Ranges whose writes a database said have moved (SQLSTATE QQ002 naming the new alias), valid only
        # while the map version they were learned on is current: (version, ranges).
        self._moved: tuple[int, tuple[ShardRange, ...]] = (0, ())

    def current(self) -> ShardMap:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() < self._next_check:
            return snapshot
        return self._refresh(force=False)

    def refresh(self) -> ShardMap:
        """Check the control database now (after a write was refused because its range moved)."""
        return self._refresh(force=True)

    def invalidate(self) -> None:
        self._snapshot = None
        self._next_check = 0.0
        self._moved = (0, ())

    def note_moved(self, lo: int, hi: int, alias: str) -> None:
        """Send writes for ``[lo, hi)`` to ``alias`` until the shard map's version changes.

        For a database that refused a write because the range moved (QQ002) before
        the new map is stored or has reached this process: the database, which
        enforces where writes are accepted, is the authority until the map catches up.
        """
        version = self.current().version
        with self._lock:
            known_version, ranges = self._moved
            kept = tuple(r for r in ranges if known_version == version and (r.hi <= lo or r.lo >= hi))
            self._moved = (version, (*kept, ShardRange(lo, hi, alias)))

    def write_alias(self, key: int) -> str:
        """Where writes for ``key`` go: the map, unless a database said the key's range moved (see note_moved)."""
        snapshot = self.current()
        version, ranges = self._moved
        if version == snapshot.version:
            for item in ranges:
                if item.lo <= key < item.hi:
                    return item.alias
        return snapshot.write_alias(key)

    def _refresh(self, *, force: bool) -> ShardMap:
        snapshot = self._snapshot
        # One thread refreshes; the others keep routing on the snapshot they have.
        if not self._lock.acquire(blocking=snapshot is None or force):
            assert snapshot is not None
            return snapshot
        try:
            if not force and self._snapshot is not None and time.monotonic() < self._next_check:
                return self._snapshot
            try:
                with control_connection.cursor() as cur:
                    cur.execute(_LATEST)
                    row = cur.fetchone()
            except psycopg.Error as exc:
                if self._snapshot is None:
                    raise ShardMapError(f"Cannot load the shard map from the control database: {exc}") from exc
                logger.warning("Shard map refresh failed, routing on version %s: %s", self._snapshot.version, exc)
                self._next_check = time.monotonic() + get_settings().refresh_interval
                return self._snapshot
            if self._snapshot is None or row is None or int(row[0]) != self._snapshot.version:
                new = snapshot_from_row(row)
                if self._snapshot is not None:
                    logger.info("Shard map v%s replaces v%s", new.version, self._snapshot.version)
                self._snapshot = new
            self._next_check = time.monotonic() + get_settings().refresh_interval
            return self._snapshot
        finally:
            self._lock.release()


shard_map_cache = ShardMapCache()
os.register_at_fork(after_in_child=shard_map_cache.invalidate)


def current_map() -> ShardMap:
    """The shard map this process routes by (at most REFRESH_INTERVAL seconds old)."""
    return shard_map_cache.current()
