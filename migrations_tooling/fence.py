"""The fence: database-enforced write states of a moving range, plus the change log and markers.

Installed on every database that takes part in a move (idempotent DDL):

* ``qq_fence``: at most one row per move and database, ``keys`` = the move's
  range (an exclusion constraint forbids overlapping fences), ``state``:

  - ``tracking``: writes pass and every written key is logged in ``qq_move_change``;
  - ``frozen``: writes are refused with SQLSTATE ``QQ001`` until ``expires_at``;
    once it has passed the fence behaves like ``tracking`` again, so a freeze can
    never outlive its limit, even if the process that set it is killed;
  - ``moved``: writes are refused with SQLSTATE ``QQ002``; the DETAIL
    ``alias=<db> lo=<lo> hi=<hi>`` names where the range's writes now go.

* a ``BEFORE INSERT OR UPDATE OR DELETE ... FOR EACH ROW`` trigger on every
  sharded table that looks the row's shard key up in ``qq_fence`` (old and new
  key on updates). With no fence row (the normal case) it costs one lookup in
  an empty table. Ordinary triggers do not fire in logical-replication apply
  workers, so replication keeps flowing into a fenced database.

* ``qq_move_change``: the change log (move, table, row id, shard key, writing
  transaction's xid8) that lets a cut-over re-verify exactly the rows changed
  since a known-good point (``pg_visible_in_snapshot``).

* ``qq_move_marker``: one row per move, replicated with the range. Bumping it
  on one side and waiting until the other side shows the new value proves the
  other side has applied everything committed before: the catch-up barrier.

The engine's own deletes (cancel, complete) set ``qq.fence_bypass`` for their
transaction; nothing else does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from .errors import MoveError
from .pgconn import one
from .schema import ShardedTable

TRIGGER_NAME = "qq_move_fence"
_INSTALL_LOCK = 0x5157_F3CE  # serialises the DDL below against a concurrent install on the same database

_TABLES = """
CREATE TABLE IF NOT EXISTS qq_fence (
    move_id bigint PRIMARY KEY,
    keys int8range NOT NULL,
    state text NOT NULL CHECK (state IN ('tracking', 'frozen', 'moved')),
    moved_to text NOT NULL DEFAULT '',
    expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT qq_fence_no_overlap EXCLUDE USING gist (keys WITH &&)
);
CREATE TABLE IF NOT EXISTS qq_move_change (
    move_id bigint NOT NULL,
    table_name text NOT NULL,
    row_id bigint NOT NULL,
    shard_key bigint NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE TABLE IF NOT EXISTS qq_move_marker (
    move_id bigint PRIMARY KEY,
    seq bigint NOT NULL DEFAULT 0,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

_FUNCTION = """
CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    fence record;
    k bigint;
    rid bigint;
BEGIN
    IF current_setting('qq.fence_bypass', true) = 'on' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    FOR pass IN 1..2 LOOP
        IF pass = 1 THEN
            CONTINUE WHEN TG_OP = 'INSERT';
            k := OLD.{key}; rid := OLD.{pk};
        ELSE
            CONTINUE WHEN TG_OP = 'DELETE'
                OR (TG_OP = 'UPDATE' AND NEW.{key} IS NOT DISTINCT FROM OLD.{key} AND NEW.{pk} = OLD.{pk});
            k := NEW.{key}; rid := NEW.{pk};
        END IF;
        IF current_setting('transaction_isolation') = 'read committed' THEN
            -- Each query of a trigger gets a fresh snapshot: it sees a fence committed a moment ago.
            SELECT f.move_id, f.keys, f.state, f.moved_to, f.expires_at INTO fence
                FROM qq_fence f WHERE f.keys @> k;
        ELSE
            -- A repeatable-read or serializable snapshot may predate the fence's last change; locking
            -- the row turns that into a serialization failure (40001, retried by such callers) instead
            -- of a write past a freeze.
            SELECT f.move_id, f.keys, f.state, f.moved_to, f.expires_at INTO fence
                FROM qq_fence f WHERE f.keys @> k FOR SHARE;
        END IF;
        CONTINUE WHEN NOT FOUND;
        IF fence.state = 'moved' THEN
            RAISE EXCEPTION 'user % belongs to range % which has moved to database %', k, fence.keys, fence.moved_to
                USING ERRCODE = 'QQ002',
                      DETAIL = format('alias=%s lo=%s hi=%s', fence.moved_to, lower(fence.keys), upper(fence.keys)),
                      HINT = 'Reload the shard map and retry the write on the new database.';
        ELSIF fence.state = 'frozen' AND fence.expires_at > clock_timestamp() THEN
            RAISE EXCEPTION 'user % belongs to range % which is frozen for a cut-over until %', k, fence.keys,
                fence.expires_at
                USING ERRCODE = 'QQ001', HINT = 'Retry in a moment; the freeze lasts at most a few seconds.';
        END IF;
        INSERT INTO qq_move_change (move_id, table_name, row_id, shard_key)
            VALUES (fence.move_id, TG_TABLE_NAME, rid, k);
    END LOOP;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$body$
"""


def _function_name(table: ShardedTable) -> sql.Identifier:
    return sql.Identifier(f"qq_move_fence__{table.key}__{table.pk}")


def install(conn: psycopg.Connection[Any], tables: Sequence[ShardedTable], lock_timeout: float) -> list[str]:
    """Create the fence tables, functions and triggers where missing; returns what was created."""
    created: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_INSTALL_LOCK])
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout * 1000)}ms")))
        if one(conn, "SELECT to_regclass('qq_move_marker')") is None:
            created.append("fence tables")
        conn.execute(_TABLES)
        for table in tables:
            conn.execute(
                sql.SQL(_FUNCTION).format(
                    fn=_function_name(table), key=sql.Identifier(table.key), pk=sql.Identifier(table.pk)
                )
            )
            exists = one(
                conn,
                "SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s AND NOT tgisinternal",
                [table.name, TRIGGER_NAME],
            )
            if not exists:
                conn.execute(
                    sql.SQL(
                        "CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE OR DELETE ON {table} "
                        "FOR EACH ROW EXECUTE FUNCTION {fn}()"
                    ).format(trigger=sql.Identifier(TRIGGER_NAME), table=table.ident, fn=_function_name(table))
                )
                created.append(f"fence trigger on {table.name}")
    return created


