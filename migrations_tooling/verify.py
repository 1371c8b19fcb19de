"""Verification: the range is identical on both sides, proven chunk by chunk and key by key.

Full verification (``shardmove verify``) walks each table in chunks of about
``VERIFY_CHUNK_ROWS`` rows ordered by ID (``[id_lo, id_hi)`` within the move's
user range), and compares the row count and an order-independent checksum on
both sides: the sum, as numeric, of the first 64 bits of ``md5`` of each row's
text (columns in model order, UTC timestamps). Each chunk is read on the
primary (the database taking writes) first; then a marker committed on the
primary must appear on the replica (so the replica has applied everything the
primary read could see) before the replica is read. Chunk results are stored,
so an interrupted run resumes where it stopped.

A chunk that differs is drilled into row by row to list the exact keys. Rows
written while they were being compared legitimately differ; they are exactly
the rows the fence trigger logged after the run's starting snapshot, and they
are re-checked later (before and inside the cut-over freeze). Any other
difference is a real mismatch and fails the run.

A passed run sets the move's *watermark* (the primary's snapshot when the run
started): every row not changed since is known to be equal. Cut-overs then
re-verify only the logged rows changed since the watermark, advancing it in
rounds outside the freeze so that only a handful remain for the freeze itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from django.utils import timezone
from psycopg import sql

from . import fence, phases
from .conf import get_settings
from .errors import MoveError
from .hooks import pause_point
from .models import VerifyChunk, VerifyRun
from .phases import require_phase
from .progress import Meter
from .schema import ShardedTable
from .work import Work

ID_MIN = -(2**63)
CHUNKS_PER_ROUND = 8
BARRIER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Mismatch:
    table: str
    row_id: int
    shard_key: int | None
    problem: str  # "missing on <alias>", "extra on <alias>", "differs"

    def describe(self) -> str:
        owner = f" user_id={self.shard_key}" if self.shard_key is not None else ""
        return f"{self.table} id={self.row_id}{owner}: {self.problem}"

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "id": self.row_id, "shard_key": self.shard_key, "problem": self.problem}


def _hash_expr(table: ShardedTable) -> sql.Composed:
    return sql.SQL("md5({})").format(table.row_text())


def row_hashes(
    conn: psycopg.Connection[Any], table: ShardedTable, where: sql.Composable, params: list[Any]
) -> dict[int, tuple[int, str]]:
    """id -> (shard key, md5 of the row text) for the rows matching ``where``."""
    query = sql.SQL("SELECT {pk}, {key}, {h} FROM {t} WHERE {where}").format(
        pk=sql.Identifier(table.pk), key=sql.Identifier(table.key), h=_hash_expr(table), t=table.ident, where=where
    )
    return {int(r[0]): (int(r[1]), str(r[2])) for r in conn.execute(query, params).fetchall()}


def diff_rows(
    table: ShardedTable,
    primary: dict[int, tuple[int, str]],
    replica: dict[int, tuple[int, str]],
    *,
    primary_alias: str,
    replica_alias: str,
) -> list[Mismatch]:
    found: list[Mismatch] = []
    for row_id in sorted(primary.keys() | replica.keys()):
        ours, theirs = primary.get(row_id), replica.get(row_id)
        if theirs is None:
            assert ours is not None
            found.append(Mismatch(table.name, row_id, ours[0], f"missing on {replica_alias}"))
        elif ours is None:
            found.append(Mismatch(table.name, row_id, theirs[0], f"extra on {replica_alias} (not on {primary_alias})"))
        elif ours != theirs:
            found.append(Mismatch(table.name, row_id, ours[0], "differs"))
    return found


def barrier(work: Work, primary: str, replica: str, *, timeout: float = BARRIER_TIMEOUT) -> float:
    """Commit a marker on ``primary`` and wait until ``replica`` shows it; the seconds it took."""
    seq = fence.marker_bump(work.db[primary], work.move.id)
    waited = fence.wait_for_marker(work.db[replica], work.move.id, seq, timeout=timeout)
    if waited is None:
        raise MoveError(
            f"{replica} did not catch up with {primary} within {timeout:.0f}s (replication stalled or far behind). "
            "Check `shardmove status` (lag, subscription errors) and the servers' logs, then re-run."
        )
    return waited


def compare_keys(
    work: Work, primary: str, replica: str, keys: dict[str, set[int]], *, sync: bool = True
) -> list[Mismatch]:
    """Compare the given rows (by ID) of the range on both sides, exactly.

    With ``sync`` the replica is read only after a barrier; inside a freeze the
    caller has already waited for it.
    """
    by_name = {t.name: t for t in work.tables}
    lo, hi = work.move.lo, work.move.hi
    wanted = {by_name[name]: sorted(ids) for name, ids in keys.items() if ids and name in by_name}
    ours: dict[str, dict[int, tuple[int, str]]] = {}
    for table, ids in wanted.items():
        where = sql.SQL("{pk} = ANY(%s) AND {r}").format(pk=sql.Identifier(table.pk), r=table.in_range(lo, hi))
        ours[table.name] = row_hashes(work.db[primary], table, where, [ids])
    if sync and wanted:
        barrier(work, primary, replica)
    found: list[Mismatch] = []
    for table, ids in wanted.items():
        where = sql.SQL("{pk} = ANY(%s) AND {r}").format(pk=sql.Identifier(table.pk), r=table.in_range(lo, hi))
        theirs = row_hashes(work.db[replica], table, where, [ids])
        found += diff_rows(table, ours[table.name], theirs, primary_alias=primary, replica_alias=replica)
    return found


def _still_changing(work: Work, primary: str, mismatches: list[Mismatch], since: str) -> list[Mismatch]:
    """The mismatches NOT explained by a write after ``since`` (those are real)."""
    if not mismatches:
        return []
    recent = fence.changed_keys(work.db[primary], work.move.id, since)
    return [m for m in mismatches if m.row_id not in recent.get(m.table, set())]


def count_changed(keys: dict[str, set[int]]) -> int:
    return sum(len(ids) for ids in keys.values())


def advance_watermark(work: Work, *, limit: int, max_rounds: int = 20) -> int:
    """Re-verify the rows changed since the watermark until at most ``limit`` remain; returns how many remain.

    Each round: take a new snapshot S of the primary, read the changed keys,
    compare them (primary, barrier, replica). Rows that match, or that changed
    again after S, need no more checking up to S, so S becomes the watermark.
    """
    move = work.move
    primary, replica = move.primary, move.replica
    if move.watermark_alias != primary:
        raise MoveError(f"Move {move.id} has no verified baseline on {primary}; run `shardmove verify` first.")
    conn = work.db[primary]
    remaining = count_changed(fence.changed_keys(conn, move.id, move.watermark_snapshot or None))
    for _round in range(max_rounds):
        if remaining <= limit:
            return remaining
        snapshot = fence.current_snapshot(conn)
        keys = fence.changed_keys(conn, move.id, move.watermark_snapshot or None)
        real = _still_changing(work, primary, compare_keys(work, primary, replica, keys), snapshot)
        if real:
            raise MoveError(mismatch_message(move.id, real))
        work.set_watermark(primary, snapshot)
        fence.prune_changes(conn, move.id, snapshot)
        remaining = count_changed(fence.changed_keys(conn, move.id, snapshot))
        work.reporter.progress(f"re-verified {count_changed(keys)} changed row(s); {remaining} changed since")
        work.checkpoint()
    return remaining


def mismatch_message(move_id: int, mismatches: list[Mismatch], shown: int = 20) -> str:
    lines = "; ".join(m.describe() for m in mismatches[:shown])
    more = f" (and {len(mismatches) - shown} more)" if len(mismatches) > shown else ""
    return (
        f"Move {move_id}: {len(mismatches)} row(s) differ between the two sides: {lines}{more}. Replication lost or "
        "altered these rows (or someone wrote to the replica directly). Investigate before switching writes; "
        "`shardmove cancel` and a new move re-copies the range."
    )


# --- full, chunked verification ----------------------------------------------------------------------


def _chunk_where(table: ShardedTable, lo: int, hi: int) -> sql.Composed:
    return sql.SQL("{pk} >= %s AND ({pk} < %s OR %s::bigint IS NULL) AND {r}").format(
        pk=sql.Identifier(table.pk), r=table.in_range(lo, hi)
    )


def _checksum(
    conn: psycopg.Connection[Any], table: ShardedTable, lo: int, hi: int, id_lo: int, id_hi: int | None
) -> tuple[int, Decimal]:
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || substr({h}, 1, 16))::bit(64)::bigint::numeric), 0) FROM {t} WHERE {w}"
    ).format(h=_hash_expr(table), t=table.ident, w=_chunk_where(table, lo, hi))
    row = conn.execute(query, [id_lo, id_hi, id_hi]).fetchone()
    assert row is not None
    return int(row[0]), Decimal(row[1])


def _next_boundary(
    conn: psycopg.Connection[Any], table: ShardedTable, lo: int, hi: int, id_lo: int, rows: int
) -> int | None:
    query = sql.SQL("SELECT {pk} FROM {t} WHERE {pk} >= %s AND {r} ORDER BY {pk} OFFSET %s LIMIT 1").format(
        pk=sql.Identifier(table.pk), t=table.ident, r=table.in_range(lo, hi)
    )
    row = conn.execute(query, [id_lo, rows]).fetchone()
    return None if row is None else int(row[0])


@dataclass
class _Chunk:
    table: ShardedTable
    seq: int
    id_lo: int
    id_hi: int | None
    primary_rows: int = 0
    primary_sum: Decimal = Decimal(0)
    replica_rows: int = 0
    replica_sum: Decimal = Decimal(0)

    @property
    def matches(self) -> bool:
        return (self.primary_rows, self.primary_sum) == (self.replica_rows, self.replica_sum)


def _current_run(work: Work, *, restart: bool, chunk_rows: int) -> VerifyRun:
    move = work.move
    runs = VerifyRun.objects.filter(move=move, outcome=VerifyRun.Outcome.RUNNING)
    if restart:
        runs.update(outcome=VerifyRun.Outcome.FAILED, finished_at=timezone.now())
    run = runs.filter(primary=move.primary, replica=move.replica).order_by("-id").first()
    if run is not None:
        work.reporter.info(
            f"Resuming verify run {run.id} (started {run.started_at:%H:%M:%S}, {run.rows_checked:,} rows checked)."
        )
        return run
    runs.update(outcome=VerifyRun.Outcome.FAILED, finished_at=timezone.now())
    return VerifyRun.objects.create(
        move=move,
        primary=move.primary,
        replica=move.replica,
        snapshot=fence.current_snapshot(work.db[move.primary]),
        chunk_rows=chunk_rows,
    )


def verify_range(work: Work, *, restart: bool = False, chunk_rows: int | None = None) -> VerifyRun:
    """Compare every chunk of every table on both sides (resumable); sets the watermark when it passes."""
    require_phase(work.move, phases.VERIFY)
    if chunk_rows is not None and chunk_rows < 1:
        raise MoveError(f"Chunks must have at least 1 row (got {chunk_rows}).")
    run = _current_run(work, restart=restart, chunk_rows=chunk_rows or get_settings().verify_chunk_rows)
    move = work.move
    total = sum(t.rows_in_range(work.db[run.primary], move.lo, move.hi) for t in work.tables)
    resumed_rows = run.rows_checked
    session = _Session(run, resumed_rows, Meter(total=max(total - resumed_rows, 0)), list(run.mismatches))
    for table in work.tables:
        _verify_table(work, session, table)
    return _finish_run(work, session)


@dataclass
class _Session:
    """One command's share of a verify run: the rows it compared (rate, ETA) and the mismatches so far."""

    run: VerifyRun
    resumed_rows: int  # checked by earlier, interrupted commands
    meter: Meter
    mismatches: list[dict[str, Any]]

    @property
    def rows_checked(self) -> int:
        return self.resumed_rows + self.meter.done


