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
  3. compare, exactly, every row the fence logged since the baseline (a
     difference is a divergence only if the freeze still holds afterwards;
     otherwise writes after the expiry may explain it: abort as an expiry);
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

from . import fence, phases, replication, verify
from .conf import get_settings
from .errors import CutOverAborted, FreezeExpired, LockTimedOut, MoveError, RowsDiffer
from .hooks import pause_point
from .maps import route_range
from .models import MoveRange, Phase
from .phases import Action, require_phase
from .planning import label
from .progress import format_duration, timed
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
    action: Action


def forward_direction(move: MoveRange) -> Direction:
    return Direction(
        "switch-writes",
        move.source,
        move.target,
        replication.forward(move.id, move.source, move.target),
        replication.reverse(move.id, move.source, move.target),
        Phase.READS_SWITCHED,
        Phase.WRITES_SWITCHED,
        phases.SWITCH_WRITES,
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
        phases.ROLLBACK,
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
    if back:
        return _reads_back(work, phases.SWITCH_READS_BACK, dry_run=dry_run)
    move = work.move
    after = require_phase(move, phases.SWITCH_READS)
    if after is None:
        work.reporter.info(f"Reads of move {move.id} already go to {move.target}; nothing to do.")
        return False
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
    work.set_phase(after, action=phases.SWITCH_READS)
    work.journal(
        "reads",
        f"Reads of {label(move.lo, move.hi)} go to {move.target} (lag {lag * 1000:.0f} ms); writes stay on {move.source}.",
        lag=lag,
    )
    return True


def _reads_back(work: Work, action: Action, *, dry_run: bool) -> bool:
    """Reads back to the source, before any write cut-over (``switch-reads --back``, or ``rollback`` then)."""
    move = work.move
    after = require_phase(move, action)
    if after is None:
        work.reporter.info(f"Reads of move {move.id} already go to {move.source}; nothing to do.")
        return False
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
    work.set_phase(after, action=action)
    work.journal("reads", f"Reads of {label(move.lo, move.hi)} go to {move.source} again.")
    return True


# --- writes --------------------------------------------------------------------------------------------


def switch_writes(
    work: Work, *, max_freeze: float, max_lag: float, dry_run: bool, attempts: int = 3
) -> CutOverResult | None:
    """The write cut-over source -> target (see the module docstring)."""
    reconcile(work)
    move = work.move
    if require_phase(move, phases.SWITCH_WRITES) is None:
        work.reporter.info(f"Writes of move {move.id} already go to {move.target}; nothing to do.")
        return None
    return _cut_over(
        work, forward_direction(move), max_freeze=max_freeze, max_lag=max_lag, dry_run=dry_run, attempts=attempts
    )


def rollback(
    work: Work, *, max_freeze: float, max_lag: float, dry_run: bool, attempts: int = 3
) -> CutOverResult | None:
    """Send traffic back to the source: reads only (before the write cut-over) or writes too (after it)."""
    reconcile(work)
    move = work.move
    require_phase(move, phases.ROLLBACK)
    if move.phase == Phase.READS_SWITCHED:
        _reads_back(work, phases.ROLLBACK, dry_run=dry_run)
        return None
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
                raise type(exc)(f"{exc} {_give_up_advice(d, exc, attempts)}") from exc
            work.reporter.warning(f"Attempt {attempt} aborted: {exc} Retrying.")
            time.sleep(0.2 * attempt)
            verify.advance_watermark(work, limit=get_settings().changed_keys_in_freeze)
            continue
        result.attempts = attempt
        finish(work, d)
        return result
    raise AssertionError("unreachable")


def _give_up_advice(d: Direction, exc: CutOverAborted, attempts: int) -> str:
    gave_up = f"Gave up after {attempts} attempt(s); writes stay on {d.old} and the move stays {d.phase_before.value}."
    if isinstance(exc, LockTimedOut):
        return f"{gave_up} End or wait out the transaction named above, then retry."
    return f"{gave_up} Retry later (a quieter moment helps) or with a larger --max-freeze."


# --- the freeze ----------------------------------------------------------------------------------------


@dataclass
class _Freeze:
    """One attempt's freeze: its limit on this process's clock, and what each step took."""

    max_freeze: float
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)
    verified: int = 0

    @property
    def left(self) -> float:
        # The database's expires_at is set a little later than this clock started: this limit is the stricter.
        return self.started + self.max_freeze - time.monotonic()

    def check(self, where: str) -> None:
        if self.left <= 0:
            raise FreezeExpired(f"The freeze ({format_duration(self.max_freeze)}) ran out {where}.")