def is_installed(conn: psycopg.Connection[Any]) -> bool:
    return one(conn, "SELECT to_regclass('qq_move_marker') IS NOT NULL AND to_regclass('qq_fence') IS NOT NULL")


@dataclass(frozen=True)
class Fence:
    move_id: int
    state: str
    moved_to: str
    expires_at: datetime | None
    expired: bool


def get(conn: psycopg.Connection[Any], move_id: int) -> Fence | None:
    if not is_installed(conn):
        return None
    row = conn.execute(
        "SELECT move_id, state, moved_to, expires_at, coalesce(expires_at <= clock_timestamp(), false) "
        "FROM qq_fence WHERE move_id = %s",
        [move_id],
    ).fetchone()
    return None if row is None else Fence(*row)


def put(conn: psycopg.Connection[Any], move_id: int, lo: int, hi: int, state: str, moved_to: str = "") -> None:
    """Set the move's fence on this database to ``state`` (tracking or moved), creating it if needed."""
    assert state in ("tracking", "moved")
    conn.execute(
        "INSERT INTO qq_fence (move_id, keys, state, moved_to) VALUES (%s, int8range(%s, %s), %s, %s) "
        "ON CONFLICT (move_id) DO UPDATE SET state = EXCLUDED.state, moved_to = EXCLUDED.moved_to, "
        "expires_at = NULL, updated_at = clock_timestamp()",
        [move_id, lo, hi, state, moved_to],
    )


def wait_for_older_snapshots(conn: psycopg.Connection[Any], *, timeout: float) -> bool:
    """Wait until no session of this database holds a snapshot taken before now; False after ``timeout``.

    A repeatable-read transaction that began before a fence row was inserted
    does not see it (its writes go unlogged); once such snapshots are gone,
    every write sees the fence. Like ``CREATE INDEX CONCURRENTLY``'s wait.
    """
    horizon = one(conn, "SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::numeric % 4294967296)::text")
    deadline = time.monotonic() + timeout
    while one(
        conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' AND backend_xmin IS NOT NULL AND age(backend_xmin) > age(%s::xid)",
        [horizon],
    ):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def remove(conn: psycopg.Connection[Any], move_id: int) -> None:
    if is_installed(conn):
        conn.execute("DELETE FROM qq_fence WHERE move_id = %s", [move_id])


