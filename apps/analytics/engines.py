"""One small interface over the two warehouse engines: DuckDB (a file) and PostgreSQL (a URL).

The SQL the app sends is written once, with ``%s`` placeholders, in the
subset both engines share; the DuckDB connection rewrites the placeholders.
Bulk loads differ: DuckDB reads a CSV file itself, PostgreSQL takes a binary COPY.

DuckDB allows one process to open a file for writing and then no other
process may open it at all, so connections here are short-lived: the sync
opens the file for a cycle and closes it, readers open it read-only, and both
retry for a few seconds while the other holds it.
"""

from __future__ import annotations

import csv
import fcntl
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import duckdb
import psycopg

from .conf import WarehouseConfig
from .errors import RowsPresent, WarehouseUnavailable

LOCK_WAIT_SECONDS = 15.0

# A writer checkpoints once, when it closes the file (the sync closes it after every cycle), instead of at each
# commit past DuckDB's default 16 MB of log: a first load commits once per source and once for the aggregates,
# and each of those checkpoints cost 0.1-0.2 s at 2,000,000 rows. Every commit is still in the log on disk.
CHECKPOINT_THRESHOLD = "1GB"
# DuckDB reads a pipe a buffer at a time and parses it before reading on; at its default (32 MiB) the source
# waited while DuckDB parsed. Fact rows are a few hundred bytes: 1 MiB is far above any line.
READ_BUFFER_BYTES = 2 << 20
MAX_LINE_BYTES = 1 << 20

# Opens the rows to load, in the engine's ``copy_format``, from the start (a load may read them twice: see
# PostgresWarehouse.copy_rows_into).
CopyRows = Callable[[], AbstractContextManager[IO[bytes]]]

# One DuckDB connection per file at a time within a process: DuckDB shares one database instance between the
# connections of a process, where two writers would run concurrent transactions instead of waiting for the lock.
_duckdb_locks: dict[str, threading.Lock] = {}
_duckdb_locks_guard = threading.Lock()


def _duckdb_lock(path: Path) -> threading.Lock:
    with _duckdb_locks_guard:
        return _duckdb_locks.setdefault(str(path.resolve()), threading.Lock())


