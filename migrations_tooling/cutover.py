"""Traffic switching: reads, then writes (the freeze), and back.

The write cut-over (``switch-writes``) and its mirror image (``rollback``) run
the same protocol with the roles of the two databases swapped. "old" is the
database that takes the range's writes now, "new" the one that will:

Outside the freeze
  a. create the publication of the following channel (new -> old);
  b. make sure a verified baseline exists (a full ``verify`` if none) and
     re-verify the rows changed since, until at most a few hundred are left;
  c. refuse if replication lag (a marker round trip) exceeds ``--max-lag``;
  d. create the slot of the following channel on new. (Creating a logical
     slot waits for every transaction running on new's server; that wait must
     not happen inside the freeze.)

The freeze (every step is bounded by what is left of ``--max-freeze``)
  1. on old, in one transaction: ``LOCK ... IN SHARE MODE`` (waits, at most
     ``lock_timeout``, for in-flight writers), fence ``tracking`` -> ``frozen``
     with ``expires_at = now + max_freeze``. Writes to the range now fail with
     QQ001 and ``run_sharded_write`` retries them;
  2. commit a marker on old and wait until new shows it: new has applied every
     write old ever accepted for the range;
  3. compare, exactly, every row the fence logged since the baseline;
  4. on new: start logging changes (fence ``tracking``) and advance the slot
     of the following channel to new's current WAL position: it skips
     everything replicated from old and captures every later write on new;
  5. the commit point, on old: with the table lock again, fence ``frozen`` ->
     ``moved`` only if the freeze has not expired. Zero rows updated means it
     expired (writes may already have resumed on old): abort.

After the commit point (users are no longer held: QQ002 names the new
database, and ``run_sharded_write`` retries there)
  6. flip the shard map (reads and writes -> new);
  7. disable the active channel's subscription (wait for its workers to
     exit), create the following channel's subscription (no initial copy),
     then drop the active channel's subscription and slot.

Any failure before 5 aborts: the freeze is lifted at once (or expires by
itself if this process died), new goes back to refusing writes, the new slot
is dropped, and the move stays where it was. A crash after 5 is completed by
re-running any command of the move (see ``reconcile``). Forward and reverse
replication are never enabled at the same time (PostgreSQL 15 cannot filter
replicated changes by origin, so they would loop).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg

from shardrouter.conf import get_settings as shardrouter_settings

from . import fence, replication, verify
from .conf import get_settings
from .errors import CutOverAborted, MoveError, RowsDiffer
from .hooks import pause_point
from .maps import route_range
from .models import MoveRange, Phase
from .planning import label
from .progress import format_duration
from .work import Work, record_error

SLOT_CREATION_TIMEOUT = 60.0


@dataclass(frozen=True)
class Direction:
    """One way of cutting writes over: from ``old`` to ``new``."""

    label: str
    old: str
    new: str
    active: replication.Channel  # old -> new, running before the cut-over
    following: replication.Channel  # new -> old, running after it
    phase_before: Phase
    phase_after: Phase


def forward_direction(move: MoveRange) -> Direction:
    return Direction(
        "switch-writes",
        move.source,
        move.target,
        replication.forward(move.id, move.source, move.target),
        replication.reverse(move.id, move.source, move.target),
        Phase.READS_SWITCHED,
        Phase.WRITES_SWITCHED,
    )


def rollback_direction(move: MoveRange) -> Direction:
    return Direction(
        "rollback",
        move.target,
        move.source,
        replication.reverse(move.id, move.source, move.target),
        replication.forward(move.id, move.source, move.target),
        Phase.WRITES_SWITCHED,
        Phase.ROLLED_BACK,
    )


@dataclass
class CutOverResult:
    """Timings of a successful cut-over, in seconds."""

    direction: str
    freeze: float
    catch_up: float
    verified_rows: int
    attempts: int
    timings: dict[str, float] = field(default_factory=dict)


# --- reads ---------------------------------------------------------------------------------------------


def measure_lag(work: Work, primary: str, replica: str, *, limit: float) -> float | None:
    """Seconds until a marker committed on ``primary`` shows on ``replica``; None if over ``limit``."""
    seq = fence.marker_bump(work.db[primary], work.move.id)
    return fence.wait_for_marker(work.db[replica], work.move.id, seq, timeout=limit)


def switch_reads(work: Work, *, back: bool, max_lag: float, dry_run: bool) -> bool:
    """Send the range's reads to the target (or ``back`` to the source); False if nothing had to change."""
    reconcile(work)
    move = work.move
    if back:
        if move.phase in (Phase.CATCHING_UP, Phase.ROLLED_BACK, Phase.COPYING):
            work.reporter.info(f"Reads of move {move.id} already go to {move.source}; nothing to do.")
            return False
        if move.phase == Phase.WRITES_SWITCHED:
            raise MoveError(
                f"Move {move.id} has switched writes too; `shardmove rollback {move.id}` brings reads and writes back."
            )
        if move.phase != Phase.READS_SWITCHED:
            raise MoveError(f"Move {move.id} is {move.phase}; its reads cannot be switched any more.")
        if dry_run:
            work.reporter.info(f"Dry run: would route reads of {label(move.lo, move.hi)} back to {move.source}.")
            return False
        route_range(
            move.lo,
            move.hi,
            writes=move.source,
            reads=move.source,
            allowed_from={(move.source, move.target)},
            reason=f"move {move.id}: reads back to {move.source}",
        )
        work.set_phase(Phase.CATCHING_UP, expected=(Phase.READS_SWITCHED,))
        work.journal("reads", f"Reads of {label(move.lo, move.hi)} go to {move.source} again.")
        return True
    if move.phase in (Phase.READS_SWITCHED, Phase.WRITES_SWITCHED):
        work.reporter.info(f"Reads of move {move.id} already go to {move.target}; nothing to do.")
        return False
    if move.phase == Phase.COPYING:
        raise MoveError(
            f"Move {move.id} is still copying; switch reads once `shardmove status {move.id}` shows catching_up."
        )
    if move.phase not in (Phase.CATCHING_UP, Phase.ROLLED_BACK):
        raise MoveError(f"Move {move.id} is {move.phase}; its reads cannot be switched.")
    lag = measure_lag(work, move.source, move.target, limit=max_lag)
    if lag is None:
        raise MoveError(
            f"{move.target} is more than {max_lag:.1f}s behind {move.source}; reads there would be stale. Wait until "
            f"`shardmove status {move.id}` shows the lag under that, or pass a larger --max-lag."
        )
    if dry_run:
        work.reporter.info(
            f"Dry run: would route reads of {label(move.lo, move.hi)} to {move.target} (lag now {lag * 1000:.0f} ms)."
        )
        return False
    route_range(
        move.lo,
        move.hi,
        writes=move.source,
        reads=move.target,
        allowed_from={(move.source, move.source)},
        reason=f"move {move.id}: reads to {move.target}",
    )
    work.set_phase(Phase.READS_SWITCHED, expected=(Phase.CATCHING_UP, Phase.ROLLED_BACK))
    work.journal(
        "reads",
        f"Reads of {label(move.lo, move.hi)} go to {move.target} (lag {lag * 1000:.0f} ms); writes stay on {move.source}.",
        lag=lag,
    )
    return True


