"""Keeping the warehouse in step with every source database: initial load, then the change stream.

Exactly once, whatever crashes: for each source and captured table the
warehouse stores the WAL position (``wh_position``) of the last transaction it
applied, in the same warehouse transaction as the facts. Only after that
commit is the source's slot advanced. A crash before the commit loses the
warehouse transaction and the slot still holds the changes; a crash after it
re-reads transactions whose position is not above the stored one and skips
them. The initial load is one warehouse transaction per source.

Rows that change database during a live move: the warehouse keys facts by the
row's 64-bit ID and keeps, per row, the commit time of the change that wrote
it (``version``); a change is applied only if it is not older. Within one
source the WAL order is the truth (two changes to one row commit in order);
across sources, a move's write cut-over freezes the range between the old
database's last write and the new one's first, so commit times order them.
A deleted row stays as a tombstone so that an older change cannot revive it.

Initial loads read only the ranges the shard map gives to each source, and
wait while a live move is in progress (its copies would otherwise be read
twice or not at all while the map flips).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import DatabaseError

from migrations_tooling.fence import CLEANUP_MESSAGE_PREFIX
from migrations_tooling.models import MoveRange, Phase
from shardrouter.control import conninfo_for
from shardrouter.mapstore import load_map_from_database

from . import aggregates, capture
from .conf import WarehouseConfig
from .copyout import PsqlCopy, find_psql
from .engines import Warehouse, warehouse
from .errors import RowsPresent, WarehouseError
from .facts import (
    FACT_COLUMNS,
    FACT_TABLE,
    INITIAL_SELECT,
    KNOWN_COLUMNS,
    fact_row,
    tombstone,
)
from .hooks import pause_point
from .pgoutput import UNCHANGED, Transaction
from .schema import create_schema

Progress = Callable[[str, int, int], None]  # (what, rows done, rows expected)
FINAL_PHASES = (Phase.COMPLETE, Phase.CANCELLED)
DIMENSIONS_EVERY_SECONDS = 5.0  # users and the shard map are re-read at most this often


def source_aliases() -> list[str]:
    """Every database that holds sharded tables: the control database (monolith mode) and the shards."""
    return list(settings.DATABASES)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@dataclass
class SourceOutcome:
    alias: str
    loaded_rows: int = 0
    transactions: int = 0
    changes: int = 0
    error: str | None = None
    more: bool = False  # the read was cut short by the batch limit
    position: int = 0  # lowest position applied over its tables after this cycle
    commit_times: list[datetime] = field(default_factory=list)  # source commit times of what was applied
    stopped_tables: list[str] = field(default_factory=list)  # tables whose sync is stopped (see wh_position)


@dataclass
class CycleOutcome:
    sources: list[SourceOutcome] = field(default_factory=list)

    @property
    def more(self) -> bool:
        return any(s.more for s in self.sources)


class _CopyReader:
    """A file-like view of a COPY TO STDOUT that counts rows as they pass."""

    def __init__(self, copy: Any, on_rows: Callable[[int], None], *, binary: bool) -> None:
        self._chunks = iter(copy)
        self._pending: list[bytes] = []
        self._size = 0
        self._on_rows = on_rows
        # Binary: one message per row; the header comes with the first row, the trailer is a message of its own.
        self._binary = binary
        self._trailer = binary

    def read(self, size: int = -1) -> bytes:
        # Whole chunks are handed on (a reader may get a little more than ``size``): no re-slicing of a big buffer.
        while size < 0 or self._size < size:
            try:
                chunk = bytes(next(self._chunks))
            except StopIteration:
                if self._trailer:
                    self._on_rows(-1)
                    self._trailer = False
                break
            self._on_rows(1 if self._binary else chunk.count(b"\n"))
            self._pending.append(chunk)
            self._size += len(chunk)
        data = b"".join(self._pending)
        self._pending, self._size = [], 0
        return data


def active_moves() -> list[str]:
    return [
        f"move {m.id} [{m.lo}, {m.hi}) {m.source} -> {m.target} ({m.phase})"
        for m in MoveRange.objects.exclude(phase__in=FINAL_PHASES).order_by("id")
    ]


class Syncer:
    """One sync process: call ``cycle()`` repeatedly (``follow``)."""

    def __init__(
        self,
        config: WarehouseConfig,
        *,
        aliases: list[str] | None = None,
        progress: Progress | None = None,
        retry_down_after: float = 2.0,
    ) -> None:
        self.config = config
        self.aliases = aliases or source_aliases()
        self.progress = progress
        self.retry_down_after = retry_down_after
        self._down_until: dict[str, float] = {}
        # Kept between cycles (a connection and its checks cost more than a cycle's work); dropped on any error.
        self._conns: dict[str, psycopg.Connection[Any]] = {}
        self._slots: dict[str, str] = {}
        self._schema_ready = False
        self._dimensions_at = 0.0

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._slots.clear()
        self._schema_ready = False
        self._dimensions_at = 0.0

    def _connection(self, alias: str) -> psycopg.Connection[Any]:
        conn = self._conns.get(alias)
        if conn is None or conn.closed:
            conn = psycopg.connect(capture.source_conninfo(alias), autocommit=True, connect_timeout=3)
            conn.execute("SET TIME ZONE 'UTC'")
            self._conns[alias] = conn
        return conn

    def _forget(self, alias: str) -> None:
        conn = self._conns.pop(alias, None)
        if conn is not None:
            conn.close()
        self._slots.pop(alias, None)

    # --- one cycle -------------------------------------------------------------------------------

    def cycle(self) -> CycleOutcome:
        try:
            return self._cycle()
        except Exception:
            self.close()  # start from fresh checks next time (the warehouse may have been rebuilt, ...)
            raise

    def _cycle(self) -> CycleOutcome:
        outcome = CycleOutcome()
        with warehouse(self.config) as wh:
            if not self._schema_ready:
                create_schema(wh)
                self._schema_ready = True
            if time.monotonic() - self._dimensions_at > DIMENSIONS_EVERY_SECONDS:
                self._refresh_dimensions(wh)
                self._dimensions_at = time.monotonic()
            failures = self._ensure_capture(wh)
            for alias in self.aliases:
                result = SourceOutcome(alias)
                outcome.sources.append(result)
                if alias not in self._slots:
                    result.error = failures.get(alias, f"{alias} is unreachable; retried shortly.")
                    continue
                try:
                    self._sync_source(wh, self._connection(alias), alias, self._slots[alias], result)
                except (psycopg.OperationalError, DatabaseError) as exc:
                    self._forget(alias)
                    self._source_down(wh, alias, exc)
                    result.error = _one_line(exc)
                except (WarehouseError, psycopg.Error) as exc:
                    self._forget(alias)
                    self._record_error(wh, alias, _one_line(exc))
                    result.error = _one_line(exc)
            if any(s.loaded_rows for s in outcome.sources):
                pause_point("load:committed")
            aggregates.refresh_stale(wh)
        return outcome

    def _ensure_capture(self, wh: Warehouse) -> dict[str, str]:
        """Slots of every reachable source (created before any initial load reads a snapshot); returns failures."""
        failures: dict[str, str] = {}
        for alias in self.aliases:
            if alias in self._slots or self._down_until.get(alias, 0) > time.monotonic():
                continue
            try:
                slot = capture.ensure_capture(self._connection(alias))
                wh.execute(
                    "INSERT INTO wh_source (alias, slot) VALUES (%s, %s) ON CONFLICT (alias) DO UPDATE SET slot = excluded.slot",
                    [alias, slot],
                )
                for table in KNOWN_COLUMNS:
                    wh.execute(
                        "INSERT INTO wh_position (alias, source_table) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        [alias, table],
                    )
                self._slots[alias] = slot
            except psycopg.OperationalError as exc:
                self._forget(alias)
                failures[alias] = self._source_down(wh, alias, exc)
            except (WarehouseError, psycopg.Error) as exc:
                self._forget(alias)
                self._record_error(wh, alias, _one_line(exc))
                failures[alias] = _one_line(exc)
        return failures

    def _sync_source(
        self, wh: Warehouse, conn: psycopg.Connection[Any], alias: str, slot: str, result: SourceOutcome
    ) -> None:
        self._down_until.pop(alias, None)
        row = wh.fetchone("SELECT loaded FROM wh_source WHERE alias = %s", [alias])
        if not (row and row[0]):
            result.loaded_rows = self._initial_load(wh, conn, alias)
        batch = capture.read_changes(conn, slot, max_changes=self.config.batch_changes)
        positions = self._apply(wh, alias, batch.transactions, batch.upto_lsn if batch.complete else 0, result)
        result.more = not batch.complete
        # Only now, with the warehouse committed: let the source recycle what was applied.
        following = [p for table, p in positions.items() if table not in result.stopped_tables]
        # Stopped tables hold the slot back, not the answer to "is everything else in?".
        result.position = min(following) if following else max(positions.values())
        if result.changes:
            pause_point("apply:committed")
        capture.advance(conn, slot, min(positions.values()))

    # --- initial load ----------------------------------------------------------------------------

    def _initial_load(self, wh: Warehouse, conn: psycopg.Connection[Any], alias: str) -> int:
        try:
            return self._load(wh, conn, alias, skip_present=False)
        except RowsPresent:  # rows of this source are already in (a range that moved): again, skipping them
            return self._load(wh, conn, alias, skip_present=True)

    def _load(self, wh: Warehouse, conn: psycopg.Connection[Any], alias: str, *, skip_present: bool) -> int:
        moves = active_moves()
        if moves:
            raise WarehouseError(
                f"Initial load of {alias} waits: live moves are in progress ({'; '.join(moves)}). "
                "It starts by itself once they are complete or cancelled."
            )
        shard_map = load_map_from_database()
        owned = [(r.lo, r.hi) for r in shard_map.ranges if r.alias == alias]
        for table, known in KNOWN_COLUMNS.items():
            columns = {
                str(c)
                for (c,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = current_schema()",
                    [table],
                ).fetchall()
            }
            _check_columns(alias, table, columns, known)
        where = " OR ".join(f"(user_id >= {lo} AND user_id < {hi})" for lo, hi in owned) or "false"
        total = 0
        spans: list[date] = []
        # DuckDB takes CSV, which psql reads for it in this transaction's snapshot (copyout.py).
        psql = find_psql(self.config.psql) if wh.copy_format == "csv" else None
        with wh.transaction(), conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0]) if psql else ""  # type: ignore[index]
            for table, select in INITIAL_SELECT.items():
                # One pass over the source per table: the progress bar's total is the planner's estimate.
                expected = _estimated_rows(conn, f"SELECT 1 FROM {table} WHERE {where}")
                fact = FACT_TABLE[table]
                done = 0

                def seen(rows: int, fact: str = fact, expected: int = expected) -> None:
                    nonlocal done
                    done += rows
                    if self.progress:
                        self.progress(f"{alias} {fact}", done, max(expected, done))

                @contextmanager
                def rows(
                    query: str = f"COPY ({select} WHERE {where}) TO STDOUT (FORMAT {wh.copy_format})",
                ) -> Iterator[IO[bytes]]:
                    nonlocal done
                    done = 0  # read from the start (again, if the warehouse asks twice)
                    if psql:
                        with PsqlCopy(psql, capture.source_conninfo(alias), snapshot, query, seen) as copy:
                            yield copy  # type: ignore[misc]
                        return
                    # A savepoint: a read cut short (the warehouse failed mid-COPY) leaves the snapshot usable.
                    with conn.transaction(), conn.cursor() as cur, cur.copy(query) as copy:
                        yield _CopyReader(copy, seen, binary=wh.copy_format == "binary")  # type: ignore[misc]

                scratch = _scratch(self.config, alias, fact)
                # An empty source (a new shard, the control database in sharded mode) costs one index probe.
                if conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {where})").fetchone() == (True,):
                    wh.copy_rows_into(fact, FACT_COLUMNS[fact], rows, scratch, skip_present=skip_present)
                if self.progress:
                    self.progress(f"{alias} {fact}", done, done)
                total += done
                span = wh.loaded_span(fact) if done else None
                spans.extend(span or ())
            # Aggregates are recomputed once per cycle for every source loaded in it (aggregates.refresh_stale),
            # not once per source: the span to redo is recorded with the facts, so a crash cannot lose it.
            aggregates.mark_stale(wh, spans)
            pause_point("load:copied")
            wh.execute(
                "UPDATE wh_source SET loaded = TRUE, caught_up_at = %s, error = NULL, error_at = NULL WHERE alias = %s",
                [now_utc(), alias],
            )
        return total

    # --- the change stream -----------------------------------------------------------------------

    def _apply(
        self, wh: Warehouse, alias: str, transactions: list[Transaction], upto_lsn: int, result: SourceOutcome
    ) -> dict[str, int]:
        """Apply what the stored positions do not cover yet, in one warehouse transaction; returns the new positions."""
        with wh.transaction():
            positions = {
                str(t): int(p)
                for t, p in wh.fetchall("SELECT source_table, position_lsn FROM wh_position WHERE alias = %s", [alias])
            }
            stopped: dict[str, int] = {}
            pending: dict[str, dict[int, tuple[str, dict[str, Any], int]]] = {t: {} for t in KNOWN_COLUMNS}
            errors: dict[str, str] = {}
            last_commit: datetime | None = None
            for txn in transactions:
                skip_cleanup = any(prefix == CLEANUP_MESSAGE_PREFIX for prefix, _ in txn.messages)
                version = micros(txn.commit_time)
                applied = False
                for table in KNOWN_COLUMNS:
                    if table not in positions or txn.end_lsn <= positions[table]:
                        continue
                    problem = _problem(alias, table, txn)
                    if problem:
                        errors[table] = problem
                        stopped[table] = positions.pop(table)
                        continue
                    if not skip_cleanup:
                        for change in txn.changes:
                            if change.table == table:
                                rowid = int(str(change.row["id"]))
                                previous = pending[table].get(rowid)
                                row = dict(change.row)
                                if previous and previous[0] != "delete":
                                    row = {**previous[1], **{k: v for k, v in row.items() if v is not UNCHANGED}}
                                pending[table][rowid] = (change.op, row, version)
                                result.changes += 1
                    positions[table] = txn.end_lsn
                    applied = True
                if applied:
                    result.transactions += 1
                    result.commit_times.append(txn.commit_time)
                    last_commit = txn.commit_time.replace(tzinfo=None)
            days = self._write_facts(wh, pending)
            aggregates.refresh_days(wh, days)
            for table in list(positions):
                positions[table] = max(positions[table], upto_lsn)
                wh.execute(
                    "UPDATE wh_position SET position_lsn = %s WHERE alias = %s AND source_table = %s",
                    [positions[table], alias, table],
                )
            result.stopped_tables = sorted(errors)
            for table in KNOWN_COLUMNS:
                problem = errors.get(table)
                wh.execute(
                    "UPDATE wh_position SET error = %s, error_at = CASE WHEN %s THEN %s ELSE NULL END "
                    "WHERE alias = %s AND source_table = %s",
                    [problem, problem is not None, now_utc(), alias, table],
                )
            if result.changes:
                pause_point("apply:written")
            wh.execute(
                "UPDATE wh_source SET transactions = transactions + %s, changes = changes + %s, "
                "last_commit_at = coalesce(%s, last_commit_at), caught_up_at = CASE WHEN %s THEN %s ELSE caught_up_at END, "
                "error = NULL, error_at = NULL WHERE alias = %s",
                [result.transactions, result.changes, last_commit, upto_lsn > 0, now_utc(), alias],
            )
        return {**positions, **stopped} or {"-": 0}

    def _write_facts(self, wh: Warehouse, pending: dict[str, dict[int, tuple[str, dict[str, Any], int]]]) -> set[date]:
        days: set[date] = set()
        for table, rows in pending.items():
            if not rows:
                continue
            fact = FACT_TABLE[table]
            columns = FACT_COLUMNS[fact]
            existing: dict[int, dict[str, Any]] = {}
            ids = list(rows)
            for i in range(0, len(ids), 1000):
                chunk = ids[i : i + 1000]
                marks = ", ".join(["%s"] * len(chunk))
                for values in wh.fetchall(f"SELECT {', '.join(columns)} FROM {fact} WHERE id IN ({marks})", chunk):
                    record = dict(zip(columns, values, strict=False))
                    existing[int(record["id"])] = record
                    days.add(record["day"])
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            for rowid, (op, row, version) in rows.items():
                before = existing.get(rowid)
                if before is not None and int(before["version"]) > version:
                    continue  # an older change arriving after a newer one (another shard): the newer one stands
                if op == "delete":
                    record = tombstone(table, row, version=version)
                    if before is not None:  # keep the row's values (its day stays counted correctly), mark it
                        record = {**before, "version": version, "deleted": True}
                else:
                    record = fact_row(table, row, version=version, existing=before)
                    days.add(record["day"])
                (updates if before is not None else inserts).append(record)
            wh.insert_rows(fact, columns, [[r[c] for c in columns] for r in inserts])
            wh.update_rows(fact, columns, [[r[c] for c in columns] for r in updates])
        return days

    # --- dimensions and bookkeeping ----------------------------------------------------------------

    def _refresh_dimensions(self, wh: Warehouse) -> None:
        """Users and the shard map from the control database, when they changed (skipped while it is down)."""
        try:
            with psycopg.connect(conninfo_for("default"), autocommit=True, connect_timeout=3) as control:
                signature = str(control.execute("SELECT count(*), coalesce(max(id), 0) FROM auth_user").fetchone())
                if aggregates.meta(wh, "users_signature") != signature:
                    users = control.execute("SELECT id, username, is_staff, date_joined FROM auth_user").fetchall()
                    with wh.transaction():
                        aggregates.replace_users(wh, users)
                        aggregates.set_meta(wh, "users_signature", signature)
            shard_map = load_map_from_database()
        except (psycopg.OperationalError, DatabaseError):  # the control database is down: keep the last copy
            return
        if aggregates.meta(wh, "map_version") != str(shard_map.version):
            with wh.transaction():
                aggregates.replace_shard_ranges(
                    wh, shard_map.version, [(r.lo, r.hi, r.alias) for r in shard_map.ranges]
                )
                aggregates.set_meta(wh, "map_version", shard_map.version)

    def _source_down(self, wh: Warehouse, alias: str, exc: Exception) -> str:
        self._down_until[alias] = time.monotonic() + self.retry_down_after
        message = f"{alias} is unreachable ({_one_line(exc)}); its changes wait in its slot."
        self._record_error(wh, alias, message)
        return message

    def _record_error(self, wh: Warehouse, alias: str, message: str) -> None:
        wh.execute(
            "INSERT INTO wh_source (alias, slot, error, error_at) VALUES (%s, '', %s, %s) "
            "ON CONFLICT (alias) DO UPDATE SET error = excluded.error, error_at = excluded.error_at",
            [alias, message, now_utc()],
        )

    # --- loops ---------------------------------------------------------------------------------------

    def catch_up(self, *, timeout: float = 300.0) -> CycleOutcome:
        """Cycles until every change committed on a reachable source before the call is in the warehouse.

        Sources that fail are reported in the outcome, not waited for.
        """
        targets: dict[str, int] = {}
        for alias in self.aliases:
            try:
                with capture.source_connection(alias) as conn:
                    targets[alias] = capture.wal_insert_position(conn)
            except psycopg.OperationalError:
                pass
        deadline = time.monotonic() + timeout
        total = CycleOutcome()
        while True:
            outcome = self.cycle()
            total = _merge(total, outcome)
            reached = {s.alias: s.position for s in outcome.sources if s.error is None}
            waiting = [a for a, lsn in targets.items() if a in reached and reached[a] < lsn]
            if not waiting or time.monotonic() > deadline:
                self.close()
                return total
            if not outcome.more:
                time.sleep(0.05)

    def follow(
        self,
        stop: Callable[[], bool],
        on_cycle: Callable[[CycleOutcome], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """Cycle until ``stop()``; a failed cycle (warehouse down, ...) goes to ``on_error`` and is retried."""
        while not stop():
            more = False
            try:
                outcome = self.cycle()
                more = outcome.more
                if on_cycle:
                    on_cycle(outcome)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(exc)
            if not more:
                deadline = time.monotonic() + self.config.poll_seconds
                while time.monotonic() < deadline and not stop():
                    time.sleep(0.05)
        self.close()


def _merge(total: CycleOutcome, outcome: CycleOutcome) -> CycleOutcome:
    """Counts of several cycles added up per source; errors and positions from the latest."""
    by_alias = {s.alias: s for s in total.sources}
    for s in outcome.sources:
        before = by_alias.get(s.alias)
        if before is not None:
            s.loaded_rows += before.loaded_rows
            s.transactions += before.transactions
            s.changes += before.changes
        by_alias[s.alias] = s
    return CycleOutcome(list(by_alias.values()))


def _problem(alias: str, table: str, txn: Transaction) -> str | None:
    if table in txn.truncated:
        return (
            f"{table} was truncated on {alias}; a TRUNCATE cannot be replayed row by row. "
            "Run `manage.py warehouse rebuild` to reload the warehouse from the shards."
        )
    relation = txn.relations.get(table)
    if relation is not None:
        return _column_problem(alias, table, set(relation.columns), KNOWN_COLUMNS[table])
    return None


def _column_problem(alias: str, table: str, columns: set[str], known: Iterable[str]) -> str | None:
    known = set(known)
    if columns == known:
        return None
    added, removed = sorted(columns - known), sorted(known - columns)
    detail = "; ".join(
        part
        for part in (
            f"new column(s) {', '.join(added)}" if added else "",
            f"missing {', '.join(removed)}" if removed else "",
        )
        if part
    )
    return (
        f"The schema of {table} on {alias} changed ({detail}) and the warehouse loader does not know it; "
        f"{table}'s sync is stopped here, nothing was loaded past it. Update apps/analytics/facts.py for the new "
        "schema and deploy (sync resumes from this point), or `manage.py warehouse rebuild`."
    )


def _check_columns(alias: str, table: str, columns: set[str], known: Iterable[str]) -> None:
    problem = _column_problem(alias, table, columns, known)
    if problem:
        raise WarehouseError(problem)


def _estimated_rows(conn: psycopg.Connection[Any], query: str) -> int:
    plan = conn.execute(f"EXPLAIN (FORMAT JSON) {query}").fetchone()[0]  # type: ignore[index]
    return int(plan[0]["Plan"]["Plan Rows"])


def _scratch(config: WarehouseConfig, alias: str, fact: str) -> Path:
    return config.duckdb_path.parent / f".load-{alias}-{fact}.csv"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
