"""The sharded tables a move carries, and checks of their schema on each database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from django.db import models
from psycopg import sql

from shardrouter.shardkeys import sharded_models

from .errors import MoveError
from .pgconn import one

# Tables smaller than this are counted exactly by `plan`; bigger ones are estimated by the planner.
EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ShardedTable:
    """A table of a sharded model: its name, primary key, shard key and columns (model order)."""

    name: str
    pk: str
    key: str
    columns: tuple[str, ...]
    # The model's default order as (column, descending) pairs: how the application lists a user's rows.
    order_by: tuple[tuple[str, bool], ...] = ()

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.name)

    def in_range(self, lo: int, hi: int) -> sql.Composed:
        """``key >= lo AND key < hi`` as SQL (literal bounds: also used in publication row filters)."""
        return sql.SQL("{key} >= {lo} AND {key} < {hi}").format(
            key=sql.Identifier(self.key), lo=sql.Literal(lo), hi=sql.Literal(hi)
        )

    def rows_in_range(self, conn: psycopg.Connection[Any], lo: int, hi: int) -> int:
        """How many rows of the range this table holds on ``conn``'s database (an exact count)."""
        return int(
            one(conn, sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.ident, self.in_range(lo, hi))) or 0
        )

    def row_text(self) -> sql.Composed:
        """The row as text with an explicit column order, so both sides hash identical text."""
        return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(sql.Identifier(c) for c in self.columns))


def sharded_tables() -> list[ShardedTable]:
    """Every table a move must carry, sorted by name (the order locks are taken in)."""
    found: dict[str, ShardedTable] = {}
    for model in sharded_models():
        meta = model._meta
        if not meta.managed or meta.proxy or meta.pk is None:
            continue
        key_field = cast("models.Field[Any, Any]", meta.get_field(str(cast(Any, model).shard_key)))
        found[meta.db_table] = ShardedTable(
            name=meta.db_table,
            pk=str(meta.pk.column),
            key=str(key_field.column),
            columns=tuple(str(f.column) for f in meta.concrete_fields),
            order_by=_order_by(model),
        )
    if not found:
        raise MoveError(
            "No sharded models are installed, so there is nothing to move. Models with a shard key "
            "(shardrouter.models.ShardedModel) in SHARDROUTER['SHARDED_APPS'] are what a move carries."
        )
    return [found[name] for name in sorted(found)]


def _order_by(model: type[models.Model]) -> tuple[tuple[str, bool], ...]:
    """``Meta.ordering`` as (column, descending) pairs; expressions and random order are left out."""
    meta = model._meta
    found = []
    for item in meta.ordering or ():
        if not isinstance(item, str) or item == "?":
            continue
        name = item.lstrip("-")
        field = meta.pk if name == "pk" else meta.get_field(name)
        column = getattr(field, "column", None)
        if column:
            found.append((str(column), item.startswith("-")))
    return tuple(found)


def table_columns(conn: psycopg.Connection[Any], table: str) -> dict[str, str] | None:
    """Column name -> SQL type of ``table`` in the connection's database, or None if it does not exist."""
    if one(conn, "SELECT to_regclass(%s)", [table]) is None:
        return None
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [table],
    ).fetchall()
    return {name: typ for name, typ in rows}


def schema_differences(
    tables: list[ShardedTable], source: psycopg.Connection[Any], target: psycopg.Connection[Any]
) -> list[str]:
    """Why the target cannot receive these tables (missing tables/columns, other types); empty if it can."""
    problems: list[str] = []
    for table in tables:
        theirs = table_columns(target, table.name)
        ours = table_columns(source, table.name)
        if ours is None:
            problems.append(f"table {table.name} does not exist on the source")
            continue
        if theirs is None:
            problems.append(f"table {table.name} does not exist")
            continue
        for column in table.columns:
            if column not in theirs:
                problems.append(f"{table.name}.{column} is missing")
            elif ours.get(column) != theirs[column]:
                problems.append(f"{table.name}.{column} is {theirs[column]} there but {ours.get(column)} here")
        extra = sorted(set(theirs) - set(ours))
        if extra:
            problems.append(f"{table.name} has extra columns {', '.join(extra)}")
    return problems


def identity_index(conn: psycopg.Connection[Any], table: ShardedTable) -> str | None:
    """The unique index on exactly (pk, shard key): the replica identity a row-filtered publication needs."""
    name = one(
        conn,
        """
        SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = %(t)s::regclass AND i.indisunique AND i.indimmediate
          AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = 2 AND i.indnatts = 2
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
               WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = %(cols)s
        ORDER BY c.relname LIMIT 1
        """,
        {"t": table.name, "cols": sorted([table.pk, table.key])},
    )
    return None if name is None else str(name)


def ensure_replica_identity(conn: psycopg.Connection[Any], table: ShardedTable, lock_timeout: float) -> bool:
    """Make the (pk, shard key) index the table's replica identity; True if it had to be changed.

    Updates and deletes can only be filtered by shard key when the key is part
    of the replica identity. ``REPLICA IDENTITY FULL`` also covers it and is
    left alone. The change takes a brief ACCESS EXCLUSIVE lock, so it is done
    with a lock timeout and only when needed; it stays after the move (it only
    adds the shard key to the old-row key that deletes write to the WAL).
    """
    current = conn.execute(
        "SELECT c.relreplident, (SELECT x.relname FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid "
        "WHERE i.indrelid = c.oid AND i.indisreplident) FROM pg_class c WHERE c.oid = %s::regclass",
        [table.name],
    ).fetchone()
    assert current is not None
    index = identity_index(conn, table)
    if index is None:
        raise MoveError(
            f"{table.name} has no unique index on ({table.pk}, {table.key}), which logical replication with a "
            "shard-key filter needs as replica identity. Keep ShardedModel's Meta.constraints and run "
            "`manage.py migrate_shards`."
        )
    if current[0] == "f" or (current[0] == "i" and current[1] == index):
        return False
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout * 1000)}ms")))
        conn.execute(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(table.ident, sql.Identifier(index))
        )
    return True


@dataclass(frozen=True)
class RangeSize:
    rows: int
    bytes: int
    exact: bool


def range_size(conn: psycopg.Connection[Any], table: ShardedTable, lo: int, hi: int) -> RangeSize:
    """Rows and bytes of the range in ``table``: counted when the table is small, else the planner's estimate."""
    size, reltuples = conn.execute(
        "SELECT pg_table_size(c.oid), c.reltuples FROM pg_class c WHERE c.oid = %s::regclass", [table.name]
    ).fetchone() or (0, 0)
    where = table.in_range(lo, hi)
    if size <= EXACT_COUNT_MAX_BYTES or reltuples <= 0:
        rows = table.rows_in_range(conn, lo, hi)
        exact = True
    else:
        plan = one(conn, sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}").format(table.ident, where))
        plan = json.loads(plan) if isinstance(plan, str) else plan
        rows = int(plan[0]["Plan"]["Plan Rows"])
        exact = False
    total_rows = max(float(reltuples), 1.0) if reltuples > 0 else None
    if total_rows:
        per_row = size / total_rows
    else:
        live = int(one(conn, sql.SQL("SELECT count(*) FROM {}").format(table.ident)) or 0)
        per_row = size / live if live else 0
    return RangeSize(rows=rows, bytes=int(rows * per_row), exact=exact)