# --- writes --------------------------------------------------------------------------------------------


def switch_writes(
    work: Work, *, max_freeze: float, max_lag: float, dry_run: bool, attempts: int = 3
) -> CutOverResult | None:
    """The write cut-over source -> target (see the module docstring)."""
    reconcile(work)
    move = work.move
    if move.phase == Phase.WRITES_SWITCHED:
        work.reporter.info(f"Writes of move {move.id} already go to {move.target}; nothing to do.")
        return None
    if move.phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.ROLLED_BACK):
        raise MoveError(
            f"Move {move.id} still reads from {move.source}: switch reads first (`shardmove switch-reads {move.id}`), "
            "check the application, then switch writes."
        )
    if move.phase != Phase.READS_SWITCHED:
        raise MoveError(f"Move {move.id} is {move.phase}; there are no writes to switch.")
    return _cut_over(
        work, forward_direction(move), max_freeze=max_freeze, max_lag=max_lag, dry_run=dry_run, attempts=attempts
    )


def rollback(
    work: Work, *, max_freeze: float, max_lag: float, dry_run: bool, attempts: int = 3
) -> CutOverResult | None:
    """Send traffic back to the source: reads only (before the write cut-over) or writes too (after it)."""
    reconcile(work)
    move = work.move
    if move.phase == Phase.READS_SWITCHED:
        switch_reads(work, back=True, max_lag=max_lag, dry_run=dry_run)
        return None
    if move.phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.ROLLED_BACK):
        raise MoveError(
            f"Move {move.id} has nothing to roll back: reads and writes are on {move.source}. "
            f"`shardmove cancel {move.id}` abandons the move and removes the copy."
        )
    if move.phase != Phase.WRITES_SWITCHED:
        raise MoveError(f"Move {move.id} is {move.phase}; it can no longer be rolled back.")
    return _cut_over(
        work, rollback_direction(move), max_freeze=max_freeze, max_lag=max_lag, dry_run=dry_run, attempts=attempts
    )