def _verify_table(work: Work, session: _Session, table: ShardedTable) -> None:
    """The table's chunks from where the run stopped, a round of ``CHUNKS_PER_ROUND`` at a time."""
    run = session.run
    last = VerifyChunk.objects.filter(run=run, table=table.name).order_by("-seq").first()
    if last is not None and last.id_hi is None:
        return  # this table is done
    seq = 0 if last is None else last.seq + 1
    id_lo: int | None = ID_MIN if last is None else last.id_hi
    while id_lo is not None:
        batch, id_lo = _read_round_on_primary(work, run, table, seq, id_lo)
        seq += len(batch)
        barrier(work, run.primary, run.replica)
        _read_round_on_replica(work, run, batch)
        _record_round(work, session, table, batch)
        work.reporter.progress(session.meter.line(f"verify {table.name}"))
        pause_point("verify:chunk")
        work.checkpoint()


def _read_round_on_primary(
    work: Work, run: VerifyRun, table: ShardedTable, seq: int, id_lo: int
) -> tuple[list[_Chunk], int | None]:
    """Up to ``CHUNKS_PER_ROUND`` chunks from ``id_lo``, counted on the primary; and where the next round starts."""
    move, primary = work.move, work.db[run.primary]
    batch: list[_Chunk] = []
    next_lo: int | None = id_lo
    while len(batch) < CHUNKS_PER_ROUND and next_lo is not None:
        id_hi = _next_boundary(primary, table, move.lo, move.hi, next_lo, run.chunk_rows)
        chunk = _Chunk(table, seq + len(batch), next_lo, id_hi)
        chunk.primary_rows, chunk.primary_sum = _checksum(primary, table, move.lo, move.hi, next_lo, id_hi)
        batch.append(chunk)
        next_lo = id_hi
    return batch, next_lo


