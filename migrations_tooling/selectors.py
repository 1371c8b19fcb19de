"""Reading moves: which move a command means, and the full status of one (``shardmove status``).

Everything here only reads, from the control database and the servers: the
status of a move is what it is, whoever looks. Recording copy progress is a
service (``services.move_refresh``), called by the commands that drive a move.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from django.utils import timezone

from . import fence, phases, replication, throttle
from .copying import copy_finished, observe_copy
from .errors import MoveError
from .maps import traffic
from .mirror import mirror_summary
from .models import ACTIVE_PHASES, MoveEvent, MoveRange, MoveTable, Phase, VerifyRun
from .pgconn import Pool, pool, pool_or
from .planning import collision_message, id_collisions, label
from .progress import format_bytes, format_duration
from .schema import sharded_tables


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
    copy_error: str = ""  # why the initial copy keeps failing (it is then not progressing: no ETA)
    warnings: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    age_seconds: float = 0.0
    mirrored_reads: dict[str, Any] = field(default_factory=dict)
    throttle: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "phase_changed_at"):
            data[key] = data[key].isoformat()
        return data

    def copy_line(self) -> str:
        rate = f"{self.copy_rate:,.0f} rows/s" if self.copy_rate else "? rows/s"
        outlook = f"FAILING: {self.copy_error}" if self.copy_error else f"ETA {format_duration(self.eta_seconds)}"
        return f"move {self.id} {self.phase}: {self.rows_copied:,}/~{self.rows_total:,} rows copied, {rate}, {outlook}"

    def lines(self) -> list[str]:
        lag = "n/a"
        if self.lag_bytes is not None:
            seconds = f"{self.lag_seconds:.2f} s" if self.lag_seconds is not None else "? s"
            lag = f"{format_bytes(self.lag_bytes)} / {seconds}"
        rate = f"{self.copy_rate:,.0f} rows/s" if self.copy_rate else "-"
        if self.copy_error:
            outlook = f"FAILING: {self.copy_error}"
        else:
            outlook = f"ETA {format_duration(self.eta_seconds) if self.phase == Phase.COPYING else '-'}"
        out = [
            f"Move {self.id}: {self.range} {self.source} -> {self.target}",
            f"  phase     {self.phase}{f' ({self.step})' if self.step else ''}, since {self.phase_changed_at:%Y-%m-%d %H:%M:%S}",
            f"  traffic   reads: {self.reads}, writes: {self.writes}",
            f"  copy      {self.rows_copied:,} of ~{self.rows_total:,} rows (~{format_bytes(self.bytes_total)}), "
            f"rate {rate}, {outlook}",
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
        if self.throttle.get("enabled") is not None:
            out.append(f"  throttle  {self.throttle['summary']}")
        out += [f"  ! {w}" for w in self.warnings]
        if self.mirrored_reads.get("reads") or self.mirrored_reads.get("dropped"):
            m = self.mirrored_reads
            ratio = f"{m['latency_ratio']:.2f}" if m["latency_ratio"] is not None else "?"
            out.append(
                f"  mirrored  {m['reads']:,} read(s), {m['mismatches']} mismatch(es) ({m['recent_mismatches']} recent), "
                f"{m['dropped']:,} dropped, latency target/source {ratio}"
            )
        if self.events:
            out.append("  recent:")
            out += [f"    {e}" for e in self.events]
        return out


def throttle_status(move: MoveRange, running: bool | None) -> dict[str, Any]:
    """The copy throttle's budget, what its controller last saw and did, and its episodes ({} for older moves)."""
    config = throttle.ThrottleConfig.from_json(move.throttle)
    if config is None:
        return {}
    state = move.throttle
    copying = move.phase == Phase.COPYING
    throttling = bool(state.get("throttling")) and copying and bool(running)
    episodes = [
        {"at": e.at.isoformat(), "kind": e.kind, "message": e.message}
        for e in MoveEvent.objects.filter(move=move, kind__in=("throttled", "throttle-released")).order_by("id")
    ]
    summary = config.describe()
    if config.enabled and copying:
        if throttling:
            summary += f"; THROTTLED now (copy at {float(state.get('duty', 0)):.0%}: {state.get('reason', '')})"
        elif running:
            summary += "; copying at full speed"
        elif running is False:
            summary += "; no command steers the copy now (it runs at full speed): `shardmove refresh --watch`"
    if config.enabled and copying and running and state.get("quiet_windows"):
        summary += (
            f"; budget now <= {float(state['budget_now_ms']):.2f} ms (aiming at {float(state['aim_ms']):.2f} ms), "
            f"baseline re-measured at {float(state['baseline_now_ms']):.2f} ms with the copy paused "
            f"({state['quiet_windows']} window(s))"
        )
    if config.enabled:
        summary += f"; held back {float(state.get('throttled_seconds', 0.0)):.1f}s in {len(episodes) // 2 + len(episodes) % 2} episode(s)"
    return {
        "enabled": config.enabled,
        "max_probe_ms": config.max_probe_ms,
        "max_active": config.max_active,
        "baseline_ms": config.baseline_ms,
        "baseline_windows_ms": list(config.baseline_windows_ms),
        "budget_from": config.budget_from,
        "max_replica_lag": config.max_replica_lag,
        "probe": config.probe,
        "running": bool(running) and copying,
        "throttling": throttling,
        "duty": float(state.get("duty", 1.0)),
        "reason": str(state.get("reason", "")) if throttling else "",
        "probe_p95_ms": state.get("probe_p95_ms"),
        "active_backends": state.get("active"),
        "replica_lag": state.get("replica_lag"),
        "throttled_seconds": float(state.get("throttled_seconds", 0.0)),
        "baseline_now_ms": state.get("baseline_now_ms"),
        "budget_now_ms": state.get("budget_now_ms"),
        "aim_ms": state.get("aim_ms"),
        "quiet_windows": int(state.get("quiet_windows", 0)),
        "episodes": episodes,
        "summary": summary,
    }