def _prepare(work: Work, d: Direction, *, max_lag: float, dry_run: bool) -> tuple[str, float]:
    """Everything that can happen before the freeze; returns (what the freeze will re-verify, current lag)."""
    move = work.move
    if dry_run:
        lag = _lag_within(work, d, max_lag)
        if move.watermark_alias != d.old:
            return "the whole range (no verify has passed yet: it would run first)", lag
        pending = verify.count_changed(fence.changed_keys(work.db[d.old], move.id, move.watermark_snapshot or None))
        return f"{pending} changed row(s) (fewer after re-verifying them outside the freeze)", lag
    created = replication.create_publication(
        work.db[d.new], d.following.name, work.tables, move_id=move.id, lo=move.lo, hi=move.hi
    )
    if created:
        work.journal("publication", f"Created publication {d.following.name} on {d.new} (for the way back).")
    if move.watermark_alias != d.old:
        work.reporter.info(f"No verified baseline on {d.old} yet: verifying the whole range first.")
        run = verify.verify_range(work)
        if run.mismatches:
            raise MoveError(
                f"Verify run {run.id} found {len(run.mismatches)} mismatching row(s); writes stay on {d.old}. "
                f"`shardmove verify {move.id}` lists them."
            )
    left = verify.advance_watermark(work, limit=get_settings().changed_keys_in_freeze)
    return f"{left} changed row(s)", _lag_within(work, d, max_lag)


def _create_following_slot(work: Work, d: Direction) -> None:
    try:
        replication.create_slot(work.db[d.new], d.following.name, timeout=SLOT_CREATION_TIMEOUT)
    except psycopg.errors.QueryCanceled:
        raise MoveError(
            f"Creating replication slot {d.following.name} on {d.new} waited over {SLOT_CREATION_TIMEOUT:.0f}s for "
            f"transactions running on that server to finish (a logical slot needs them gone). Find them in "
            f"pg_stat_activity on {d.new}'s server, then retry."
        ) from None


def _lag_within(work: Work, d: Direction, max_lag: float) -> float:
    lag = measure_lag(work, d.old, d.new, limit=max_lag)
    if lag is None:
        raise MoveError(
            f"{d.new} is more than {max_lag:.1f}s behind {d.old}; a cut-over now would freeze writes for too long. "
            f"Wait until `shardmove status {work.move.id}` shows the lag under that (or pass a larger --max-lag)."
        )
    return lag