def _freeze_and_commit(work: Work, d: Direction, *, max_freeze: float) -> CutOverResult:
    """One attempt: freeze old, let new catch up, compare the changed rows, prepare the way back, commit."""
    _create_following_slot(work, d)
    freeze = _Freeze(max_freeze)
    work.set_step(f"{d.label}: freezing")
    _freeze_old(work, d, freeze)
    try:
        pause_point(f"{d.label}:frozen")
        _catch_up(work, d, freeze)
        pause_point(f"{d.label}:caught-up")
        _verify_changed(work, d, freeze)
        pause_point(f"{d.label}:verified")
        _start_following(work, d, freeze)
        pause_point(f"{d.label}:slot")
        _commit_point(work, d, freeze)
    except Exception as exc:
        if not _committed(work, d):
            _abort(work, d, str(exc) if isinstance(exc, CutOverAborted) else f"{type(exc).__name__}: {exc}")
            if isinstance(exc, CutOverAborted):
                raise
            raise CutOverAborted(f"Error inside the freeze: {exc}") from exc
        # Otherwise the commit reached the database although its reply did not reach us: carry on.
    return _record_commit(work, d, freeze)


def _freeze_old(work: Work, d: Direction, freeze: _Freeze) -> None:
    """Step 1: wait (bounded) for in-flight writers on old, then freeze the range there."""
    config = get_settings()
    try:
        with timed(freeze.timings, "lock_and_freeze"):
            fence.freeze(
                work.db[d.old],
                work.move.id,
                work.tables,
                max_freeze=freeze.max_freeze,
                lock_timeout=config.lock_timeout,
            )
    except psycopg.errors.LockNotAvailable:
        error = _lock_timed_out(work, d, config.lock_timeout)
        _abort(work, d, str(error))
        raise error from None


def _lock_timed_out(work: Work, d: Direction, waited: float) -> LockTimedOut:
    """Name the sessions whose locks on old's sharded tables the freeze could not get past."""
    what = (
        f"In-flight writes on {d.old} did not finish within the lock timeout ({waited:.1f}s, "
        "SHARDMOVE['LOCK_TIMEOUT_SECONDS']; a larger --max-freeze does not change it)"
    )
    try:
        holders = fence.lock_holders(work.db[d.old], work.tables)
    except psycopg.Error as exc:
        return LockTimedOut(f"{what}; the lock holders could not be read ({exc}). Look in pg_stat_activity on {d.old}.")
    if not holders:
        return LockTimedOut(
            f"{what}; the transaction that held the lock had ended when it was looked up (a burst of long writes, "
            f"or autovacuum). Retry; if it recurs, look for long transactions in pg_stat_activity on {d.old}."
        )
    listed = "; ".join(h.describe() for h in holders[:5])
    first = holders[0].pid
    return LockTimedOut(
        f"{what}: {listed}. Let that transaction finish or end it (`SELECT pg_terminate_backend({first})` on "
        f"{d.old}), then retry."
    )