def channel_for(move: MoveRange) -> replication.Channel | None:
    """The replication channel that keeps the move's other side current in its phase (None: there is none)."""
    if _ending(move):
        return None  # cancel and complete drop replication first: no slot is expected any more
    if move.phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.READS_SWITCHED, Phase.ROLLED_BACK):
        return replication.forward(move.id, move.source, move.target)
    if move.phase == Phase.WRITES_SWITCHED:
        return replication.reverse(move.id, move.source, move.target)
    return None


def _ending(move: MoveRange) -> str:
    """The ending command (complete or cancel) a move is in the middle of, or ""."""
    if move.phase in ACTIVE_PHASES and move.step.startswith("complete"):
        return "complete"
    if move.phase in ACTIVE_PHASES and move.step.startswith("cancel"):
        return "cancel"
    return ""


@dataclass
class _Observed:
    """What the servers say about a move right now."""

    syncs: dict[str, replication.TableSync] = field(default_factory=dict)
    lag: replication.Lag = field(default_factory=lambda: replication.Lag(None, None, False))
    errors: int = 0
    copy_error: str = ""
    warnings: list[str] = field(default_factory=list)
    throttle_running: bool | None = None  # a controller steers the copy now (None: unknown or not copying)


def _observe(move: MoveRange, db: Pool) -> _Observed:
    seen = _Observed()
    if move.phase == Phase.COPYING and move.throttle.get("enabled"):
        try:
            seen.throttle_running = throttle.controller_running(db[move.target], move.id)
        except psycopg.Error:
            pass
    channel = channel_for(move)
    try:
        seen.syncs = observe_copy(move, db[move.target])
    except psycopg.Error as exc:
        seen.warnings.append(f"cannot read copy progress from {move.target}: {exc}")
    if channel is not None:
        try:
            seen.lag = replication.lag(db[channel.publisher], channel)
            seen.errors = sum(replication.subscription_errors(db[channel.subscriber], channel.name))
            if seen.lag.bytes is None and move.copy_started_at is not None:
                seen.warnings.append(f"replication slot {channel.name} is missing on {channel.publisher}")
        except psycopg.Error as exc:
            seen.warnings.append(f"cannot read replication state: {exc}")
    # The error counters only grow; a copy is failing while it has errors and no table is being copied now.
    copying_now = any(sync.rows_copying is not None for sync in seen.syncs.values())
    if move.phase == Phase.COPYING and seen.errors and not copying_now and not copy_finished(seen.syncs):
        seen.copy_error = _copy_error(move, db, seen.errors)
    elif move.phase == Phase.COPYING and copy_finished(seen.syncs):
        seen.warnings.append(
            f"the initial copy has finished; `shardmove refresh {move.id}` (or the next command of the move) "
            "records it and the move becomes catching_up"
        )
    ending = _ending(move)
    if ending:
        seen.warnings.append(
            f"`{ending}` was interrupted (step: {move.step}); replication is dropped and the move cannot be rolled "
            f"back any more: re-run `shardmove {ending} {move.id}` to finish it."
        )
    seen.warnings += _fence_warnings(move, db)
    return seen


def _copy_error(move: MoveRange, db: Pool, errors: int) -> str:
    """Why a copy that reports errors keeps failing, as far as the servers show it."""
    counted = f"{errors} error(s) in {move.target}'s subscription workers"
    try:
        found = [
            c
            for table in sharded_tables()
            for c in id_collisions(db[move.source], db[move.target], table, move.lo, move.hi, limit=3)
        ]
    except psycopg.Error as exc:
        return f"{counted}; see {move.target}'s server log ({exc} while looking for ID collisions)."
    if found:
        return f"{counted}: {collision_message(found[:3], move.target)}"
    return (
        f"{counted}; the reason is in {move.target}'s server log (for example a unique violation from rows written "
        f"directly on {move.target}). The workers retry by themselves once the cause is fixed; or `shardmove cancel "
        f"{move.id}`."
    )