def _cut_over(
    work: Work, d: Direction, *, max_freeze: float, max_lag: float, dry_run: bool, attempts: int
) -> CutOverResult | None:
    move = work.move
    if max_freeze <= 0:
        raise MoveError("--max-freeze must be positive (seconds).")
    if attempts < 1:
        raise MoveError("--attempts must be at least 1.")
    buffer = shardrouter_settings().write_buffer_seconds
    if max_freeze > buffer:
        work.reporter.warning(
            f"--max-freeze {max_freeze:.1f}s is longer than the time writers wait for a frozen range "
            f"(SHARDROUTER['WRITE_BUFFER_SECONDS'] = {buffer:.1f}s): a freeze that long would fail user writes."
        )
    to_verify, lag = _prepare(work, d, max_lag=max_lag, dry_run=dry_run)
    if dry_run:
        work.reporter.info(
            f"Dry run: would freeze writes of {label(move.lo, move.hi)} on {d.old} for at most "
            f"{format_duration(max_freeze)}, wait for {d.new} (lag now {lag * 1000:.0f} ms), re-verify {to_verify}, "
            f"start slot {d.following.name} on {d.new} there, commit the switch on {d.old}, route reads and writes to "
            f"{d.new}, and replicate {d.new} -> {d.old} from then on. Nothing changed."
        )
        return None
    for attempt in range(1, attempts + 1):
        try:
            result = _freeze_and_commit(work, d, max_freeze=max_freeze)
        except RowsDiffer:
            raise
        except CutOverAborted as exc:
            if attempt == attempts:
                raise CutOverAborted(
                    f"{exc} Gave up after {attempts} attempt(s); writes stay on {d.old} and the move stays "
                    f"{d.phase_before}. Retry later (a quieter moment helps) or with a larger --max-freeze."
                ) from exc
            work.reporter.warning(f"Attempt {attempt} aborted: {exc} Retrying.")
            time.sleep(0.2 * attempt)
            verify.advance_watermark(work, limit=get_settings().changed_keys_in_freeze)
            continue
        result.attempts = attempt
        finish(work, d)
        return result
    raise AssertionError("unreachable")


def _freeze_and_commit(work: Work, d: Direction, *, max_freeze: float) -> CutOverResult:
    move = work.move
    config = get_settings()
    _create_following_slot(work, d)
    started = time.monotonic()
    deadline = started + max_freeze

    def left() -> float:
        return deadline - time.monotonic()

    timings: dict[str, float] = {}
    work.set_step(f"{d.label}: freezing")
    try:
        fence.freeze(work.db[d.old], move.id, work.tables, max_freeze=max_freeze, lock_timeout=config.lock_timeout)
    except psycopg.errors.LockNotAvailable:
        reason = f"In-flight writes on {d.old} did not finish within the lock timeout ({config.lock_timeout:.1f}s)."
        _abort(work, d, reason)
        raise CutOverAborted(reason) from None
    frozen = time.monotonic()
    timings["lock_and_freeze"] = frozen - started
    verified = 0
    try:
        pause_point(f"{d.label}:frozen")
        seq = fence.marker_bump(work.db[d.old], move.id)
        waited = fence.wait_for_marker(work.db[d.new], move.id, seq, timeout=max(0.0, left()))
        if waited is None:
            raise CutOverAborted(f"{d.new} did not catch up with {d.old} within the freeze.")
        timings["catch_up"] = waited
        pause_point(f"{d.label}:caught-up")
        keys = fence.changed_keys(work.db[d.old], move.id, move.watermark_snapshot or None)
        verified = verify.count_changed(keys)
        t0 = time.monotonic()
        mismatches = verify.compare_keys(work, d.old, d.new, keys, sync=False)
        timings["verify_changed"] = time.monotonic() - t0
        if mismatches:
            raise RowsDiffer(verify.mismatch_message(move.id, mismatches))
        pause_point(f"{d.label}:verified")
        t0 = time.monotonic()
        new = work.db[d.new]
        fence.drop_changes(new, move.id)
        fence.put(new, move.id, move.lo, move.hi, "tracking")
        replication.advance_slot_to_now(new, d.following.name, timeout=max(0.001, left()))
        timings["slot"] = time.monotonic() - t0
        pause_point(f"{d.label}:slot")
        if left() <= 0:
            raise CutOverAborted("The freeze limit was reached before the commit point.")
        t0 = time.monotonic()
        committed = fence.commit_moved(
            work.db[d.old],
            move.id,
            work.tables,
            moved_to=d.new,
            lock_timeout=min(config.lock_timeout, max(0.001, left())),
        )
        timings["commit"] = time.monotonic() - t0
        if not committed:
            raise CutOverAborted(f"The freeze ({format_duration(max_freeze)}) expired before the commit point.")
    except Exception as exc:
        if not _committed(work, d):
            _abort(work, d, str(exc) if isinstance(exc, CutOverAborted) else f"{type(exc).__name__}: {exc}")
            if isinstance(exc, CutOverAborted):
                raise
            raise CutOverAborted(f"Error inside the freeze: {exc}") from exc
        # Otherwise the commit reached the database although its reply did not reach us: carry on.
    freeze = time.monotonic() - started  # writers queue behind the lock request, so count from there
    work.set_watermark(d.new, "")
    work.set_step(f"{d.label}: committed")
    work.journal(
        "cut-over",
        f"{d.label}: writes of {label(move.lo, move.hi)} committed to {d.new}; the range was frozen for "
        f"{freeze * 1000:.0f} ms (catch-up {timings.get('catch_up', 0) * 1000:.0f} ms, {verified} changed row(s) verified).",
        direction=d.label,
        freeze=freeze,
        **timings,
    )
    pause_point(f"{d.label}:committed")
    return CutOverResult(d.label, freeze, timings.get("catch_up", 0.0), verified, 1, timings)


