"""Reading moves: which move a command means, and the full status of one (``shardmove status``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from django.utils import timezone

from . import fence, replication
from .copying import refresh_copy_state
from .errors import MoveError
from .maps import traffic
from .models import ACTIVE_PHASES, MoveEvent, MoveRange, MoveTable, Phase, VerifyRun
from .pgconn import pool
from .planning import label
from .progress import format_bytes, format_duration


def move_get(identifier: str | int | None) -> MoveRange:
    """The move an operator named, or the only active one when they named none."""
    if identifier is None or identifier == "":
        active = list(MoveRange.objects.filter(phase__in=ACTIVE_PHASES).order_by("id"))
        if len(active) == 1:
            return active[0]
        if not active:
            raise MoveError("No move is in progress. Start one with `shardmove start LO HI --to ALIAS`.")
        listing = ", ".join(f"{m.id} {label(m.lo, m.hi)} ({m.phase})" for m in active)
        raise MoveError(f"Several moves are in progress ({listing}); name one: `shardmove <command> MOVE`.")
    try:
        return MoveRange.objects.get(id=int(identifier))
    except (ValueError, MoveRange.DoesNotExist):
        raise MoveError(f"There is no move {identifier!r}; `shardmove status --all` lists them.") from None


def moves_to_show(*, all_moves: bool) -> list[MoveRange]:
    query = MoveRange.objects.all() if all_moves else MoveRange.objects.filter(phase__in=ACTIVE_PHASES)
    return list(query.order_by("id"))


@dataclass
class TableStatus:
    table: str
    state: str
    rows_copied: int
    rows_total: int
    rows_exact: bool


@dataclass
class MoveStatus:
    id: int
    range: str
    lo: int
    hi: int
    source: str
    target: str
    phase: str
    step: str
    reads: str
    writes: str
    tables: list[TableStatus]
    rows_copied: int
    rows_total: int
    bytes_total: int
    copy_rate: float | None
    eta_seconds: float | None
    replication: str
    lag_bytes: int | None
    lag_seconds: float | None
    subscription_errors: int
    verified: str
    last_error: str
    lease: str
    created_at: datetime
    phase_changed_at: datetime
    warnings: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "phase_changed_at"):
            data[key] = data[key].isoformat()
        return data

    def copy_line(self) -> str:
        rate = f"{self.copy_rate:,.0f} rows/s" if self.copy_rate else "? rows/s"
        return (
            f"move {self.id} {self.phase}: {self.rows_copied:,}/~{self.rows_total:,} rows copied, {rate}, "
            f"ETA {format_duration(self.eta_seconds)}"
        )

    def lines(self) -> list[str]:
        lag = "n/a"
        if self.lag_bytes is not None:
            seconds = f"{self.lag_seconds:.2f} s" if self.lag_seconds is not None else "? s"
            lag = f"{format_bytes(self.lag_bytes)} / {seconds}"
        rate = f"{self.copy_rate:,.0f} rows/s" if self.copy_rate else "-"
        out = [
            f"Move {self.id}: {self.range} {self.source} -> {self.target}",
            f"  phase     {self.phase}{f' ({self.step})' if self.step else ''}, since {self.phase_changed_at:%Y-%m-%d %H:%M:%S}",
            f"  traffic   reads: {self.reads}, writes: {self.writes}",
            f"  copy      {self.rows_copied:,} of ~{self.rows_total:,} rows (~{format_bytes(self.bytes_total)}), "
            f"rate {rate}, ETA {format_duration(self.eta_seconds) if self.phase == Phase.COPYING else '-'}",
        ]
        for table in self.tables:
            total = f"{table.rows_total:,}" if table.rows_exact else f"~{table.rows_total:,}"
            out.append(f"    {table.table:<28} {table.state:<13} {table.rows_copied:>12,} / {total}")
        out += [
            f"  replication {self.replication}, lag {lag}"
            + (
                f", {self.subscription_errors} error(s) (see the subscriber's server log)"
                if self.subscription_errors
                else ""
            ),
            f"  verified  {self.verified}",
            f"  lease     {self.lease or 'free'}",
            f"  last error {self.last_error or '-'}",
        ]
        out += [f"  ! {w}" for w in self.warnings]
        if self.events:
            out.append("  recent:")
            out += [f"    {e}" for e in self.events]
        return out


def _channel_for(move: MoveRange) -> replication.Channel | None:
    if move.phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.READS_SWITCHED, Phase.ROLLED_BACK):
        return replication.forward(move.id, move.source, move.target)
    if move.phase == Phase.WRITES_SWITCHED:
        return replication.reverse(move.id, move.source, move.target)
    return None


def move_status(move: MoveRange) -> MoveStatus:
    """Everything about one move, from the control database and the two servers (read-only on the servers)."""
    move.refresh_from_db()
    warnings: list[str] = []
    lag = replication.Lag(None, None, False)
    errors = 0
    channel = _channel_for(move)
    with pool() as db:
        try:
            refresh_copy_state(move, db[move.target])
        except psycopg.Error as exc:
            warnings.append(f"cannot read copy progress from {move.target}: {exc}")
        if channel is not None:
            try:
                lag = replication.lag(db[channel.publisher], channel)
                errors = sum(replication.subscription_errors(db[channel.subscriber], channel.name))
                if lag.bytes is None and move.copy_started_at is not None:
                    warnings.append(f"replication slot {channel.name} is missing on {channel.publisher}")
            except psycopg.Error as exc:
                warnings.append(f"cannot read replication state: {exc}")
        warnings += _fence_warnings(move, db)
    tables = list(MoveTable.objects.filter(move=move))
    copied = sum(t.rows_copied for t in tables)
    total = max(sum(t.rows_estimated for t in tables), copied)
    rate = eta = None
    if move.copy_started_at:
        end = move.copy_finished_at or timezone.now()
        seconds = max((end - move.copy_started_at).total_seconds(), 0.001)
        rate = copied / seconds
        if move.phase == Phase.COPYING and rate > 0:
            eta = max(0, total - copied) / rate
    run = VerifyRun.objects.filter(move=move).order_by("-id").first()
    verified = "never"
    if run is not None:
        verified = f"run {run.id} {run.outcome}, {run.rows_checked:,} rows, {len(run.mismatches)} mismatch(es)"
    if move.watermark_alias:
        verified += f"; changed rows tracked on {move.watermark_alias}"
    reads, writes = traffic(move.lo, move.hi)
    events = [f"{e.at:%H:%M:%S} {e.message}" for e in MoveEvent.objects.filter(move=move).order_by("-id")[:5]][::-1]
    lease = ""
    if move.lease_owner and move.lease_expires_at and move.lease_expires_at > timezone.now():
        lease = f"{move.lease_owner} until {move.lease_expires_at:%H:%M:%S}"
    return MoveStatus(
        id=move.id,
        range=label(move.lo, move.hi),
        lo=move.lo,
        hi=move.hi,
        source=move.source,
        target=move.target,
        phase=move.phase,
        step=move.step,
        reads=reads,
        writes=writes,
        tables=[
            TableStatus(
                t.table,
                replication.SYNC_STATES.get(t.sync_state, t.sync_state or "-"),
                t.rows_copied,
                max(t.rows_estimated, t.rows_copied),
                t.rows_exact or t.synced_at is not None,
            )
            for t in tables
        ],
        rows_copied=copied,
        rows_total=total,
        bytes_total=sum(t.bytes_estimated for t in tables),
        copy_rate=rate,
        eta_seconds=eta,
        replication=f"{channel.name} ({channel.publisher} -> {channel.subscriber})" if channel else "none",
        lag_bytes=lag.bytes,
        lag_seconds=lag.seconds,
        subscription_errors=errors,
        verified=verified,
        last_error=move.last_error,
        lease=lease,
        created_at=move.created_at,
        phase_changed_at=move.phase_changed_at,
        warnings=warnings,
        events=events,
    )


def _fence_warnings(move: MoveRange, db: Any) -> list[str]:
    """Database state ahead of the recorded phase: a cut-over interrupted by a crash."""
    if move.phase not in (Phase.READS_SWITCHED, Phase.WRITES_SWITCHED):
        return []
    old = move.source if move.phase == Phase.READS_SWITCHED else move.target
    command = "switch-writes" if move.phase == Phase.READS_SWITCHED else "rollback"
    try:
        state = fence.get(db[old], move.id)
    except psycopg.Error as exc:
        return [f"cannot read the fence on {old}: {exc}"]
    if state is None:
        return []
    if state.state == "moved":
        return [
            f"{command} was interrupted after its commit point: writes are refused on {old} and retried on "
            f"{state.moved_to}; run `shardmove {command} {move.id}` to finish it."
        ]
    if state.state == "frozen" and not state.expired:
        return [f"writes are frozen on {old} for a cut-over until {state.expires_at:%H:%M:%S.%f}"]
    if state.state == "frozen":
        return [f"an interrupted {command} left an expired freeze on {old} (writes flow); re-run it or any command."]
    return []
