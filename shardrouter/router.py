"""The database router for sharded models.

Follows Django's router contract: it answers only for sharded models (and
for migrations) and returns None for everything else, so other routers and
Django's defaults keep working. For a sharded model the shard key comes from,
in order: the instance hint (``save()``, ``delete()``, related managers), the
``for_user()`` hint, then the current shard context. With none of them the
query raises ``ShardRoutingError``: there is never a silent fallback to the
control database. ``.using(alias)`` bypasses routers entirely, as in Django.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import caches
from django.db import models

from .audit import audit_enabled, observe_relation, observe_route, observe_safely
from .conf import get_settings
from .context import current_shard_key, write_override_for
from .errors import ShardRoutingError
from .shardkeys import shard_key_attname
from .shardkeys import sharded_models as sharded_models  # kept importable from here (public API)
from .shardmap import current_map, shard_map_cache

logger = logging.getLogger(__name__)


def _pin_key(key: int) -> str:
    return f"shardrouter:pin:{key}"


def _routing_key(model: type[models.Model], attname: str, hints: dict[str, Any]) -> int:
    instance = hints.get("instance")
    instance_attname = shard_key_attname(type(instance)) if instance is not None else None
    if instance_attname is not None:
        value = getattr(instance, instance_attname, None)
        if value is not None:
            return int(value)
    hinted = hints.get("shard_key")
    if hinted is not None:
        return int(hinted)
    context_key = current_shard_key()
    if context_key is not None:
        return context_key
    label = model._meta.label
    raise ShardRoutingError(
        f"Cannot route a query on {label}: it is sharded by {attname} and nothing names the user. "
        f"Use {model.__name__}.objects.for_user(user_id), wrap the code in `with shard_for(user_id):`, "
        f"or pick a database explicitly with .using(alias)."
    )


def _pinned_to_writes(key: int) -> bool:
    seconds = get_settings().read_your_writes_seconds
    if seconds <= 0:
        return False
    try:
        return bool(caches[get_settings().pin_cache].get(_pin_key(key)))
    except Exception:
        return True


def _pin_reads_to_writes(key: int) -> None:
    seconds = get_settings().read_your_writes_seconds
    if seconds <= 0:
        return
    try:
        caches[get_settings().pin_cache].set(_pin_key(key), 1, timeout=seconds)
    except Exception as exc:
        logger.warning("Could not pin user %s to the write database: %s", key, exc)


def note_write(key: int) -> None:
    """Record that ``key``'s user is writing: for a while, if their range's reads are switched, reads follow writes.

    Every write pins, not only writes made while this process already sees the
    range's reads switched: a write acknowledged just before this process
    noticed a ``switch-reads`` (maps are re-read once per ``REFRESH_INTERVAL``)
    may not have reached the target yet when the user's next read, on any
    server, is sent there. The router pins the writes it routes itself;
    ``run_sharded_write`` calls this once per attempt, since the queries inside
    it bypass routing.
    """
    _pin_reads_to_writes(key)


class ShardRouter:
    """Route sharded models by the shard map; no opinion on anything else."""

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return self._route(model, hints, for_write=False)

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str | None:
        return self._route(model, hints, for_write=True)

    def _route(self, model: type[models.Model], hints: dict[str, Any], *, for_write: bool) -> str | None:
        if audit_enabled():
            observe_safely(observe_route, model, hints)
        attname = shard_key_attname(model)
        if attname is None:
            return None
        key = _routing_key(model, attname, hints)
        override = write_override_for(key)
        if override is not None:
            return override
        shard_range = current_map().range_for(key)
        if for_write:
            # This user's reads follow their writes for a short while (see note_write).
            _pin_reads_to_writes(key)
            return shard_range.alias
        if not shard_range.reads_switched:
            return shard_range.alias
        if _pinned_to_writes(key):
            # Where this process now sends the user's writes: after a cut-over that the map has not
            # yet shown this process, the database that refused a write told it (note_moved).
            return shard_map_cache.write_alias(key)
        return shard_range.read_alias

    def allow_relation(self, obj1: models.Model, obj2: models.Model, **hints: Any) -> bool | None:
        if audit_enabled():
            observe_safely(observe_relation, obj1, obj2)
        sharded1 = shard_key_attname(type(obj1)) is not None
        sharded2 = shard_key_attname(type(obj2)) is not None
        if not (sharded1 or sharded2):
            return None
        # Relations only ever join rows that live in the same database.
        return sharded1 and sharded2 and obj1._state.db == obj2._state.db

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        config = get_settings()
        if db not in config.shard_databases and db != config.control_database:
            return None
        if app_label in config.sharded_apps:
            return db in config.shard_databases or db == config.control_database
        if db == config.control_database:
            return None
        # Global tables (users, shard map, move state...) exist only in the control database.
        return False


def is_sharded_app(app_label: str) -> bool:
    return app_label in get_settings().sharded_apps