def _committed(work: Work, d: Direction) -> bool:
    try:
        state = fence.get(work.db[d.old], work.move.id)
    except psycopg.Error:
        return False
    return state is not None and state.state == "moved" and state.moved_to == d.new


def _abort(work: Work, d: Direction, reason: str) -> None:
    """Undo an attempt that did not reach its commit point. Best effort: the freeze expires anyway."""
    move = work.move
    try:
        fence.unfreeze(work.db[d.old], move.id)
        new = work.db[d.new]
        fence.put(new, move.id, move.lo, move.hi, "moved", moved_to=d.old)
        fence.drop_changes(new, move.id)
        replication.drop_slot(new, d.following.name)
    except psycopg.Error as exc:
        reason += f" (clean-up incomplete: {exc}; re-running the command finishes it)"
    work.set_step("")
    record_error(move.id, f"{d.label} aborted: {reason}")
    work.reporter.warning(f"{d.label} aborted before its commit point, writes stay on {d.old}: {reason}")


def finish(work: Work, d: Direction) -> None:
    """Everything after the commit point; idempotent, so an interrupted run is finished by re-running."""
    move = work.move
    work.set_step(f"{d.label}: switching traffic")
    route_range(
        move.lo,
        move.hi,
        writes=d.new,
        reads=d.new,
        allowed_from={(d.old, d.new), (d.old, d.old)},
        reason=f"move {move.id}: {d.label}, reads and writes to {d.new}",
    )
    pause_point(f"{d.label}:flipped")
    replication.disable_subscription(work.db[d.active.subscriber], d.active.name)
    replication.create_subscription(work.db[d.following.subscriber], d.following, copy_data=False)
    replication.drop_subscription(work.db[d.active.subscriber], d.active.name)
    replication.drop_slot(work.db[d.active.publisher], d.active.name)
    fence.drop_changes(work.db[d.old], move.id)
    work.set_phase(d.phase_after, expected=(d.phase_before,))
    work.journal(
        "traffic",
        f"{d.label} done: reads and writes of {label(move.lo, move.hi)} go to {d.new}; "
        f"{d.new} -> {d.old} replication ({d.following.name}) keeps {d.old} current.",
    )


def reconcile(work: Work) -> None:
    """Bring a move left behind by a killed command back to a consistent phase (run first by every command).

    Past a commit point: finish the cut-over. Inside a freeze: abort it.
    Before a freeze: drop the slot a killed attempt created (a new attempt makes a new one).
    """
    move = work.move
    if move.phase == Phase.READS_SWITCHED:
        d = forward_direction(move)
    elif move.phase == Phase.WRITES_SWITCHED:
        d = rollback_direction(move)
    else:
        return
    state = fence.get(work.db[d.old], move.id)
    if state is not None and state.state == "moved" and state.moved_to == d.new:
        work.journal("resume", f"Finishing {d.label} of move {move.id}, interrupted after its commit point.")
        if move.watermark_alias != d.new:
            work.set_watermark(d.new, "")
        finish(work, d)
        return
    if state is not None and state.state == "frozen":
        _abort(work, d, "the command was interrupted inside the freeze")
        return
    if replication.slot_exists(work.db[d.new], d.following.name):
        work.reporter.info(f"Dropping slot {d.following.name} left by an interrupted {d.label}.")
        _abort(work, d, "the command was interrupted before the freeze")
