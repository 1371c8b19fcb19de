"""Writes that survive a live cut-over: held while their range is frozen, retried where it moved.

During a write cut-over the source database refuses writes to the moving
range with one of two SQLSTATEs raised by its fence trigger:

* ``QQ001`` (frozen): the range is briefly frozen; the write is retried after
  a short pause, for up to ``WRITE_BUFFER_SECONDS``;
* ``QQ002`` (moved): the range now lives elsewhere; the shard map is reloaded
  at once and the write retried where the new map sends it. If the error's
  DETAIL is ``alias=<alias> lo=<lo> hi=<hi>`` and the reloaded map still sends
  the write to the database that refused it (the new map is not stored yet, or
  the process that should store it died), the write goes to ``<alias>``, and so
  do this process's later writes for that range until the map version changes
  (``ShardMapCache.note_moved``). A move past its commit point therefore never
  blocks writes, whatever happens to the process driving it.

Users therefore see a little latency during a cut-over, not errors (the same
idea as Vitess's query buffering). ``run_sharded_write`` is the one place that
does this; services run their writes through it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, connections, transaction

from .conf import get_settings
from .context import pinned_write_alias, shard_for, validate_shard_key
from .errors import ShardWriteUnavailable
from .router import note_write
from .shardmap import shard_map_cache
from .signals import write_retried

FROZEN_SQLSTATE = "QQ001"
MOVED_SQLSTATE = "QQ002"
FENCE_SQLSTATES = frozenset({FROZEN_SQLSTATE, MOVED_SQLSTATE})

T = TypeVar("T")


_MOVED_DETAIL = re.compile(r"^alias=(?P<alias>\S+) lo=(?P<lo>\d+) hi=(?P<hi>\d+)$")


def _fence_error(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(getattr(current, "diag", None), "sqlstate", None) or getattr(current, "sqlstate", None)
        if code in FENCE_SQLSTATES:
            return current
        current = current.__cause__ or current.__context__
    return None


def fence_sqlstate(exc: BaseException) -> str | None:
    """The fence SQLSTATE behind a database error, or None for any other error."""
    found = _fence_error(exc)
    if found is None:
        return None
    return str(getattr(getattr(found, "diag", None), "sqlstate", None) or getattr(found, "sqlstate", None))


@dataclass(frozen=True)
class MovedTo:
    """Where a QQ002 refusal says the range's writes go now."""

    alias: str
    lo: int
    hi: int


def moved_to(exc: BaseException) -> MovedTo | None:
    """The destination named in a QQ002 error's DETAIL (``alias=<alias> lo=<lo> hi=<hi>``), if any."""
    found = _fence_error(exc)
    detail = getattr(getattr(found, "diag", None), "message_detail", None) if found is not None else None
    match = _MOVED_DETAIL.match(detail or "")
    if match is None or match["alias"] not in settings.DATABASES:
        return None
    return MovedTo(match["alias"], int(match["lo"]), int(match["hi"]))


def run_sharded_write(*, user_id: int, work: Callable[[], T], max_wait: float | None = None) -> T:
    """Run ``work`` in one transaction on ``user_id``'s write database, riding out cut-overs.

    ``work`` runs inside ``shard_for(user_id)``, with every query for that
    user pinned to the database chosen for this attempt. If the database
    refuses the write because the user's range is frozen or has moved, the
    transaction is rolled back and ``work`` runs again (so it must not have
    side effects outside the database), until ``max_wait`` seconds pass.
    Called inside an open transaction on that database, it runs ``work`` once
    in a savepoint: only the outermost caller can retry a whole transaction.
    """
    key = validate_shard_key(user_id)
    budget = get_settings().write_buffer_seconds if max_wait is None else max_wait
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        alias = shard_map_cache.write_alias(key)
        note_write(key)  # the queries below use the pinned alias and never reach the router
        if connections[alias].in_atomic_block:
            # Inside a caller's transaction a refused write cannot be retried on its own (the
            # whole transaction is lost), so run once and let a fence error reach the caller.
            with shard_for(key), pinned_write_alias(key, alias), transaction.atomic(using=alias):
                return work()
        try:
            with shard_for(key), pinned_write_alias(key, alias), transaction.atomic(using=alias):
                return work()
        except DatabaseError as exc:
            code = fence_sqlstate(exc)
            if code is None:
                raise
            attempt += 1
            write_retried.send(
                sender=run_sharded_write, alias=alias, reason="frozen" if code == FROZEN_SQLSTATE else "moved"
            )
            if time.monotonic() >= deadline:
                raise ShardWriteUnavailable(
                    f"Writes for user {key} were refused by {alias!r} ({'frozen' if code == FROZEN_SQLSTATE else 'moved'}) "
                    f"for over {budget:.1f}s; a data move is in progress or stuck. Check `manage.py shardmove status`."
                ) from exc
            if code == MOVED_SQLSTATE:
                refreshed = shard_map_cache.refresh()
                destination = moved_to(exc)
                if destination is not None and destination.lo <= key < destination.hi:
                    if refreshed.write_alias(key) == alias and destination.alias != alias:
                        shard_map_cache.note_moved(destination.lo, destination.hi, destination.alias)
                    if attempt <= 2:
                        continue  # the database said where to go: no need to wait
            # Short jittered pauses: a cut-over freeze lasts a few hundred milliseconds.
            time.sleep(min(0.005 * (2 ** min(attempt, 5)), 0.1) * random.uniform(0.5, 1.0))
            if code == FROZEN_SQLSTATE and attempt % 5 == 0:
                shard_map_cache.refresh()
