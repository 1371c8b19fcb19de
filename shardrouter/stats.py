"""Reading load from the shard databases: per-user weights for the advisor, per-database counters.

Reads only. Rows and bytes are counted per user on the database that takes the
user's writes; "writes" counts the rows each user inserted within a window,
from the timestamp inside every application-issued ID (``shardrouter.ids``),
so no extra bookkeeping is needed (updates and deletes are not counted).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from django.db import connections

from .ids import EPOCH_MS, TIMESTAMP_SHIFT
from .keyspace import ShardRange
from .shardkeys import require_shard_key, sharded_models

WEIGHTS = ("rows", "bytes", "writes")


def _table_names() -> list[tuple[str, str]]:
    """(table, shard key column) of every sharded model."""
    out = []
    for model in sharded_models():
        key = model._meta.get_field(require_shard_key(model))
        out.append((model._meta.db_table, str(getattr(key, "column", key.name))))
    return out


def user_weights(
    ranges: list[ShardRange] | tuple[ShardRange, ...], *, by: str, window_seconds: float = 3600
) -> dict[int, float]:
    """Each user's weight (``rows``, ``bytes`` or ``writes``) on the database that takes their writes."""
    if by not in WEIGHTS:
        raise ValueError(f"by must be one of {', '.join(WEIGHTS)}")
    first_recent_id = max(0, int(time.time() * 1000 - window_seconds * 1000) - EPOCH_MS) << TIMESTAMP_SHIFT
    measure = {
        "rows": "count(*)",
        "bytes": "sum(pg_column_size(t.*))",
        "writes": "count(*) FILTER (WHERE t.id >= %s)",
    }[by]
    weights: dict[int, float] = defaultdict(float)
    for item in ranges:
        with connections[item.alias].cursor() as cursor:
            for table, key in _table_names():
                params: list[int] = [first_recent_id] if by == "writes" else []
                cursor.execute(
                    f'SELECT t."{key}", {measure} FROM "{table}" t WHERE t."{key}" >= %s AND t."{key}" < %s '
                    f'GROUP BY t."{key}"',
                    [*params, item.lo, item.hi],
                )
                for uid, value in cursor.fetchall():
                    weights[int(uid)] += float(value or 0)
    return {uid: w for uid, w in weights.items() if w > 0}


@dataclass(frozen=True)
class DatabaseCounters:
    """One database's size and the cumulative counters of its sharded tables (pg_stat_user_tables)."""

    alias: str
    rows: int  # live rows of the sharded tables (the statistics collector's count)
    bytes: int  # pg_database_size
    reads: int  # rows read (sequential + index fetches), cumulative
    writes: int  # rows inserted, updated and deleted, cumulative
    error: str = ""


def database_counters(alias: str) -> DatabaseCounters:
    """What ``alias``'s server says about its size and the traffic of its sharded tables; reads only."""
    tables = [name for name, _ in _table_names()]
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(n_live_tup), 0), coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0), "
                "coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0), pg_database_size(current_database()) "
                "FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                [tables],
            )
            rows, reads, writes, size = cursor.fetchone()
    except Exception as exc:  # a database that does not answer is shown as such, not as a crash
        return DatabaseCounters(alias, 0, 0, 0, 0, error=str(exc).strip().splitlines()[0] if str(exc) else repr(exc))
    return DatabaseCounters(alias, int(rows), int(size), int(reads), int(writes))
