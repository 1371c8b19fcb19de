"""Mirrored reads: while a move catches up, a share of the range's routed reads also run on the target.

The read observer (``observe_read``, registered in ``SHARDROUTER["READ_OBSERVERS"]``)
runs in the user's request: it samples, then puts the query and the checksum of
the rows the user got on a bounded queue and returns. It never waits: a full
queue drops the sample and counts it. One background thread per process runs
each sampled query on the target, times it and compares ordered row checksums.

A difference may be a row written a moment ago that replication has not
applied yet. So before calling it a mismatch the thread reads the source again
in one snapshot, bumps the move's marker on the source and waits (up to
``CATCH_UP_SECONDS``) until the target shows it, which proves the target has
applied everything committed before the snapshot, reads the target and compares
row by row, leaving out the rows the fence's change log shows were written
after the snapshot (in flux, as ``verify`` does); only a difference that
survives that is recorded, with the query's call site and row counts, never row data.
(Waiting for the slot's ``confirmed_flush_lsn`` instead, as this did first, reported
differences that were gone a moment later about once in several hundred compared
reads under write load: a subscriber confirms what it has received, not only what
it has applied.)
``switch-reads`` refuses while recent mismatches exist.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from django.db import DatabaseError, connections, models, transaction
from django.db.models import F
from django.utils import timezone

from . import fence
from .conf import get_settings
from .models import MirrorMismatch, MirrorStats, MoveRange, Phase
from .pgconn import pool

logger = logging.getLogger(__name__)

CATCH_UP_SECONDS = 2.0
MOVES_REFRESH_SECONDS = 1.0
_SKIP_FRAMES = (os.sep + "django" + os.sep, os.sep + "shardrouter" + os.sep, os.sep + "migrations_tooling" + os.sep)


@dataclass(frozen=True)
class _Mirrored:
    move_id: int
    lo: int
    hi: int
    source: str
    target: str


@dataclass
class _Job:
    move: _Mirrored
    queryset: models.QuerySet[Any]
    checksum: str
    rows: int
    source_seconds: float
    call_site: str


def rows_checksum(rows: list[Any]) -> str:
    """An ordered checksum of a result: every row's concrete field values (or the values row itself)."""
    digest = hashlib.md5(usedforsecurity=False)
    for row in rows:
        if isinstance(row, models.Model):
            values: Any = tuple(getattr(row, f.attname) for f in row._meta.concrete_fields)
        else:
            values = row
        digest.update(repr(values).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def _call_site() -> str:
    for frame in reversed(traceback.extract_stack(limit=40)[:-3]):
        if not any(part in frame.filename for part in _SKIP_FRAMES):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "unknown"


class Mirror:
    """Per-process state: the moves being mirrored (refreshed each second), the queue and its worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._moves: tuple[_Mirrored, ...] = ()
        self._next_check = 0.0
        self._queue: queue.Queue[_Job] | None = None
        self._thread: threading.Thread | None = None
        self.dropped: dict[int, int] = {}

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def moves(self) -> tuple[_Mirrored, ...]:
        now = time.monotonic()
        if now >= self._next_check:
            with self._lock:
                if now >= self._next_check:
                    self._next_check = now + MOVES_REFRESH_SECONDS
                    try:
                        rows = MoveRange.objects.filter(phase=Phase.CATCHING_UP, step="").values_list(
                            "id", "lo", "hi", "source", "target"
                        )
                        self._moves = tuple(_Mirrored(*row) for row in rows)
                    except Exception as exc:  # the control database being away stops mirroring, not reads
                        logger.warning("Mirrored reads paused: cannot read the moves: %s", exc)
                        self._moves = ()
        return self._moves

    def submit(self, job: _Job) -> None:
        with self._lock:
            if self._queue is None:
                self._queue = queue.Queue(maxsize=get_settings().mirror_queue_size)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="mirrored-reads", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self.dropped[job.move.move_id] = self.dropped.get(job.move.move_id, 0) + 1

    def idle(self) -> bool:
        """True when nothing is queued or being compared (tests and benchmarks wait for it)."""
        return self._queue is None or self._queue.unfinished_tasks == 0

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = self._queue.get()
            try:
                compare(job, self)
            except Exception:
                logger.exception("Mirrored read of move %s failed", job.move.move_id)
            finally:
                self._queue.task_done()
                if self._queue.empty():
                    connections.close_all()  # this thread's own connections; reopened on the next job

    def take_dropped(self, move_id: int) -> int:
        with self._lock:
            return self.dropped.pop(move_id, 0)


mirror = Mirror()
os.register_at_fork(after_in_child=mirror.reset)


def observe_read(queryset: models.QuerySet[Any], alias: str, key: int, rows: list[Any], seconds: float) -> None:
    """The read observer: sample reads of a catching_up range that went to its source, queue them for the target."""
    share = get_settings().mirror_reads_share
    if share <= 0:
        return
    for move in mirror.moves():
        if move.lo <= key < move.hi and alias == move.source:
            if random.random() < share:
                mirror.submit(_Job(move, queryset, rows_checksum(rows), len(rows), seconds, _call_site()))
            return


def _run_on(queryset: models.QuerySet[Any], alias: str) -> tuple[str, int, float]:
    started = time.perf_counter()
    rows = list(queryset.using(alias))
    return rows_checksum(rows), len(rows), time.perf_counter() - started


def _row_hashes(rows: list[Any]) -> dict[Any, str]:
    return {getattr(row, "pk", n): rows_checksum([row]) for n, row in enumerate(rows)}


def _source_snapshot(queryset: models.QuerySet[Any], alias: str) -> tuple[str, dict[Any, str]]:
    """The rows as of one snapshot of the source: (pg_snapshot, pk -> row hash)."""
    with transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT pg_current_snapshot()::text")
            snapshot = cursor.fetchone()[0]  # type: ignore[index]
            rows = list(queryset.using(alias))
    return snapshot, _row_hashes(rows)


def _wait_for_target(move: _Mirrored) -> bool:
    """Wait (up to CATCH_UP_SECONDS) until the target has applied everything committed on the source so far.

    The move's marker is the barrier, as at the cut-over: bumped on the source now, it reaches the target
    only after every transaction committed before it. The slot's ``confirmed_flush_lsn`` is not such a
    barrier: the subscriber may confirm a position it has received but not yet applied.
    """
    with pool() as db:
        try:
            seq = fence.marker_bump(db[move.source], move.move_id)
        except psycopg.errors.UndefinedTable:
            return False  # the move's tables are gone: it went on; no verdict
        return fence.wait_for_marker(db[move.target], move.move_id, seq, timeout=CATCH_UP_SECONDS) is not None


def _changed_since(move: _Mirrored, table: str, ids: list[Any], snapshot: str) -> set[Any]:
    """Rows of ``ids`` written on the source after ``snapshot`` (the fence's change log has every such write)."""
    with pool() as db:
        rows = (
            db[move.source]
            .execute(
                "SELECT DISTINCT row_id FROM qq_move_change WHERE move_id = %s AND table_name = %s "
                "AND row_id = ANY(%s) AND NOT pg_visible_in_snapshot(xid, %s::pg_snapshot)",
                [move.move_id, table, ids, snapshot],
            )
            .fetchall()
        )
    return {row[0] for row in rows}


def _recheck(job: _Job) -> MirrorMismatch | None:
    """Compare the rows exactly as of one snapshot of the source, ignoring the rows written since.

    Reads the source in one REPEATABLE READ snapshot, waits until the target
    has applied everything up to it, reads the target, and compares row by row.
    A row that differs but was written on the source after the snapshot is in
    flux (the target may simply be newer), as ``verify`` treats it; any other
    difference is a mismatch. A query with a LIMIT whose rows are in flux gets
    no verdict (new rows shift its window).
    """
    move = job.move
    table = job.queryset.model._meta.db_table
    snapshot, source = _source_snapshot(job.queryset, move.source)
    if not _wait_for_target(move):
        return None  # replication lags (status shows it): no verdict on the rows
    target = _row_hashes(list(job.queryset.using(move.target)))
    differing = [pk for pk in source.keys() | target.keys() if source.get(pk) != target.get(pk)]
    if not differing:
        return None
    in_flux = _changed_since(move, table, differing, snapshot)
    if in_flux and (job.queryset.query.low_mark or job.queryset.query.high_mark is not None):
        return None
    if not set(differing) - in_flux:
        return None
    return MirrorMismatch(
        move_id=move.move_id,
        table=table,
        call_site=job.call_site[:500],
        source_rows=len(source),
        target_rows=len(target),
        lag_bytes=None,
    )


def compare(job: _Job, state: Mirror) -> None:
    """Run the job's query on the target, compare, and record the outcome (in the background thread)."""
    move = job.move
    checksum, _, target_seconds = _run_on(job.queryset, move.target)
    mismatch: MirrorMismatch | None = None
    if checksum != job.checksum:
        try:
            mismatch = _recheck(job)
        except (psycopg.Error, DatabaseError) as exc:
            logger.warning("Mirrored read of move %s: cannot re-check it: %s", move.move_id, exc)
    MirrorStats.objects.get_or_create(move_id=move.move_id)
    MirrorStats.objects.filter(move_id=move.move_id).update(
        reads=F("reads") + 1,
        mismatches=F("mismatches") + (1 if mismatch else 0),
        dropped=F("dropped") + state.take_dropped(move.move_id),
        source_seconds=F("source_seconds") + job.source_seconds,
        target_seconds=F("target_seconds") + target_seconds,
        updated_at=timezone.now(),
    )
    if mismatch is not None:
        mismatch.save()
        logger.error(
            "Mirrored read of move %s differs on %s after catch-up: %s at %s (%s row(s) on %s, %s on %s)",
            move.move_id,
            move.target,
            mismatch.table,
            mismatch.call_site,
            mismatch.source_rows,
            move.source,
            mismatch.target_rows,
            move.target,
        )


@dataclass(frozen=True)
class MirrorSummary:
    reads: int
    mismatches: int
    dropped: int
    latency_ratio: float | None  # mean target latency / mean source latency
    recent_mismatches: int
    call_sites: list[str]


def mirror_summary(move: MoveRange) -> MirrorSummary:
    """What mirrored reads of ``move`` found; reads only."""
    stats = MirrorStats.objects.filter(move=move).first()
    window = timezone.now() - timedelta(seconds=get_settings().mirror_mismatch_window)
    recent = MirrorMismatch.objects.filter(move=move, at__gte=window)
    sites = sorted(set(recent.values_list("call_site", flat=True)[:20]))
    if stats is None:
        return MirrorSummary(0, 0, 0, None, recent.count(), sites)
    ratio = stats.target_seconds / stats.source_seconds if stats.source_seconds > 0 else None
    return MirrorSummary(stats.reads, stats.mismatches, stats.dropped, ratio, recent.count(), sites)
