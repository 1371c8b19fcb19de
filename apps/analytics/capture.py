"""Change capture on one source database: a publication, a logical slot, and reading it over SQL.

Why logical decoding: every change a shard commits is in its WAL already,
with its commit order and commit time, at no cost to the writers (no trigger,
no outbox table); the platform needs ``wal_level = logical`` for live moves
anyway. The slot is read with ``pg_logical_slot_peek_binary_changes`` over an
ordinary connection (no replication protocol) and only *advanced* after the
warehouse has committed what was read, so a crash re-reads rather than loses.

What is not a fact is filtered at the source:

* ``origin = none`` (PostgreSQL 16+) drops every change applied by a
  subscription: a live move's initial copy, its forward catch-up and its
  reverse replication all carry a replication origin;
* the move engine's clean-up deletes (``cancel``, ``complete``) are local, so
  the engine marks their transactions with a logical decoding message
  (``migrations_tooling.fence.CLEANUP_MESSAGE_PREFIX``) and such transactions
  are skipped whole (sync.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from migrations_tooling.direct import direct_conninfo

from .errors import WarehouseError
from .pgoutput import Decoder, Transaction, format_lsn, parse_lsn

PUBLICATION = "qq_warehouse"
CAPTURED_TABLES = ("content_generation", "content_usageevent")
MIN_SERVER_VERSION = 160000


def slot_name(dbname: str) -> str:
    """One slot per source database; the database name makes it unique on a shared server."""
    return ("qq_warehouse_" + re.sub(r"[^a-z0-9_]", "_", dbname.lower()))[:63]


def source_conninfo(alias: str) -> str:
    """The libpq connection string the sync uses for a source.

    Slots, decoding and the load's snapshot are session-bound: where the application's DATABASES go through a
    transaction pooler, this is the server's direct address, the one the move engine uses
    (``SHARDMOVE["DIRECT_CONNECTIONS"]``, docs/connections.md).
    """
    return direct_conninfo(alias)


@contextmanager
def source_connection(alias: str, *, timeout: int = 3) -> Iterator[psycopg.Connection[Any]]:
    """A short-lived autocommit connection to a source (raises ``psycopg.OperationalError`` if it is down)."""
    conn = psycopg.connect(source_conninfo(alias), autocommit=True, connect_timeout=timeout)
    try:
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class Batch:
    transactions: list[Transaction]
    upto_lsn: int  # every transaction committed at or before this position is in ``transactions``
    complete: bool  # False when the change limit cut the read short (read again at once)


def database_name(conn: psycopg.Connection[Any]) -> str:
    return str(conn.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]


def ensure_capture(conn: psycopg.Connection[Any]) -> str:
    """Create the publication and the slot if missing; returns the slot's name."""
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    if version < MIN_SERVER_VERSION:
        raise WarehouseError(
            f"Database {database_name(conn)} runs PostgreSQL {version // 10000}; change capture needs 16 or newer "
            "(it filters out the changes live moves replicate with `origin = none`). Upgrade the server."
        )
    level = conn.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
    if level != "logical":
        raise WarehouseError(
            f"Database {database_name(conn)} has wal_level={level}; run `ALTER SYSTEM SET wal_level = logical` "
            "there and restart the server."
        )
    missing = [
        t
        for t in CAPTURED_TABLES
        if conn.execute("SELECT to_regclass(%s)", [t]).fetchone()[0] is None  # type: ignore[index]
    ]
    if missing:
        raise WarehouseError(
            f"Database {database_name(conn)} lacks {', '.join(missing)}; run `manage.py migrate_shards` first."
        )
    if conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [PUBLICATION]).fetchone() is None:
        conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {', '.join(CAPTURED_TABLES)}")
    slot = slot_name(database_name(conn))
    if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone() is None:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
    return slot


def drop_capture(conn: psycopg.Connection[Any]) -> None:
    slot = slot_name(database_name(conn))
    row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()
    if row is not None:
        if row[0]:
            conn.execute("SELECT pg_terminate_backend(%s)", [row[0]])
        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    conn.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")


def read_changes(conn: psycopg.Connection[Any], slot: str, *, max_changes: int) -> Batch:
    """The committed transactions waiting in the slot, without consuming them."""
    # Decoding reads only flushed WAL: with synchronous_commit = off a commit can be written but not yet flushed,
    # so "everything up to here" is the flush position, never the insert position.
    upto = parse_lsn(str(conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]))  # type: ignore[index]
    decoder = Decoder()
    transactions: list[Transaction] = []
    rows = 0
    with conn.cursor() as cur:
        cur.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, 'proto_version', '1', "
            "'publication_names', %s, 'messages', 'true', 'origin', 'none')",
            [slot, format_lsn(upto), max_changes, PUBLICATION],
        )
        for (data,) in cur:
            rows += 1
            txn = decoder.feed(bytes(data))
            if txn is not None:
                transactions.append(txn)
    complete = rows < max_changes
    return Batch(transactions, upto if complete else (transactions[-1].end_lsn if transactions else 0), complete)


def advance(conn: psycopg.Connection[Any], slot: str, lsn: int) -> None:
    """Mark everything up to ``lsn`` consumed (only after the warehouse committed it)."""
    if lsn <= 0:
        return
    current = conn.execute(
        "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        [format_lsn(lsn), slot],
    ).fetchone()
    if current is None or current[0]:
        return
    conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [slot, format_lsn(lsn)])


@dataclass(frozen=True)
class SlotPosition:
    confirmed_lsn: int
    current_lsn: int

    @property
    def behind_bytes(self) -> int:
        return max(0, self.current_lsn - self.confirmed_lsn)


def slot_position(conn: psycopg.Connection[Any], slot: str) -> SlotPosition | None:
    row = conn.execute(
        "SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = %s",
        [slot],
    ).fetchone()
    if row is None:
        return None
    return SlotPosition(parse_lsn(row[0]), parse_lsn(row[1]))


def wal_insert_position(conn: psycopg.Connection[Any]) -> int:
    """The end of the WAL including commits not yet written out (``synchronous_commit = off``)."""
    return parse_lsn(str(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]))  # type: ignore[index]