def _table_statuses(move: MoveRange, syncs: dict[str, replication.TableSync]) -> list[TableStatus]:
    """Recorded copy progress, overlaid with what the target reports now (nothing is saved)."""
    out: list[TableStatus] = []
    for record in MoveTable.objects.filter(move=move):
        state, rows, exact = record.sync_state, record.rows_copied, record.rows_exact or record.synced_at is not None
        sync = syncs.get(record.table)
        if sync is not None:
            state = sync.state
            if sync.state == "d" and sync.rows_copying is not None:
                rows = sync.rows_copying
            elif sync.state in ("f", "s", "r") and record.synced_at is None:
                rows, exact = max(record.rows_estimated, rows), record.rows_exact
        total = max(record.rows_estimated, rows)
        out.append(TableStatus(record.table, replication.SYNC_STATES.get(state, state or "-"), rows, total, exact))
    return out


def move_status(move: MoveRange, *, db: Pool | None = None) -> MoveStatus:
    """Everything about one move, from the control database and the two servers; reads only.

    ``db``: connections to reuse (a follower reporting every second), else its own for this call.
    """
    move.refresh_from_db()
    with pool_or(db) as connections:
        seen = _observe(move, connections)
    channel = channel_for(move)
    tables = _table_statuses(move, seen.syncs)
    copied = sum(t.rows_copied for t in tables)
    total = max(sum(t.rows_total for t in tables), copied)
    rate = eta = None
    if move.copy_started_at:
        end = move.copy_finished_at or timezone.now()
        seconds = max((end - move.copy_started_at).total_seconds(), 0.001)
        rate = copied / seconds
        if move.phase == Phase.COPYING and rate > 0 and not seen.copy_error:
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
        tables=tables,
        rows_copied=copied,
        rows_total=total,
        bytes_total=sum(t.bytes_estimated for t in MoveTable.objects.filter(move=move)),
        copy_rate=rate,
        eta_seconds=eta,
        replication=f"{channel.name} ({channel.publisher} -> {channel.subscriber})" if channel else "none",
        lag_bytes=seen.lag.bytes,
        lag_seconds=seen.lag.seconds,
        subscription_errors=seen.errors,
        verified=verified,
        last_error=move.last_error,
        lease=lease,
        created_at=move.created_at,
        phase_changed_at=move.phase_changed_at,
        copy_error=seen.copy_error,
        warnings=seen.warnings,
        events=events,
        next_steps=_next_steps(move, seen),
        mirrored_reads=asdict(mirror_summary(move)),
        throttle=throttle_status(move, seen.throttle_running),
        age_seconds=round((timezone.now() - move.created_at).total_seconds(), 3),
    )


def _next_steps(move: MoveRange, seen: _Observed) -> list[str]:
    if move.phase == Phase.COPYING and copy_finished(seen.syncs):
        return [f"manage.py shardmove refresh {move.id}"]
    if move.phase == Phase.COPYING and seen.copy_error:
        return [f"manage.py shardmove status {move.id}", f"manage.py shardmove cancel {move.id}"]
    return phases.next_steps(move)


@dataclass
class MoveSummary:
    """One line of ``shardmove list``: every move, with its phase, age and lag."""

    id: int
    range: str
    lo: int
    hi: int
    source: str
    target: str
    phase: str
    step: str
    age_seconds: float
    phase_age_seconds: float
    lag_bytes: int | None
    lag_seconds: float | None
    last_error: str
    next_steps: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def move_list(*, active_only: bool = False) -> list[MoveSummary]:
    """Every move (or the active ones), oldest first; the lag is read from the servers for active moves only."""
    now = timezone.now()
    out: list[MoveSummary] = []
    with pool() as db:
        for move in moves_to_show(all_moves=not active_only):
            lag = replication.Lag(None, None, False)
            channel = channel_for(move)
            if channel is not None:
                try:
                    lag = replication.lag(db[channel.publisher], channel)
                except psycopg.Error:
                    pass  # shown as unknown (null); `status` names the server that does not answer
            out.append(
                MoveSummary(
                    id=move.id,
                    range=label(move.lo, move.hi),
                    lo=move.lo,
                    hi=move.hi,
                    source=move.source,
                    target=move.target,
                    phase=move.phase,
                    step=move.step,
                    age_seconds=round((now - move.created_at).total_seconds(), 3),
                    phase_age_seconds=round((now - move.phase_changed_at).total_seconds(), 3),
                    lag_bytes=lag.bytes,
                    lag_seconds=lag.seconds,
                    last_error=move.last_error,
                    next_steps=phases.next_steps(move),
                )
            )
    return out


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
