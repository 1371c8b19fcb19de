"""Operations on moves (writes). ``manage.py shardmove`` is a thin layer over these.

Every operation that changes anything holds the move's lease, starts by
bringing a move left behind by a killed command back to a consistent state
(``cutover.reconcile``), and is safe to re-run: each step checks what already
exists on the servers before acting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from django.db import connections, transaction
from django.utils import timezone
from psycopg import sql

from shardrouter.conf import get_settings as shardrouter_settings

from . import cutover, fence, phases, replication, selectors, throttle, throttle_controller
from .conf import get_settings
from .copying import refresh_copy_state
from .errors import MoveError
from .hooks import pause_point
from .maps import route_range
from .mirror import mirror_summary
from .models import LagSample, MoveEvent, MoveRange, MoveTable, Phase, VerifyRun
from .pgconn import Pool, pool, pool_or
from .phases import require_phase
from .planning import MovePlan, check_servers, label, overlapping_moves, validate_request
from .progress import Meter, Reporter
from .schema import ensure_replica_identity, sharded_tables
from .verify import verify_range
from .work import Work, driving

_CREATE_LOCK = 0x5157_0001  # serialises move creation (overlap check + insert) in the control database
DDL_LOCK_TIMEOUT = 5.0  # brief table locks of set-up DDL (trigger, replica identity)
SNAPSHOT_WAIT = 10.0  # how long start waits for transactions that began before the fence


def move_plan(*, lo: int, hi: int, target: str) -> MovePlan:
    """Validate a move of ``[lo, hi)`` to ``target`` and size it; changes nothing."""
    plan = validate_request(lo, hi, target)
    with pool() as db:
        check_servers(plan, db)
    return plan


def _create_move(plan: MovePlan) -> MoveRange:
    alias = shardrouter_settings().control_database
    with transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CREATE_LOCK])
        racing = overlapping_moves(plan.lo, plan.hi)
        if racing:
            raise MoveError(
                f"{plan.label} overlaps move {racing[0].id}, created a moment ago by someone else; "
                "see `shardmove status`."
            )
        move = MoveRange.objects.create(
            lo=plan.lo, hi=plan.hi, source=plan.source, target=plan.target, step="setting up"
        )
        MoveTable.objects.bulk_create(
            MoveTable(
                move=move, table=t.name, rows_estimated=size.rows, rows_exact=size.exact, bytes_estimated=size.bytes
            )
            for t, size in plan.tables
        )
        MoveEvent.objects.create(
            move=move, kind="created", message=f"Move of {plan.label} from {plan.source} to {plan.target} created."
        )
    return move


def move_start(
    *, lo: int, hi: int, target: str, reporter: Reporter, copy_throttle: throttle.ThrottleConfig | None = None
) -> MoveRange:
    """Create the move (or resume its set-up) and start the copy; returns as soon as the servers copy.

    ``copy_throttle`` (default: from the settings) is fixed when the copy starts; ``follow_copy`` applies it.
    """
    if copy_throttle is None:
        copy_throttle = throttle.requested(no_throttle=False, max_latency_ms=None, max_active=None)
    plan = move_plan(lo=lo, hi=hi, target=target)
    move = plan.existing or _create_move(plan)
    with driving(move, reporter) as work:
        if move.copy_started_at is not None:
            refresh_copy_state(move, work.target)
            reporter.info(f"Move {move.id} was started already ({move.phase}); nothing to do.")
            return move
        if plan.existing is not None:
            work.journal("resume", f"Resuming the set-up of move {move.id} (step: {move.step or 'none'}).")
        _set_up(work, copy_throttle)
    return move


def _set_up(work: Work, copy_throttle: throttle.ThrottleConfig) -> None:
    move = work.move
    for alias in (move.source, move.target):
        conn = work.db[alias]
        for item in fence.install(conn, work.tables, DDL_LOCK_TIMEOUT):
            work.journal("install", f"{alias}: installed {item}.")
        for table in work.tables:
            if ensure_replica_identity(conn, table, DDL_LOCK_TIMEOUT):
                work.journal(
                    "replica-identity", f"{alias}: {table.name} now uses its (id, shard key) index as replica identity."
                )
    source, target = work.source, work.target
    channel = replication.forward(move.id, move.source, move.target)
    if replication.subscription_oid(target, channel.name) is None:
        _set_up_throttle(work, copy_throttle)
    # Until the cut-over nobody may write the range on the target: replication alone fills it.
    fence.put(target, move.id, move.lo, move.hi, "moved", moved_to=move.source)
    fence.put(source, move.id, move.lo, move.hi, "tracking")
    if not fence.wait_for_older_snapshots(source, timeout=SNAPSHOT_WAIT):
        work.reporter.warning(
            f"Transactions older than the move's fence are still open on {move.source} after {SNAPSHOT_WAIT:.0f}s; "
            "if they use REPEATABLE READ and write to the range, the cut-over cannot re-verify those rows."
        )
    fence.marker_init(source, move.id)
    if replication.subscription_oid(target, channel.name) is None:
        fence.marker_drop(target, move.id)  # a leftover would collide with the marker's initial copy
    if replication.create_publication(source, channel.name, work.tables, move_id=move.id, lo=move.lo, hi=move.hi):
        work.journal("publication", f"Created publication {channel.name} on {move.source}.")
    pause_point("start:publication")
    if replication.create_slot(source, channel.name):
        work.journal("slot", f"Created replication slot {channel.name} on {move.source}.")
    pause_point("start:slot")
    oid = replication.create_subscription(target, channel, copy_data=True)
    now = timezone.now()
    MoveRange.objects.filter(id=move.id).update(copy_started_at=now, step="", updated_at=now)
    move.copy_started_at, move.step = now, ""
    work.set_subscription_oid(oid)
    work.journal(
        "copy",
        f"Subscription {channel.name} on {move.target} is copying {label(move.lo, move.hi)} from {move.source}; "
        f"follow it with `shardmove status {move.id} --watch`.",
    )
    pause_point("start:subscription")


def _set_up_throttle(work: Work, copy_throttle: throttle.ThrottleConfig) -> None:
    """Measure the source before the copy, keep the budget on the move and install the gate on the target."""
    move = work.move
    config = throttle.for_source(copy_throttle, move.source)
    config = throttle.with_baseline(config, work.source, throttle.probe_table(work.tables), move.lo, move.hi)
    MoveRange.objects.filter(id=move.id).update(throttle=config.to_json())
    move.throttle = config.to_json()
    if config.enabled:
        throttle.install_gate(work.target, move.id, work.tables, move.lo, move.hi, DDL_LOCK_TIMEOUT)
    else:
        throttle.remove_gate(work.target, move.id, work.tables)
    work.journal("throttle", f"Copy throttle {config.describe()}.", **config.to_json())


def move_refresh(move: MoveRange, *, db: Pool | None = None) -> MoveRange:
    """Record the copy progress the target reports; a finished copy makes the move ``catching_up``.

    Needs no lease: it only records what the servers show and moves the phase
    forward with a conditional update, so it is safe next to any command.
    ``db``: connections to reuse (a follower refreshing every second would
    otherwise start a new backend on the source and the target each time).
    """
    move.refresh_from_db()
    with pool_or(db) as connections:
        refresh_copy_state(move, connections[move.target])
        _record_lag_sample(move, connections)
    return move


LAG_SAMPLE_EVERY_SECONDS = 1.0


def _record_lag_sample(move: MoveRange, db: Pool) -> None:
    """Keep the lag the publisher reports now, at most once a second per move (the console charts them)."""
    channel = selectors.channel_for(move)
    if channel is None:
        return
    last = LagSample.objects.filter(move=move).order_by("-id").values_list("at", flat=True).first()
    if last is not None and (timezone.now() - last).total_seconds() < LAG_SAMPLE_EVERY_SECONDS:
        return
    try:
        lag = replication.lag(db[channel.publisher], channel)
    except psycopg.Error:
        return  # a server that does not answer now; status says so, the chart has a gap
    rows = sum(MoveTable.objects.filter(move=move).values_list("rows_copied", flat=True))
    LagSample.objects.create(
        move=move, phase=move.phase, lag_bytes=lag.bytes, lag_seconds=lag.seconds, rows_copied=rows
    )


def follow_copy(move: MoveRange, reporter: Reporter, *, poll: float = 1.0) -> MoveRange:
    """Report copy progress until the copy is done (``start --wait``); the servers do the work.

    A throttled move's copy is steered meanwhile (``throttle_controller.Controller``): the
    follower probes the source instead of sleeping between progress lines.
    """
    controller = _controller(move, reporter)
    try:
        with pool() as db:
            return _follow(move, reporter, controller, db, poll)
    finally:
        if controller is not None:
            controller.close()


def _follow(
    move: MoveRange, reporter: Reporter, controller: throttle_controller.Controller | None, db: Pool, poll: float
) -> MoveRange:
    if controller is not None:
        controller.run_for(0.1)  # read the source and set the gate before anything else
    while True:
        move = move_refresh(move, db=db)
        status = selectors.move_status(move, db=db)
        if status.phase != phases.INITIAL:
            reporter.info(f"Move {move.id} copied; now {status.phase}.")
            return move
        line = status.copy_line()
        if controller is not None and controller.episode_started is not None:
            line += f" (throttled to {controller.duty:.0%}: {controller.reason})"
        reporter.progress(line)
        if reporter.should_stop():
            reporter.info("Stopped following; the copy goes on in the database servers.")
            return move
        if controller is not None:
            controller.run_for(poll)
        else:
            time.sleep(poll)


def _controller(move: MoveRange, reporter: Reporter) -> throttle_controller.Controller | None:
    move.refresh_from_db()
    config = throttle.ThrottleConfig.from_json(move.throttle)
    if config is None or not config.enabled or move.phase != Phase.COPYING:
        return None
    table = throttle.probe_table(sharded_tables())
    controller = throttle_controller.Controller(move, config, table, get_settings().throttle_interval)
    if not controller.owner:
        reporter.warning(f"Another command already throttles move {move.id}'s copy; this one only follows it.")
    return controller


def move_switch_reads(
    move: MoveRange, *, reporter: Reporter, back: bool, max_lag: float, dry_run: bool, force: bool = False
) -> bool:
    with driving(move, reporter) as work:
        refresh_copy_state(work.move, work.target)
        throttle.remove_gate_if_free(work.target, move.id, work.tables)  # left if the copy's end found it busy
        if not back and work.move.phase in (Phase.CATCHING_UP, Phase.ROLLED_BACK):
            _refuse_on_mirror_mismatches(work.move, reporter, force=force)
        return cutover.switch_reads(work, back=back, max_lag=max_lag, dry_run=dry_run)


def _refuse_on_mirror_mismatches(move: MoveRange, reporter: Reporter, *, force: bool) -> None:
    """Mirrored reads that differed (after replication caught up) within the window block the switch."""
    found = mirror_summary(move)
    if not found.recent_mismatches:
        return
    sites = "; ".join(found.call_sites[:5])
    message = (
        f"{found.recent_mismatches} mirrored read(s) of move {move.id} returned different rows on {move.target} "
        f"than on {move.source} in the last {get_settings().mirror_mismatch_window:.0f} s, after replication had "
        f"caught up (call sites: {sites})."
    )
    if force:
        reporter.warning(message + " Switching anyway (--force).")
        return
    raise MoveError(
        message + f" Run `shardmove verify {move.id} --restart` to find the rows that differ and fix them; "
        "switch reads once no new mismatch shows, or pass --force to switch anyway."
    )


def move_switch_writes(
    move: MoveRange, *, reporter: Reporter, max_freeze: float, max_lag: float, dry_run: bool, attempts: int = 3
) -> cutover.CutOverResult | None:
    with driving(move, reporter) as work:
        throttle.remove_gate_if_free(work.target, move.id, work.tables)  # left if earlier commands found it busy
        return cutover.switch_writes(work, max_freeze=max_freeze, max_lag=max_lag, dry_run=dry_run, attempts=attempts)


def move_rollback(
    move: MoveRange, *, reporter: Reporter, max_freeze: float, max_lag: float, dry_run: bool, attempts: int = 3
) -> cutover.CutOverResult | None:
    with driving(move, reporter) as work:
        if work.move.step.startswith("complete"):
            raise MoveError(
                f"`complete` has already dropped the replication back to {move.source}, so move {move.id} cannot be "
                f"rolled back any more; re-run `shardmove complete {move.id}` to finish it."
            )
        throttle.remove_gate_if_free(work.target, move.id, work.tables)  # left if earlier commands found it busy
        return cutover.rollback(work, max_freeze=max_freeze, max_lag=max_lag, dry_run=dry_run, attempts=attempts)


def move_verify(move: MoveRange, *, reporter: Reporter, restart: bool, chunk_rows: int | None) -> VerifyRun:
    if chunk_rows is not None and chunk_rows < 1:
        raise MoveError(f"--chunk-rows must be at least 1 (got {chunk_rows}); leave it out for the default.")
    with driving(move, reporter) as work:
        cutover.reconcile(work)
        refresh_copy_state(work.move, work.target)
        return verify_range(work, restart=restart, chunk_rows=chunk_rows)


# --- endings -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    batch_rows: int
    pause: float

    @classmethod
    def default(cls) -> Throttle:
        config = get_settings()
        return cls(config.delete_batch_rows, config.delete_pause)


def _rows_in_range(work: Work, alias: str) -> dict[str, int]:
    move = work.move
    return {t.name: t.rows_in_range(work.db[alias], move.lo, move.hi) for t in work.tables}


def _delete_range(work: Work, alias: str, throttle: Throttle, step: str) -> int:
    """Delete the range's rows on ``alias`` in small batches (the fence is bypassed for these deletes only)."""
    move = work.move
    conn = work.db[alias]
    meter = Meter(total=sum(_rows_in_range(work, alias).values()))
    for table in work.tables:
        statement = sql.SQL("DELETE FROM {t} WHERE {pk} IN (SELECT {pk} FROM {t} WHERE {r} LIMIT %s)").format(
            t=table.ident, pk=sql.Identifier(table.pk), r=table.in_range(move.lo, move.hi)
        )
        while True:
            with fence.bypass(conn):
                deleted = conn.execute(statement, [throttle.batch_rows]).rowcount
            meter.add(deleted)
            work.reporter.progress(meter.line(f"deleting {label(move.lo, move.hi)} from {alias}"))
            if deleted < throttle.batch_rows:
                break
            pause_point(step)
            work.checkpoint()
            time.sleep(throttle.pause)
    return meter.done