def _read_round_on_replica(work: Work, run: VerifyRun, batch: list[_Chunk]) -> None:
    move, replica = work.move, work.db[run.replica]
    for chunk in batch:
        chunk.replica_rows, chunk.replica_sum = _checksum(
            replica, chunk.table, move.lo, move.hi, chunk.id_lo, chunk.id_hi
        )


def _record_round(work: Work, session: _Session, table: ShardedTable, batch: list[_Chunk]) -> None:
    """Store the round's chunks (drilling into those that differ), so a killed run resumes after them."""
    run = session.run
    for chunk in batch:
        outcome = VerifyChunk.Outcome.MATCH
        if not chunk.matches:
            real = _drill(work, run, chunk)
            outcome = VerifyChunk.Outcome.MISMATCH if real else VerifyChunk.Outcome.CHANGING
            session.mismatches += [m.to_json() for m in real]
        VerifyChunk.objects.create(
            run=run,
            table=table.name,
            seq=chunk.seq,
            id_lo=chunk.id_lo,
            id_hi=chunk.id_hi,
            primary_rows=chunk.primary_rows,
            primary_sum=chunk.primary_sum,
            replica_rows=chunk.replica_rows,
            replica_sum=chunk.replica_sum,
            outcome=outcome,
        )
        session.meter.add(chunk.primary_rows)
    VerifyRun.objects.filter(id=run.id).update(rows_checked=session.rows_checked, mismatches=session.mismatches)


