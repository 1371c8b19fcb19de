"""PostgreSQL logical replication for one direction of a move: publication, slot, subscription.

A *channel* replicates the move's range from a publisher database to a
subscriber database. Its three objects share one name:

* the publication on the publisher: every sharded table with a row filter on
  the shard key, plus the move's marker row; ``publish = 'insert, update,
  delete'`` (a TRUNCATE cannot be filtered by row, so it is never replicated);
* the logical slot on the publisher, created on its own with
  ``pg_create_logical_replication_slot`` (CREATE SUBSCRIPTION would create it
  over a replication connection and hang when both databases share a cluster);
* the subscription on the subscriber (``create_slot = false``), with
  ``binary = true`` and, on PostgreSQL 16+, ``origin = none`` as a second guard
  against loops (the engine never enables both directions at once anyway).

The forward channel (``qq_move_<id>_fwd``) runs source -> target until the
write cut-over; the reverse channel (``qq_move_<id>_rev``) runs target ->
source after it, so a rollback stays possible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .errors import MoveError
from .pgconn import one, replication_conninfo
from .schema import ShardedTable

# pg_subscription_rel.srsubstate
SYNC_STATES = {
    "i": "initializing",
    "d": "copying",
    "f": "copied",
    "s": "synchronized",
    "r": "ready",
}


_THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"


@dataclass(frozen=True)
class Channel:
    name: str
    publisher: str
    subscriber: str


def forward(move_id: int, source: str, target: str) -> Channel:
    return Channel(f"qq_move_{move_id}_fwd", source, target)


def reverse(move_id: int, source: str, target: str) -> Channel:
    return Channel(f"qq_move_{move_id}_rev", target, source)


# --- publisher side ----------------------------------------------------------------------------------


def publication_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return bool(one(conn, "SELECT 1 FROM pg_publication WHERE pubname = %s", [name]))


def create_publication(
    conn: psycopg.Connection[Any], name: str, tables: list[ShardedTable], *, move_id: int, lo: int, hi: int
) -> bool:
    """Create the row-filtered publication if it does not exist; True if created."""
    if publication_exists(conn, name):
        return False
    members = [sql.SQL("{} WHERE ({})").format(t.ident, t.in_range(lo, hi)) for t in tables]
    members.append(sql.SQL("qq_move_marker WHERE (move_id = {})").format(sql.Literal(move_id)))
    conn.execute(
        sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete')").format(
            sql.Identifier(name), sql.SQL(", ").join(members)
        )
    )
    return True


def publication_tables(conn: psycopg.Connection[Any], name: str) -> set[str]:
    return {
        str(row[0]) for row in conn.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = %s", [name])
    }


def add_to_publication(conn: psycopg.Connection[Any], name: str, table: ShardedTable, *, lo: int, hi: int) -> bool:
    """Add a table (with the range's row filter) to an existing publication; True if added."""
    if table.name in publication_tables(conn, name):
        return False
    conn.execute(
        sql.SQL("ALTER PUBLICATION {} ADD TABLE {} WHERE ({})").format(
            sql.Identifier(name), table.ident, table.in_range(lo, hi)
        )
    )
    return True


def drop_publication(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))


def slot_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return bool(one(conn, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [name]))


def create_slot(conn: psycopg.Connection[Any], name: str, *, timeout: float | None = None) -> bool:
    """Create the logical slot if it does not exist; True if created.

    Creating a logical slot waits for transactions running anywhere on the
    server to finish; ``timeout`` bounds that wait (inside a freeze).
    """
    if slot_exists(conn, name):
        return False
    with conn.transaction():
        if timeout is not None:
            conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{max(1, int(timeout * 1000))}ms"))
            )
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [name])
    return True


def advance_slot_to_now(conn: psycopg.Connection[Any], name: str, *, timeout: float) -> str:
    """Move the slot's start to the current end of the WAL: it will carry only transactions committed later.

    A slot can only be advanced through flushed WAL, so a tiny synchronously
    committed transaction flushes it first (with ``synchronous_commit = off``
    the WAL writer could take up to ``wal_writer_delay``). It writes a logical
    decoding message (subscriptions ignore them) because a transaction that
    wrote nothing is never flushed synchronously. Returns the position.
    """
    position = str(one(conn, "SELECT pg_current_wal_insert_lsn()::text"))
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("SELECT pg_logical_emit_message(true, 'qq_move', 'flush')")
    with conn.transaction():
        conn.execute(
            sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{max(1, int(timeout * 1000))}ms"))
        )
        reached = one(
            conn,
            "SELECT end_lsn >= %s::pg_lsn FROM pg_replication_slot_advance(%s, %s::pg_lsn)",
            [position, name, position],
        )
    if not reached:
        raise MoveError(f"Replication slot {name} could not be advanced to {position}.")
    return position