def _wait_for_map_to_spread() -> None:
    """Let every process load the newest map before rows an older map pointed to disappear.

    Processes check for a new version every REFRESH_INTERVAL; waiting until the
    newest version is twice that old (plus a margin) covers a check in progress.
    """
    settle = 2 * shardrouter_settings().refresh_interval + 0.5
    with connections[shardrouter_settings().control_database].cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM now() - created_at) FROM shardrouter_shardmaprevision ORDER BY version DESC LIMIT 1"
        )
        row = cursor.fetchone()
    age = float(row[0]) if row else settle
    time.sleep(max(0.0, settle - age))


def _rows_summary(rows: dict[str, int]) -> str:
    return f"{sum(rows.values()):,} row(s) ({', '.join(f'{n:,} in {t}' for t, n in rows.items())})"


def _drop_replication(work: Work) -> None:
    move = work.move
    fwd = replication.forward(move.id, move.source, move.target)
    rev = replication.reverse(move.id, move.source, move.target)
    source, target = work.source, work.target
    for channel, subscriber, publisher in ((fwd, target, source), (rev, source, target)):
        oid = replication.drop_subscription(subscriber, channel.name)
        if channel is fwd:
            replication.drop_sync_slots(publisher, oid or work.move.subscription_oid)
        replication.drop_slot(publisher, channel.name)
        replication.drop_publication(publisher, channel.name)


