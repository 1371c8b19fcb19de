"""Querysets for sharded models: ``for_user()`` routes by shard key without a global context."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from django.conf import settings
from django.db import models
from django.utils.module_loading import import_string

from .context import current_shard_key, validate_shard_key
from .shardkeys import require_shard_key

logger = logging.getLogger(__name__)

# Called after a routed read of a sharded model ran: (queryset, alias, shard key, rows, seconds). Configured in
# SHARDROUTER["READ_OBSERVERS"]; an observer must return at once (mirrored reads queue their work).
ReadObserver = Callable[[models.QuerySet[Any], str, int, list[Any], float], None]


@cache
def _observers(paths: tuple[str, ...]) -> tuple[ReadObserver, ...]:
    return tuple(import_string(path) for path in paths)


def read_observers() -> tuple[ReadObserver, ...]:
    return _observers(tuple(getattr(settings, "SHARDROUTER", {}).get("READ_OBSERVERS", ())))


_M = TypeVar("_M", bound=models.Model)


class ShardedQuerySet(models.QuerySet[_M]):
    def for_user(self, user_id: int) -> ShardedQuerySet[_M]:
        """Rows owned by ``user_id``, on that user's shard (reads and writes alike)."""
        key = validate_shard_key(user_id)
        attname = require_shard_key(self.model)
        clone = self.filter(**{attname: key})
        # QuerySet passes _hints to every router call it makes (db_for_read, db_for_write).
        clone._hints = {**self._hints, "shard_key": key}  # type: ignore[attr-defined]
        return clone

    def _fetch_all(self) -> None:
        observers = read_observers() if self._result_cache is None and self._db is None else ()  # type: ignore[attr-defined]
        if not observers:
            super()._fetch_all()
            return
        started = time.perf_counter()
        super()._fetch_all()
        seconds = time.perf_counter() - started
        key = self._hints.get("shard_key")  # type: ignore[attr-defined]
        key = current_shard_key() if key is None else key
        rows = self._result_cache
        if key is None or rows is None:
            return
        for observer in observers:
            try:
                observer(self, self.db, key, list(rows), seconds)
            except Exception:  # an observer never fails the read it watches
                logger.exception("Read observer %r failed", observer)

    def _shard_key_from(self, values: dict[str, Any]) -> int | None:
        attname = require_shard_key(self.model)
        if attname not in values:
            return None
        key = validate_shard_key(values[attname])
        hinted = self._hints.get("shard_key")  # type: ignore[attr-defined]
        if hinted is not None and hinted != key:
            raise ValueError(f"{attname}={key} does not match for_user({hinted}); a row belongs to exactly one user.")
        return key

    def create(self, **kwargs: Any) -> _M:
        """Create a row; the row's own shard key routes it when no for_user() or context does."""
        key = self._shard_key_from(kwargs)
        if key is not None and self._db is None and "shard_key" not in self._hints:  # type: ignore[attr-defined]
            return self.for_user(key).create(**kwargs)
        return super().create(**kwargs)


class ShardedManager(models.Manager.from_queryset(ShardedQuerySet)):  # type: ignore[misc]
    """Default manager of ShardedModel."""