def drop_slot(conn: psycopg.Connection[Any], name: str, *, timeout: float = 15.0) -> None:
    """Drop a slot once no walsender uses it (stopping a straggler after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [name]).fetchone()
        if row is None:
            return
        if row[0] is None:
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [name])
                return
            except psycopg.errors.ObjectInUse:
                pass
            except psycopg.errors.UndefinedObject:
                return
        elif time.monotonic() > deadline:
            conn.execute("SELECT pg_terminate_backend(%s)", [row[0]])
        time.sleep(0.05)


def drop_sync_slots(conn: psycopg.Connection[Any], subscription_oid: int | None) -> None:
    """Drop table-sync slots a subscription left behind (dropped while it was still copying)."""
    if not subscription_oid:
        return
    names = conn.execute(
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s", [f"pg_{subscription_oid}_sync_%"]
    ).fetchall()
    for (name,) in names:
        drop_slot(conn, name)


@dataclass(frozen=True)
class Lag:
    bytes: int | None
    seconds: float | None
    active: bool


def lag(conn: psycopg.Connection[Any], channel: Channel) -> Lag:
    """How far the channel's subscriber is behind, as the publisher sees it (None: no slot)."""
    row = conn.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, active "
        "FROM pg_replication_slots WHERE slot_name = %s",
        [channel.name],
    ).fetchone()
    if row is None:
        return Lag(None, None, False)
    seconds = one(
        conn,
        "SELECT extract(epoch FROM coalesce(replay_lag, interval '0'))::float8 FROM pg_stat_replication "
        "WHERE application_name = %s ORDER BY backend_start DESC LIMIT 1",
        [channel.name],
    )
    return Lag(int(row[0] or 0), None if seconds is None else float(seconds), bool(row[1]))


# --- subscriber side ---------------------------------------------------------------------------------


def subscription_oid(conn: psycopg.Connection[Any], name: str) -> int | None:
    value = one(conn, f"SELECT oid FROM pg_subscription WHERE subname = %s AND subdbid = {_THIS_DATABASE}", [name])
    return None if value is None else int(value)


def create_subscription(conn: psycopg.Connection[Any], channel: Channel, *, copy_data: bool) -> int:
    """Create (enabled) the channel's subscription if it does not exist; returns its oid."""
    existing = subscription_oid(conn, channel.name)
    if existing is not None:
        return existing
    options = [
        "create_slot = false",
        f"slot_name = {sql.Literal(channel.name).as_string(conn)}",
        f"copy_data = {'true' if copy_data else 'false'}",
        "binary = true",
        "enabled = true",
    ]
    if int(one(conn, "SHOW server_version_num")) >= 160000:
        options.append("origin = none")
    conn.execute(
        sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH ({})").format(
            sql.Identifier(channel.name),
            sql.Literal(replication_conninfo(channel.publisher)),
            sql.Identifier(channel.name),
            sql.SQL(", ".join(options)),
        )
    )
    oid = subscription_oid(conn, channel.name)
    assert oid is not None
    return oid


def refresh_subscription(conn: psycopg.Connection[Any], name: str) -> None:
    """Make the subscription pick up tables added to its publication, copying their current rows first."""
    conn.execute(
        sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = true)").format(sql.Identifier(name))
    )


def disable_subscription(conn: psycopg.Connection[Any], name: str, *, timeout: float = 15.0) -> None:
    """Disable the subscription and wait until its workers have exited (nothing more gets applied)."""
    if subscription_oid(conn, name) is None:
        return
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(name)))
    started = time.monotonic()
    deadline = started + timeout
    while one(conn, "SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL", [name]):
        if time.monotonic() > started + 2:
            # A table-sync worker finishes its COPY before it notices. Workers of a disabled subscription are
            # not restarted, and one stopped mid-transaction has not confirmed it: nothing is lost.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL",
                [name],
            )
        if time.monotonic() > deadline:
            raise MoveError(
                f"Subscription {name} did not stop within {timeout:.0f}s after being disabled; "
                "check the server log of its database, then re-run."
            )
        time.sleep(0.01)


def drop_subscription(conn: psycopg.Connection[Any], name: str) -> int | None:
    """Drop the subscription without touching its slot (the engine drops slots itself); returns its oid."""
    oid = subscription_oid(conn, name)
    if oid is None:
        return None
    disable_subscription(conn, name)
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sql.Identifier(name)))
    conn.execute(sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(name)))
    return oid


@dataclass(frozen=True)
class TableSync:
    table: str
    state: str  # one of SYNC_STATES' keys
    rows_copying: int | None  # rows copied so far by an initial copy in progress


def table_sync(conn: psycopg.Connection[Any], name: str) -> dict[str, TableSync]:
    """Initial-copy state of each table of the subscription (the marker table included)."""
    rows = conn.execute(
        f"""
        SELECT c.relname, sr.srsubstate,
               (SELECT p.tuples_processed FROM pg_stat_progress_copy p
                 WHERE p.relid = sr.srrelid AND p.datid = {_THIS_DATABASE}
                 ORDER BY p.tuples_processed DESC LIMIT 1)
        FROM pg_subscription_rel sr
        JOIN pg_subscription s ON s.oid = sr.srsubid
        JOIN pg_class c ON c.oid = sr.srrelid
        WHERE s.subname = %s AND s.subdbid = {_THIS_DATABASE}
        """,
        [name],
    ).fetchall()
    return {table: TableSync(table, state, None if copied is None else int(copied)) for table, state, copied in rows}


def subscription_errors(conn: psycopg.Connection[Any], name: str) -> tuple[int, int]:
    """(apply errors, sync errors) counted for the subscription since it was created."""
    row = conn.execute(
        "SELECT apply_error_count, sync_error_count FROM pg_stat_subscription_stats WHERE subname = %s", [name]
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
