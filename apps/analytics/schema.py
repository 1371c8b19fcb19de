"""The warehouse's tables: shaped for questions (facts, dimensions, daily aggregates), not for the app.

* ``fact_generation``, ``fact_usage``: one row per source row, keyed by its
  64-bit ID (the same on every shard it ever lived on; a primary key on
  PostgreSQL, kept unique by the sync itself on DuckDB: see ``UNINDEXED``), with the day it
  belongs to, a ``version`` (the commit time of the change that wrote it, in
  microseconds; 0 for rows read by an initial load) and a ``deleted`` flag. A
  deleted row stays as a tombstone so that a late, older change from another
  shard cannot bring it back (see sync.py).
* ``dim_user`` (from the control database), ``dim_day``, ``dim_model``,
  ``dim_shard_range`` (the shard map in force, for "per shard" questions).
* ``agg_generation_daily`` (day x model x status) and ``agg_user_daily``
  (day x user), recomputed for the days a batch of changes touched.
* ``wh_source``: per source database, its slot and the position (LSN) the
  warehouse has applied, advanced in the same transaction as the facts.
"""

from __future__ import annotations

from .engines import Warehouse
from .errors import WarehouseError

SCHEMA_VERSION = 1

TABLES = {
    "wh_meta": "key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL",
    "wh_source": (
        "alias VARCHAR PRIMARY KEY, slot VARCHAR NOT NULL, loaded BOOLEAN NOT NULL DEFAULT FALSE, "
        "position_lsn BIGINT NOT NULL DEFAULT 0, transactions BIGINT NOT NULL DEFAULT 0, "
        "changes BIGINT NOT NULL DEFAULT 0, last_commit_at TIMESTAMP, caught_up_at TIMESTAMP, "
        "error VARCHAR, error_at TIMESTAMP"
    ),
    "wh_position": (
        "alias VARCHAR NOT NULL, source_table VARCHAR NOT NULL, position_lsn BIGINT NOT NULL DEFAULT 0, "
        "error VARCHAR, error_at TIMESTAMP, PRIMARY KEY (alias, source_table)"
    ),
    "fact_generation": (
        "id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, status VARCHAR NOT NULL, model_name VARCHAR NOT NULL, "
        "prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, total_ms DOUBLE PRECISION, "
        "first_token_ms DOUBLE PRECISION, created_at TIMESTAMP NOT NULL, day DATE NOT NULL, "
        "completed_at TIMESTAMP, prompt_bytes BIGINT NOT NULL, output_bytes BIGINT NOT NULL, "
        "error_bytes BIGINT NOT NULL, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL"
    ),
    "fact_usage": (
        "id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, kind VARCHAR NOT NULL, generation_id BIGINT, "
        "tokens BIGINT NOT NULL, created_at TIMESTAMP NOT NULL, day DATE NOT NULL, version BIGINT NOT NULL, "
        "deleted BOOLEAN NOT NULL"
    ),
    "dim_user": "user_id BIGINT NOT NULL, username VARCHAR NOT NULL, is_staff BOOLEAN NOT NULL, date_joined TIMESTAMP",
    "dim_day": "day DATE PRIMARY KEY, week DATE NOT NULL, month DATE NOT NULL, weekday INTEGER NOT NULL",
    "dim_model": "model_name VARCHAR PRIMARY KEY, first_day DATE NOT NULL",
    "dim_shard_range": "lo BIGINT NOT NULL, hi BIGINT NOT NULL, alias VARCHAR NOT NULL, map_version BIGINT NOT NULL",
    "agg_generation_daily": (
        "day DATE NOT NULL, model_name VARCHAR NOT NULL, status VARCHAR NOT NULL, generations BIGINT NOT NULL, "
        "prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL"
    ),
    "agg_user_daily": (
        "day DATE NOT NULL, user_id BIGINT NOT NULL, generations BIGINT NOT NULL, tokens BIGINT NOT NULL, "
        "usage_events BIGINT NOT NULL, rows_written BIGINT NOT NULL, bytes_written BIGINT NOT NULL"
    ),
}

# Lookups for PostgreSQL. DuckDB scans columns with zone maps and gets none: its indexes make an UPDATE of an
# indexed column a delete plus insert, and aggregates are replaced by DELETE + INSERT of the same keys.
INDEXES = {
    "fact_generation_day": "fact_generation (day)",
    "fact_usage_day": "fact_usage (day)",
    "agg_generation_daily_day": "agg_generation_daily (day)",
    "agg_user_daily_day": "agg_user_daily (day, user_id)",
    "dim_user_id": "dim_user (user_id)",
}


# DuckDB's fact tables hold no primary key. DuckDB keeps a key in an ART index: building it cost an initial load
# about a third of its time (inserting the rows, then serializing the index at commit), and no query needs it
# (DuckDB scans a column with zone maps; a lookup of a thousand ids took no longer without it). The sync keeps ids
# unique itself: the change stream inserts only ids it did not find, and a load into a table that holds rows
# checks for a second copy before it commits (DuckDBWarehouse.copy_rows_into).
UNINDEXED = {"duckdb": frozenset({"fact_generation", "fact_usage"})}


def create_schema(wh: Warehouse) -> None:
    """Create missing tables (idempotent); refuse a warehouse written by another schema version."""
    unindexed = UNINDEXED.get(wh.engine, frozenset())
    for name, columns in TABLES.items():
        if name in unindexed:
            columns = columns.replace("id BIGINT PRIMARY KEY", "id BIGINT NOT NULL")
        wh.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    for name, target in INDEXES.items() if wh.engine == "postgresql" else ():
        wh.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
    row = wh.fetchone("SELECT value FROM wh_meta WHERE key = 'schema_version'")
    if row is None:
        wh.execute("INSERT INTO wh_meta (key, value) VALUES ('schema_version', %s)", [str(SCHEMA_VERSION)])
    elif int(row[0]) != SCHEMA_VERSION:
        raise WarehouseError(
            f"The warehouse has schema version {row[0]}, this code writes {SCHEMA_VERSION}; "
            "run `manage.py warehouse rebuild` to rebuild it from the shards."
        )


def drop_schema(wh: Warehouse) -> None:
    for name in TABLES:
        wh.execute(f"DROP TABLE IF EXISTS {name}")


def schema_exists(wh: Warehouse) -> bool:
    return bool(wh.fetchall("SELECT 1 FROM information_schema.tables WHERE table_name = 'wh_source'"))