def _catch_up(work: Work, d: Direction, freeze: _Freeze) -> None:
    """Step 2: a marker committed on old after the freeze shows on new, so new has every write old accepted."""
    with timed(freeze.timings, "catch_up"):
        seq = fence.marker_bump(work.db[d.old], work.move.id)
        waited = fence.wait_for_marker(work.db[d.new], work.move.id, seq, timeout=max(0.0, freeze.left))
    if waited is None:
        raise FreezeExpired(f"{d.new} did not catch up with {d.old} within the freeze.")


def _verify_changed(work: Work, d: Direction, freeze: _Freeze) -> None:
    """Step 3: compare, exactly, every row changed on old since the baseline.

    A difference means divergence only if the freeze still held when the
    comparison ended: once it has expired, users write to old again, and a
    row written after the expiry may not have reached new yet. That aborts as
    an expiry (and is retried), never as "rows differ".
    """
    move = work.move
    keys = fence.changed_keys(work.db[d.old], move.id, move.watermark_snapshot or None)
    freeze.verified = verify.count_changed(keys)
    with timed(freeze.timings, "verify_changed"):
        mismatches = verify.compare_keys(work, d.old, d.new, keys, sync=False)
    if not mismatches:
        return
    if _still_frozen(work, d):
        raise RowsDiffer(verify.mismatch_message(move.id, mismatches))
    raise FreezeExpired(
        f"The freeze ({format_duration(freeze.max_freeze)}) expired while {freeze.verified} changed row(s) were "
        f"compared; {len(mismatches)} of them differed, which writes after the expiry explain (not counted as a "
        "divergence: the next attempt compares them again)."
    )


def _still_frozen(work: Work, d: Direction) -> bool:
    """True if old's fence is frozen and unexpired now (by the database's clock, which enforces it)."""
    state = fence.get(work.db[d.old], work.move.id)
    return state is not None and state.state == "frozen" and not state.expired


def _start_following(work: Work, d: Direction, freeze: _Freeze) -> None:
    """Step 4: new logs its changes and the slot of the way back starts at new's current WAL position."""
    move = work.move
    new = work.db[d.new]
    with timed(freeze.timings, "slot"):
        fence.drop_changes(new, move.id)
        fence.put(new, move.id, move.lo, move.hi, "tracking")
        replication.advance_slot_to_now(new, d.following.name, timeout=max(0.001, freeze.left))


def _commit_point(work: Work, d: Direction, freeze: _Freeze) -> None:
    """Step 5: on old, ``frozen`` -> ``moved`` if and only if the freeze has not expired."""
    freeze.check("before the commit point")
    lock_timeout = min(get_settings().lock_timeout, max(0.001, freeze.left))
    with timed(freeze.timings, "commit"):
        try:
            committed = fence.commit_moved(
                work.db[d.old], work.move.id, work.tables, moved_to=d.new, lock_timeout=lock_timeout
            )
        except psycopg.errors.LockNotAvailable:
            raise _lock_timed_out(work, d, lock_timeout) from None
    if not committed:
        raise FreezeExpired(f"The freeze ({format_duration(freeze.max_freeze)}) expired before the commit point.")


def _record_commit(work: Work, d: Direction, freeze: _Freeze) -> CutOverResult:
    move = work.move
    frozen_for = time.monotonic() - freeze.started  # writers queue behind the lock request, so count from there
    catch_up = freeze.timings.get("catch_up", 0.0)
    work.set_watermark(d.new, "")
    work.set_step(f"{d.label}: committed")
    work.journal(
        "cut-over",
        f"{d.label}: writes of {label(move.lo, move.hi)} committed to {d.new}; the range was frozen for "
        f"{frozen_for * 1000:.0f} ms (catch-up {catch_up * 1000:.0f} ms, {freeze.verified} changed row(s) verified).",
        direction=d.label,
        freeze=frozen_for,
        **freeze.timings,
    )
    pause_point(f"{d.label}:committed")
    return CutOverResult(d.label, frozen_for, catch_up, freeze.verified, 1, dict(freeze.timings))


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
    work.set_phase(d.phase_after, action=d.action)
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