def _finish_run(work: Work, session: _Session) -> VerifyRun:
    run, mismatches = session.run, session.mismatches
    run.rows_checked = session.rows_checked
    run.mismatches = mismatches
    run.finished_at = timezone.now()
    run.outcome = VerifyRun.Outcome.FAILED if mismatches else VerifyRun.Outcome.PASSED
    run.save(update_fields=["rows_checked", "mismatches", "finished_at", "outcome"])
    if run.outcome == VerifyRun.Outcome.PASSED:
        _adopt_watermark(work, run)
    verdict = "rows match" if not mismatches else f"rows compared, {len(mismatches)} mismatch(es)"
    work.journal(
        "verify",
        f"Verify run {run.id} {run.outcome}: {run.rows_checked:,} {verdict} ({len(work.tables)} tables; "
        f"{session.meter.done:,} compared in this session at {session.meter.rate:,.0f} rows/s).",
        run=run.id,
        rows=run.rows_checked,
        mismatches=len(mismatches),
    )
    return run


def _drill(work: Work, run: VerifyRun, chunk: _Chunk) -> list[Mismatch]:
    """The exact rows behind a differing chunk, without the ones written since the run started."""
    move = work.move
    where = _chunk_where(chunk.table, move.lo, move.hi)
    params = [chunk.id_lo, chunk.id_hi, chunk.id_hi]
    ours = row_hashes(work.db[run.primary], chunk.table, where, params)
    barrier(work, run.primary, run.replica)
    theirs = row_hashes(work.db[run.replica], chunk.table, where, params)
    found = diff_rows(chunk.table, ours, theirs, primary_alias=run.primary, replica_alias=run.replica)
    return _still_changing(work, run.primary, found, run.snapshot)


def _adopt_watermark(work: Work, run: VerifyRun) -> None:
    """A passed run proves equality as of its start: use that as the baseline unless a newer one exists."""
    move = work.move
    newer = move.watermark_alias == run.primary and move.watermark_set_at and move.watermark_set_at > run.started_at
    if newer:
        return
    work.set_watermark(run.primary, run.snapshot)
    fence.prune_changes(work.db[run.primary], move.id, run.snapshot)