class Warehouse:
    engine = ""
    copy_format = "csv"  # what copy_rows_into() takes: the FORMAT of the source's COPY TO STDOUT
    # What the engine raises for a table that does not exist (a warehouse never loaded): cheaper to try the query
    # than to ask the catalog first (DuckDB's information_schema takes tens of milliseconds).
    missing_table: tuple[type[Exception], ...] = ()

    def execute(self, query: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def fetchall(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def executemany(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise NotImplementedError
        yield

    def copy_rows_into(
        self, table: str, columns: Sequence[str], rows: CopyRows, scratch: Path, *, skip_present: bool = False
    ) -> None:
        """Insert rows (``columns`` in order, in ``copy_format``) into ``table``, keeping rows whose ``id`` exists.

        ``rows()`` opens the rows; an engine may open them a second time (the same rows: a snapshot). Without
        ``skip_present`` the engine may insert without looking for present rows and raise ``RowsPresent`` if one
        is there (its transaction is then lost: the caller loads again with ``skip_present``).
        """
        raise NotImplementedError

    def loaded_span(self, table: str) -> tuple[date, date] | None:
        """First and last day of ``table``'s rows (tombstones aside): the days an initial load may have touched."""
        row = self.fetchone(f"SELECT min(day), max(day) FROM {table} WHERE day > %s", [date(1970, 1, 1)])
        return (row[0], row[1]) if row and row[0] is not None else None

    def close(self) -> None:
        raise NotImplementedError

    @contextmanager
    def indexes_after(self, table: str) -> Iterator[None]:
        """Around filling ``table`` in a transaction: an engine may build its indexes once afterwards."""
        yield

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        names, marks = ", ".join(columns), ", ".join(["%s"] * len(columns))
        self.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    def update_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Replace the rows with these ids (``columns[0]`` is ``id``)."""
        assignments = ", ".join(f"{c} = %s" for c in columns[1:])
        self.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", [[*r[1:], r[0]] for r in rows])

    def fetchone(self, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.fetchall(query, params)
        return rows[0] if rows else None


class DuckDBWarehouse(Warehouse):
    engine = "duckdb"
    missing_table = (duckdb.CatalogException,)

    def __init__(self, path: Path, *, read_only: bool) -> None:
        if read_only and not path.exists():
            raise WarehouseUnavailable(
                f"The warehouse file {path} does not exist yet; run `manage.py warehouse sync` to create and load it."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = _duckdb_lock(path)
        if not self._lock.acquire(timeout=LOCK_WAIT_SECONDS):
            raise WarehouseUnavailable(f"The warehouse file {path} is busy in this process; try again.")
        try:
            self.conn = self._connect(path, read_only=read_only)
            if not read_only:
                self.conn.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        except BaseException:
            self._lock.release()
            raise

    @staticmethod
    def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return duckdb.connect(str(path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseUnavailable(f"The warehouse file {path} cannot be opened: {exc}") from exc
                time.sleep(0.02)

    @staticmethod
    def _q(query: str) -> str:
        return query.replace("%s", "?")

    def execute(self, query: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(self._q(query), list(params))

    def fetchall(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.conn.execute(self._q(query), list(params)).fetchall()]

    def executemany(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.conn.executemany(self._q(query), [list(r) for r in rows])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.begin()
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    # Binding Python values one by one is slow in DuckDB; batches go through a CSV file it reads itself.
    def _staged(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        scratch = self.path.parent / f".stage-{self.path.name}-{table}.csv"
        with scratch.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerows([[_csv_value(v) for v in row] for row in rows])
        self.conn.execute(f"DROP TABLE IF EXISTS stage_{table}")
        self.conn.execute(
            f"CREATE TEMP TABLE stage_{table} AS SELECT * FROM read_csv(?, header = false, "
            f"columns = {self._column_spec(table, columns)}, nullstr = '\\N', auto_detect = false, quote = '\"')",
            [str(scratch)],
        )
        scratch.unlink(missing_ok=True)
        return f"stage_{table}"

    def _column_spec(self, table: str, columns: Sequence[str]) -> str:
        types = dict(
            self.conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]
            ).fetchall()
        )
        return "{" + ", ".join(f"'{c}': '{types[c]}'" for c in columns) + "}"

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            stage = self._staged(table, columns, rows)
            names = ", ".join(columns)
            self.conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}")

    def update_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            stage = self._staged(table, columns, rows)
            assignments = ", ".join(f"{c} = s.{c}" for c in columns[1:])
            self.conn.execute(f"UPDATE {table} SET {assignments} FROM {stage} s WHERE {table}.id = s.id")

    def copy_rows_into(
        self, table: str, columns: Sequence[str], rows: CopyRows, scratch: Path, *, skip_present: bool = False
    ) -> None:
        """Stream the rows through a named pipe that DuckDB reads with one ``read_csv`` while a thread fills it.

        DuckDB reads CSV itself much faster than it binds values from Python. One statement over a pipe (rather
        than a statement per part file) pays the reader's set-up once, writes nothing to disk, and lets reading
        the source and inserting overlap (DuckDB works without Python's lock). A plain INSERT first; into a
        table that held rows, a check for an id now there twice follows (one hash aggregate over the ids), and
        finding one raises ``RowsPresent`` (the caller's transaction is rolled back and the source loaded again).
        With ``skip_present`` an anti-join (rather than ON CONFLICT: DuckDB checks conflicts row by row), one hash
        table over the fact table for the whole read. A table created with a primary key (a warehouse file from
        before keys were dropped) refuses a present row itself: ``RowsPresent`` too.
        """
        scratch.parent.mkdir(parents=True, exist_ok=True)
        names = ", ".join(columns)
        insert = (
            f"INSERT INTO {table} ({names}) SELECT * FROM read_csv(?, header = false, "
            f"columns = {self._column_spec(table, columns)}, nullstr = '', auto_detect = false, "
            f"compression = 'none', buffer_size = {READ_BUFFER_BYTES}, max_line_size = {MAX_LINE_BYTES}) s"
        )
        if skip_present:
            insert += f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = s.id)"
        held_rows = not skip_present and self.fetchone(f"SELECT 1 FROM {table} LIMIT 1") is not None
        # The rows' order in the table means nothing here; without it DuckDB inserts in parallel.
        self.conn.execute("SET preserve_insertion_order = false")
        try:
            with _PipeWriter(rows, scratch.with_suffix(".pipe")) as pipe:
                try:
                    self.conn.execute(insert, [str(pipe.path)])
                except duckdb.ConstraintException as exc:
                    raise RowsPresent(str(exc)) from exc
        finally:
            with suppress(duckdb.Error):  # fails in a transaction lost to RowsPresent: the connection ends soon
                self.conn.execute("RESET preserve_insertion_order")
        if held_rows:
            twice = self.fetchone(f"SELECT id FROM {table} GROUP BY id HAVING count(*) > 1 LIMIT 1")
            if twice is not None:
                raise RowsPresent(f"{table} id {twice[0]} is already in the warehouse")

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self._lock.release()


class PostgresWarehouse(Warehouse):
    engine = "postgresql"
    copy_format = "binary"  # from one PostgreSQL server to another: no text to write out and parse back
    missing_table = (psycopg.errors.UndefinedTable,)

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise WarehouseUnavailable(
                f"The PostgreSQL warehouse (WAREHOUSE_URL) cannot be reached: {str(exc).strip()}"
            ) from exc
        self.conn.execute("SET TIME ZONE 'UTC'")
        if read_only:  # a first load holds its tables' locks until it commits (indexes_after): wait as for DuckDB
            self.conn.execute(f"SET lock_timeout = '{int(LOCK_WAIT_SECONDS)}s'")

    def execute(self, query: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(query, list(params))

    def fetchall(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(query, list(params)).fetchall())
        except psycopg.errors.LockNotAvailable as exc:
            raise WarehouseUnavailable("The warehouse is busy with its first load; try again shortly.") from exc

    def executemany(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(query, rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def copy_rows_into(
        self, table: str, columns: Sequence[str], rows: CopyRows, scratch: Path, *, skip_present: bool = False
    ) -> None:
        """COPY straight into ``table``; if a row is already there (a range loaded from the shard it moved from),
        undo that and load again through a staging table, skipping the rows present.

        The direct COPY writes every row once; staging writes it twice and sorts out conflicts row by row. A
        conflict only happens for rows that changed shard, so the first attempt nearly always stands.
        """
        names = ", ".join(columns)
        if not skip_present:
            try:
                with self.conn.transaction(), self.indexes_after(table):  # a savepoint: a conflict undoes this only
                    self._copy(f"COPY {table} ({names}) FROM STDIN (FORMAT {self.copy_format})", rows)
                self.conn.execute(f"ANALYZE {table}")  # the aggregates over these rows are planned next
                return
            except psycopg.errors.UniqueViolation:
                pass
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS staging_{table} (LIKE {table}) ON COMMIT DROP")
        with self.conn.cursor() as cur:
            self._copy(f"COPY staging_{table} ({names}) FROM STDIN (FORMAT {self.copy_format})", rows)
            cur.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM staging_{table} ON CONFLICT (id) DO NOTHING"
            )
            cur.execute(f"DROP TABLE staging_{table}")

    def _copy(self, statement: str, rows: CopyRows) -> None:
        with self.conn.cursor() as cur, cur.copy(statement) as copy, rows() as source:
            while chunk := source.read(1 << 20):
                copy.write(chunk)

    @contextmanager
    def indexes_after(self, table: str) -> Iterator[None]:
        """Fill an empty ``table`` without its indexes, then build each once (a sort) instead of row by row.

        Inside a transaction: the drop takes the table's lock until the commit (readers wait for it; see
        ``lock_timeout``), and a failure rolls the indexes back with the rows.
        """
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            raise RuntimeError("indexes_after() needs a transaction")
        if self.fetchone(f"SELECT 1 FROM {table} LIMIT 1") is not None:
            yield
            return
        constraints = self.fetchall(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype IN ('p', 'u') ORDER BY contype",
            [table],
        )
        indexes = self.fetchall(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)",
            [table],
        )
        for name, _ in indexes:
            self.conn.execute(f'DROP INDEX "{name}"')
        for name, _ in constraints:
            self.conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        yield
        for name, definition in constraints:
            self.conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            self.conn.execute(definition)

    def close(self) -> None:
        self.conn.close()


class _Stopped(Exception):
    pass


class _PipeWriter:
    """A named pipe at ``path`` that threads fill with ``rows()`` while the caller has DuckDB read it.

    One thread reads the source up to ``AHEAD`` blocks ahead, another writes them into the pipe. On leaving, the
    threads are waited for and the source's error raised: a source that failed mid-way ends the pipe early, so
    DuckDB may have inserted part of the rows without an error of its own, and the caller's transaction must not
    commit them. If the caller failed (DuckDB stopped reading, or never opened the pipe), the threads are told to
    stop and the pipe is drained until they do, so the source's COPY is cancelled rather than left waiting.
    """

    CHUNK = 1 << 20
    PIPE_BYTES = 1 << 20  # the pipe's buffer (64 KiB by default): fewer wake-ups of DuckDB and of the thread
    # Blocks read from the source ahead of DuckDB (each up to CHUNK): the source keeps sending while DuckDB parses
    # what it read last, instead of the two taking turns (at most 64 MiB held per load).
    AHEAD = 64

    def __init__(self, rows: CopyRows, path: Path) -> None:
        self._rows = rows
        self.path = path
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load {path.name}", daemon=True)

    def __enter__(self) -> _PipeWriter:
        self.path.unlink(missing_ok=True)  # left by a process killed during a load
        os.mkfifo(self.path, 0o600)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if kind is not None:
                self._stopping.set()
                self._drain()
            self._thread.join()
        finally:
            self.path.unlink(missing_ok=True)
        if kind is None and self._error is not None:
            raise self._error

    def _drain(self) -> None:
        """Read and discard until the thread ends (it may be blocked opening the pipe or writing to it)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while self._thread.is_alive():
                try:
                    if not os.read(fd, self.CHUNK):
                        self._thread.join(0.01)
                except BlockingIOError:
                    self._thread.join(0.01)
        finally:
            os.close(fd)

    def _run(self) -> None:
        ahead: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=self.AHEAD)
        reader = threading.Thread(target=self._read, args=(ahead,), name=f"read {self.path.name}", daemon=True)
        reader.start()  # the source starts sending while DuckDB sets its statement up
        try:
            with open(self.path, "wb", buffering=0) as out:
                with suppress(OSError):  # above the system's limit (fs.pipe-max-size): the default buffer will do
                    fcntl.fcntl(out.fileno(), fcntl.F_SETPIPE_SZ, self.PIPE_BYTES)
                while (chunk := ahead.get()) is not None:
                    if isinstance(chunk, BaseException):
                        raise chunk
                    view = memoryview(chunk)
                    while view:
                        view = view[out.write(view) or 0 :]
        except _Stopped:
            pass
        except BaseException as exc:  # raised by the caller once DuckDB has read the pipe to its end
            self._error = exc
        finally:
            if reader.is_alive():
                self._stopping.set()
                while reader.is_alive():
                    with suppress(queue.Empty):
                        ahead.get(timeout=0.01)
            reader.join()

    def _read(self, ahead: queue.Queue[bytes | BaseException | None]) -> None:
        try:
            with self._rows() as source:
                while chunk := source.read(self.CHUNK):
                    if self._stopping.is_set():
                        raise _Stopped  # inside the read: the source's COPY is cancelled, not left half-read
                    ahead.put(chunk)
            ahead.put(None)
        except BaseException as exc:
            ahead.put(exc)


def _csv_value(value: Any) -> Any:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return value


def open_warehouse(config: WarehouseConfig, *, read_only: bool = False) -> Warehouse:
    """A connection to the configured warehouse (close it soon: see the module docstring)."""
    if config.url:
        return PostgresWarehouse(config.url, read_only=read_only)
    return DuckDBWarehouse(config.duckdb_path, read_only=read_only)


@contextmanager
def warehouse(config: WarehouseConfig, *, read_only: bool = False) -> Iterator[Warehouse]:
    wh = open_warehouse(config, read_only=read_only)
    try:
        yield wh
    finally:
        wh.close()