def _forget(conn_alias: str, work: Work) -> None:
    conn = work.db[conn_alias]
    throttle.remove_gate(conn, work.move.id, work.tables)
    fence.remove(conn, work.move.id)
    fence.drop_changes(conn, work.move.id)
    fence.marker_drop(conn, work.move.id)


def move_cancel(move: MoveRange, *, reporter: Reporter, dry_run: bool, throttle: Throttle) -> bool:
    """Abandon a move whose writes are still on the source: remove everything it created, copied rows included."""
    with driving(move, reporter) as work:
        cutover.reconcile(work)
        move = work.move
        after = require_phase(move, phases.CANCEL)
        if after is None:
            reporter.info(f"Move {move.id} is already cancelled.")
            return False
        if dry_run:
            reporter.info(
                f"Dry run: would route {label(move.lo, move.hi)} entirely to {move.source}, drop the move's "
                f"publications, slots and subscriptions, delete the copy on {move.target}, "
                f"{_rows_summary(_rows_in_range(work, move.target))}, and remove its fences. Nothing changed."
            )
            return False
        work.set_step("cancelling")
        if route_range(
            move.lo,
            move.hi,
            writes=move.source,
            reads=move.source,
            allowed_from={(move.source, move.target)},
            reason=f"move {move.id}: cancelled",
        ):
            work.journal("reads", f"Reads of {label(move.lo, move.hi)} go to {move.source} again.")
        _drop_replication(work)
        work.journal("replication", "Dropped the move's subscriptions, slots and publications.")
        pause_point("cancel:replication-dropped")
        _wait_for_map_to_spread()
        deleted = _delete_range(work, move.target, throttle, "cancel:batch")
        _forget(move.target, work)
        _forget(move.source, work)
        work.set_phase(after, action=phases.CANCEL)
        work.journal("cancelled", f"Move {move.id} cancelled: {deleted:,} copied row(s) removed from {move.target}.")
        return True