def _lock_tables(conn: psycopg.Connection[Any], tables: Sequence[ShardedTable], lock_timeout: float) -> None:
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{max(1, int(lock_timeout * 1000))}ms")))
    # SHARE conflicts with writers' ROW EXCLUSIVE: waits for in-flight writes, then holds new ones until commit.
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.SQL(", ").join(t.ident for t in tables)))


def freeze(
    conn: psycopg.Connection[Any],
    move_id: int,
    tables: Sequence[ShardedTable],
    *,
    max_freeze: float,
    lock_timeout: float,
) -> datetime:
    """Freeze the range on this database for at most ``max_freeze`` seconds; returns when it expires.

    In one transaction: wait (bounded) for in-flight writers to finish, then
    turn the ``tracking`` fence into ``frozen``. Every write that starts after
    the commit sees the fence (triggers query with a fresh snapshot, taken after
    the writer got its table lock), so none can slip past it.
    """
    with conn.transaction():
        _lock_tables(conn, tables, lock_timeout)
        expires = one(
            conn,
            "UPDATE qq_fence SET state = 'frozen', expires_at = clock_timestamp() + make_interval(secs => %s), "
            "updated_at = clock_timestamp() WHERE move_id = %s AND state = 'tracking' RETURNING expires_at",
            [max_freeze, move_id],
        )
    if expires is None:
        raise MoveError(f"Cannot freeze: move {move_id}'s fence on this database is not in the tracking state.")
    return expires  # type: ignore[no-any-return]


def commit_moved(
    conn: psycopg.Connection[Any], move_id: int, tables: Sequence[ShardedTable], *, moved_to: str, lock_timeout: float
) -> bool:
    """The cut-over's commit point: ``frozen`` -> ``moved`` if, and only if, the freeze has not expired.

    The table lock makes the check exact: a writer that got past an expired
    freeze still holds its lock, so this waits for it and then sees the expiry;
    a writer that comes later waits for this commit and then sees ``moved``.
    """
    with conn.transaction():
        _lock_tables(conn, tables, lock_timeout)
        updated = conn.execute(
            "UPDATE qq_fence SET state = 'moved', moved_to = %s, expires_at = NULL, updated_at = clock_timestamp() "
            "WHERE move_id = %s AND state = 'frozen' AND expires_at > clock_timestamp()",
            [moved_to, move_id],
        ).rowcount
    return updated == 1


@dataclass(frozen=True)
class LockHolder:
    """A session holding a lock on a sharded table that the freeze's ``SHARE`` lock has to wait for."""

    pid: int
    table: str
    mode: str
    user: str
    application: str
    state: str
    transaction_seconds: float | None
    query: str

    def describe(self) -> str:
        age = "" if self.transaction_seconds is None else f", transaction open for {self.transaction_seconds:.1f}s"
        app = f", application {self.application!r}" if self.application else ""
        query = " ".join(self.query.split())
        return (
            f"PID {self.pid} holds {self.mode} on {self.table} (user {self.user!r}{app}, {self.state or 'unknown'}"
            f"{age}; last query: {query[:160] or '-'})"
        )


# Table lock modes that conflict with SHARE (what writers, VACUUM FULL, DDL and explicit LOCKs take).
_CONFLICTING_MODES = (
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)


def lock_holders(conn: psycopg.Connection[Any], tables: Sequence[ShardedTable]) -> list[LockHolder]:
    """Other sessions holding a lock that conflicts with ``LOCK TABLE ... IN SHARE MODE``, oldest first."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (a.pid) a.pid, l.relation::regclass::text, l.mode, coalesce(a.usename, ''),
               coalesce(a.application_name, ''), coalesce(a.state, ''),
               extract(epoch FROM clock_timestamp() - a.xact_start)::float8, coalesce(a.query, '')
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.relation IN (SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)
          AND l.mode = ANY(%s::text[])
        ORDER BY a.pid, a.xact_start
        """,
        [[t.name for t in tables], list(_CONFLICTING_MODES)],
    ).fetchall()
    holders = [LockHolder(*row) for row in rows]
    return sorted(holders, key=lambda h: -(h.transaction_seconds or 0.0))