def move_complete(move: MoveRange, *, reporter: Reporter, dry_run: bool, throttle: Throttle) -> bool:
    """Finish a move whose writes are on the target: drop replication and delete the moved rows from the source."""
    with driving(move, reporter) as work:
        cutover.reconcile(work)
        move = work.move
        after = require_phase(move, phases.COMPLETE)
        if after is None:
            reporter.info(f"Move {move.id} is already complete.")
            return False
        if dry_run:
            reporter.info(
                f"Dry run: would drop the move's replication (no rollback after that), then delete "
                f"{_rows_summary(_rows_in_range(work, move.source))} of {label(move.lo, move.hi)} from {move.source} "
                f"in batches of {throttle.batch_rows}. Nothing changed."
            )
            return False
        work.set_step("complete: dropping replication")
        _drop_replication(work)
        _forget(move.target, work)
        work.journal(
            "replication", "Dropped the move's subscriptions, slots and publications; rollback is no longer possible."
        )
        pause_point("complete:replication-dropped")
        _wait_for_map_to_spread()
        work.set_step("complete: deleting moved rows from the source")
        deleted = _delete_range(work, move.source, throttle, "complete:batch")
        _forget(move.source, work)
        work.set_phase(after, action=phases.COMPLETE)
        work.journal("complete", f"Move {move.id} complete: {deleted:,} row(s) deleted from {move.source}.")
        return True