def unfreeze(conn: psycopg.Connection[Any], move_id: int) -> None:
    """Lift a freeze now (a cut-over that aborts does not wait for the expiry)."""
    conn.execute(
        "UPDATE qq_fence SET state = 'tracking', expires_at = NULL, updated_at = clock_timestamp() "
        "WHERE move_id = %s AND state = 'frozen'",
        [move_id],
    )


@contextmanager
def bypass(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A transaction in which the fence trigger lets the engine's own deletes through."""
    with conn.transaction():
        conn.execute("SET LOCAL qq.fence_bypass = 'on'")
        yield conn


# --- change log ---------------------------------------------------------------------------------------


def current_snapshot(conn: psycopg.Connection[Any]) -> str:
    return str(one(conn, "SELECT pg_current_snapshot()::text"))


def changed_keys(conn: psycopg.Connection[Any], move_id: int, since: str | None) -> dict[str, set[int]]:
    """Row IDs per table logged for the move by transactions not visible in snapshot ``since`` (None: all)."""
    if not is_installed(conn):
        return {}
    rows = conn.execute(
        "SELECT DISTINCT table_name, row_id FROM qq_move_change WHERE move_id = %s "
        "AND (%s::text IS NULL OR NOT pg_visible_in_snapshot(xid, %s::text::pg_snapshot))",
        [move_id, since, since],
    ).fetchall()
    keys: dict[str, set[int]] = {}
    for table, row_id in rows:
        keys.setdefault(table, set()).add(int(row_id))
    return keys


def prune_changes(conn: psycopg.Connection[Any], move_id: int, covered_by: str) -> int:
    """Forget log entries of transactions visible in ``covered_by`` (rows verified since)."""
    return conn.execute(
        "DELETE FROM qq_move_change WHERE move_id = %s AND pg_visible_in_snapshot(xid, %s::text::pg_snapshot)",
        [move_id, covered_by],
    ).rowcount


def drop_changes(conn: psycopg.Connection[Any], move_id: int) -> None:
    if is_installed(conn):
        conn.execute("DELETE FROM qq_move_change WHERE move_id = %s", [move_id])


# --- markers (the catch-up barrier) ------------------------------------------------------------------


def marker_init(conn: psycopg.Connection[Any], move_id: int) -> None:
    conn.execute("INSERT INTO qq_move_marker (move_id) VALUES (%s) ON CONFLICT (move_id) DO NOTHING", [move_id])


def marker_bump(conn: psycopg.Connection[Any], move_id: int) -> int:
    """Commit a new marker value on the writing side; everything committed before it precedes it in the WAL."""
    with conn.transaction():
        # A synchronous commit flushes the WAL up to here at once; WAL senders only send flushed WAL, so with
        # asynchronous commits the marker (and everything before it) could wait for the WAL writer (200 ms).
        conn.execute("SET LOCAL synchronous_commit = on")
        seq = one(
            conn,
            "INSERT INTO qq_move_marker (move_id, seq) VALUES (%s, 1) ON CONFLICT (move_id) DO UPDATE "
            "SET seq = qq_move_marker.seq + 1, at = clock_timestamp() RETURNING seq",
            [move_id],
        )
    return int(seq)


def marker_seq(conn: psycopg.Connection[Any], move_id: int) -> int | None:
    value = one(conn, "SELECT seq FROM qq_move_marker WHERE move_id = %s", [move_id])
    return None if value is None else int(value)


def marker_drop(conn: psycopg.Connection[Any], move_id: int) -> None:
    if is_installed(conn):
        conn.execute("DELETE FROM qq_move_marker WHERE move_id = %s", [move_id])


def wait_for_marker(
    replica: psycopg.Connection[Any], move_id: int, seq: int, *, timeout: float, poll: float = 0.002
) -> float | None:
    """Wait until the replica shows marker ``seq``; the seconds it took, or None after ``timeout``."""
    started = time.monotonic()
    while True:
        current = marker_seq(replica, move_id)
        waited = time.monotonic() - started
        if current is not None and current >= seq:
            return waited
        if waited >= timeout:
            return None
        time.sleep(poll if waited < 0.1 else min(0.02, poll * 10))
