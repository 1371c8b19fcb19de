"""The throttled initial copy: watch the source's health and hold the copy back while its users would suffer.

The copy runs inside the servers (the target's table-sync workers pull a
``COPY`` from the source), so the engine cannot slow it directly. It gates it:

* a *gate* trigger on every sharded table of the target, ``ENABLE REPLICA``
  (it fires only in replication workers, never for the application's own
  writes) and limited by a ``WHEN`` clause to the move's range, takes and
  releases a shared advisory lock per copied row;
* the *controller* (in the command that follows the copy: ``start --wait``,
  ``refresh --watch``) holds that lock exclusively while the copy should
  stand still. The sync worker then blocks on its next row, stops reading,
  and the source's ``COPY`` blocks on its full socket: the source does no copy
  work until the lock is released. Nothing is lost or redone (a paused
  ``COPY`` resumes where it stopped, unlike ``ALTER SUBSCRIPTION DISABLE``,
  which restarts the table's copy).

The controller probes the source every ``PROBE_EVERY`` seconds (a one-row
index read of a sharded table, as a signed-in read is) and counts its active
client backends. Every ``interval`` it compares the probe's p95 over the last
``WINDOW`` seconds with the budget (and the active backends with their
limit): over budget, it divides the share of time the gate stands open by
four (below 1/16: paused); within budget, it adds 1/8 back (AIMD). The first
reading is taken as soon as the controller starts, so a source that is over
budget when the copy begins pauses it at once; and a controller starts the
copy at a quarter of the time (slow start), so a copy that would overload
the source does not get a full-speed burst first. Each episode
is journalled when it starts (with the reason) and when the copy has been
back at full speed for ``RELEASE_AFTER`` seconds.

If no command follows the copy, or the controller dies, its session ends, the
lock goes with it and the copy runs at full speed (it never stalls a move).
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from django.utils import timezone
from psycopg import sql

from .conf import get_settings
from .errors import MoveError
from .models import MoveEvent, MoveRange
from .pgconn import connect, one
from .schema import ShardedTable

PROBE_EVERY = 0.05  # seconds between probes of the source
WINDOW = 1.0  # the p95 is taken over the probes of the last WINDOW seconds
RELEASE_AFTER = 2.0  # an episode ends once the copy ran at full speed this long
BASELINE_PROBES = 30
SLOW_START = 0.25  # the share of time the copy may run when a controller takes over
_GATE_BASE = 0x5157 << 48  # advisory lock keys: gate of move N = base + N; controller = base + 2**40 + N
_FUNCTION = "qq_move_copy_gate"


def gate_key(move_id: int) -> int:
    return _GATE_BASE + move_id


def controller_key(move_id: int) -> int:
    return _GATE_BASE + (1 << 40) + move_id


def _trigger(move_id: int) -> str:
    return f"qq_move_{move_id}_gate"


@dataclass(frozen=True)
class ThrottleConfig:
    """A move's throttle, fixed when the copy starts (kept on the move, so every follower uses the same)."""

    enabled: bool
    max_probe_ms: float | None  # the budget for the probe's p95 on the source (None: no latency budget)
    max_active: int | None  # most active client backends on the source's server (None: no limit)
    baseline_ms: float | None = None  # the probe's p95 measured before the copy started
    budget_from: str = ""  # how max_probe_ms was set: "option", "setting" or "baseline"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ThrottleConfig | None:
        if not data or "enabled" not in data:
            return None
        return cls(
            enabled=bool(data["enabled"]),
            max_probe_ms=data.get("max_probe_ms"),
            max_active=data.get("max_active"),
            baseline_ms=data.get("baseline_ms"),
            budget_from=str(data.get("budget_from", "")),
        )

    def describe(self) -> str:
        if not self.enabled:
            return "off (--no-throttle): the copy runs at full speed"
        parts = []
        if self.max_probe_ms is not None:
            basis = f", from a baseline of {self.baseline_ms:.1f} ms" if self.budget_from == "baseline" else ""
            parts.append(f"probe p95 <= {self.max_probe_ms:.1f} ms{basis}")
        if self.max_active is not None:
            parts.append(f"<= {self.max_active} active backends")
        return "on: " + ("; ".join(parts) or "no limit")


def requested(*, no_throttle: bool, max_latency_ms: float | None, max_active: int | None) -> ThrottleConfig:
    """The throttle a ``start`` asks for (options over ``SHARDMOVE`` settings); MoveError naming the fix."""
    config = get_settings()
    if no_throttle and (max_latency_ms is not None or max_active is not None):
        raise MoveError(
            "--no-throttle copies at full speed, so --max-source-latency/--max-source-active make no sense with it; "
            "pass either --no-throttle or the limits."
        )
    if max_latency_ms is not None and not max_latency_ms > 0:
        raise MoveError(
            f"--max-source-latency must be a number of milliseconds above 0 (got {max_latency_ms}); for example "
            "--max-source-latency 20, or leave it out to use the source's measured p95 times "
            f"SHARDMOVE['THROTTLE_LATENCY_FACTOR'] ({config.throttle_latency_factor})."
        )
    if max_active is not None and max_active < 1:
        raise MoveError(
            f"--max-source-active must be at least 1 (got {max_active}); for example the source's CPU count."
        )
    if no_throttle or not config.throttle:
        return ThrottleConfig(enabled=False, max_probe_ms=None, max_active=None)
    if max_latency_ms is not None:
        return ThrottleConfig(True, float(max_latency_ms), max_active or config.throttle_max_active, None, "option")
    if config.throttle_max_probe_ms is not None:
        return ThrottleConfig(
            True, config.throttle_max_probe_ms, max_active or config.throttle_max_active, None, "setting"
        )
    return ThrottleConfig(True, None, max_active or config.throttle_max_active, None, "baseline")


# --- the probe ------------------------------------------------------------------------------------------


class Probe:
    """A one-row index read of a sharded table of the range on the source, timed."""

    def __init__(self, conn: psycopg.Connection[Any], table: ShardedTable, lo: int, hi: int) -> None:
        self.conn = conn
        self.lo, self.hi = lo, min(hi, lo + 1_000_000)
        self.query = sql.SQL("SELECT {pk} FROM {t} WHERE {key} = %s LIMIT 1").format(
            pk=sql.Identifier(table.pk), t=table.ident, key=sql.Identifier(table.key)
        )

    def run(self) -> float:
        """Milliseconds one probe took."""
        started = time.perf_counter()
        self.conn.execute(self.query, [random.randrange(self.lo, self.hi)], prepare=True).fetchall()
        return (time.perf_counter() - started) * 1000

    def active_backends(self) -> int:
        return int(
            one(
                self.conn,
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()",
            )
            or 0
        )


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def with_baseline(
    config: ThrottleConfig, conn: psycopg.Connection[Any], table: ShardedTable, lo: int, hi: int
) -> ThrottleConfig:
    """Measure the probe's p95 before the copy; derive the budget from it unless one was given."""
    if not config.enabled:
        return config
    probe = Probe(conn, table, lo, hi)
    samples = []
    for _ in range(BASELINE_PROBES):
        samples.append(probe.run())
        time.sleep(PROBE_EVERY / 5)
    baseline = round(p95(samples), 3)
    budget = config.max_probe_ms
    if config.budget_from == "baseline":
        settings = get_settings()
        budget = round(
            max(baseline * settings.throttle_latency_factor, baseline + settings.throttle_latency_slack_ms), 3
        )
    return ThrottleConfig(config.enabled, budget, config.max_active, baseline, config.budget_from)


# --- the gate on the target -----------------------------------------------------------------------------


def install_gate(
    conn: psycopg.Connection[Any], move_id: int, tables: list[ShardedTable], lo: int, hi: int, lock_timeout: float
) -> None:
    """Create the gate trigger on every sharded table of the target (idempotent)."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout * 1000)}ms")))
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM pg_advisory_lock_shared(TG_ARGV[0]::bigint); "
                "PERFORM pg_advisory_unlock_shared(TG_ARGV[0]::bigint); RETURN NEW; END $$"
            ).format(fn=sql.Identifier(_FUNCTION))
        )
        for table in tables:
            conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(_trigger(move_id)), table.ident)
            )
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {trg} BEFORE INSERT ON {t} FOR EACH ROW "
                    "WHEN (NEW.{key} >= {lo} AND NEW.{key} < {hi}) EXECUTE FUNCTION {fn}({arg})"
                ).format(
                    trg=sql.Identifier(_trigger(move_id)),
                    t=table.ident,
                    key=sql.Identifier(table.key),
                    lo=sql.Literal(lo),
                    hi=sql.Literal(hi),
                    fn=sql.Identifier(_FUNCTION),
                    arg=sql.Literal(str(gate_key(move_id))),
                )
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} ENABLE REPLICA TRIGGER {}").format(
                    table.ident, sql.Identifier(_trigger(move_id))
                )
            )


def remove_gate(
    conn: psycopg.Connection[Any], move_id: int, tables: list[ShardedTable], lock_timeout: float = 5.0
) -> bool:
    """Drop the move's gate triggers where present; True if any was there.

    DROP TRIGGER locks the table exclusively for a moment; ``lock_timeout``
    bounds the wait (a timeout raises, and the next command retries).
    """
    present = [
        t
        for t in tables
        if one(
            conn,
            "SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = %s",
            [t.name, _trigger(move_id)],
        )
    ]
    if present:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout * 1000)}ms")))
            for table in present:
                conn.execute(
                    sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(_trigger(move_id)), table.ident)
                )
    return bool(present)


def remove_gate_if_free(conn: psycopg.Connection[Any], move_id: int, tables: list[ShardedTable]) -> None:
    """``remove_gate`` with a short wait; a busy table keeps its gate for the next command (an open gate only
    costs a trigger call per replicated row of the range)."""
    try:
        remove_gate(conn, move_id, tables, lock_timeout=1.0)
    except psycopg.errors.LockNotAvailable:
        pass


def controller_running(conn: psycopg.Connection[Any], move_id: int) -> bool:
    """True while some process's controller throttles the move (it holds the controller lock on the target)."""
    key = controller_key(move_id)
    return bool(
        one(
            conn,
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            [key],
        )
    )


# --- the controller -------------------------------------------------------------------------------------


@dataclass
class Reading:
    p95_ms: float | None
    active: int

    def over(self, config: ThrottleConfig) -> str:
        """Why the source is over budget ("" if it is not)."""
        reasons = []
        if config.max_probe_ms is not None and self.p95_ms is not None and self.p95_ms > config.max_probe_ms:
            reasons.append(f"probe p95 {self.p95_ms:.1f} ms > {config.max_probe_ms:.1f} ms")
        if config.max_active is not None and self.active > config.max_active:
            reasons.append(f"{self.active} active backends > {config.max_active}")
        return " and ".join(reasons)


class Controller:
    """Holds the copy back while the source is over budget (see the module's docstring). One per move."""

    def __init__(self, move: MoveRange, config: ThrottleConfig, table: ShardedTable, interval: float) -> None:
        self.move = move
        self.config = config
        self.interval = interval
        self.source = connect(move.source, application_name="qq-shardmove-throttle")
        self.target = connect(move.target, application_name="qq-shardmove-throttle")
        self.probe = Probe(self.source, table, move.lo, move.hi)
        self.samples: deque[tuple[float, float]] = deque()
        self.duty = SLOW_START  # the copy earns its full speed (the source is read at once)
        self.closed = False
        self.tick_started = time.monotonic() - interval  # the first step reads the source at once
        self.episode_started: float | None = None
        self.full_since: float | None = None
        self.throttled_seconds = float(move.throttle.get("throttled_seconds", 0.0))
        self.last_saved = 0.0
        self.reading = Reading(None, 0)
        self.reason = ""
        self.owner = bool(one(self.target, "SELECT pg_try_advisory_lock(%s)", [controller_key(move.id)]))

    def close(self) -> None:
        for conn in (self.source, self.target):
            try:
                conn.close()  # ends the sessions: the gate and controller locks go with them
            except psycopg.Error:
                pass
        if self.owner and self.episode_started is not None:
            self.move.refresh_from_db(fields=["phase"])
            why = "the copy finished" if self.move.phase != "copying" else "no command follows the copy any more"
            lasted = time.monotonic() - self.episode_started
            self.episode_started = None
            self._event("throttle-released", f"Copy throttle released after {lasted:.1f}s: {why}.", running=False)
        if self.owner:
            self._save(force=True, running=False)

    def run_for(self, seconds: float) -> None:
        """Probe and steer the copy for about ``seconds`` (instead of sleeping them)."""
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if now >= end:
                return
            if self.owner:
                self._step(now)
            time.sleep(min(PROBE_EVERY, max(0.0, end - now)))

    def _step(self, now: float) -> None:
        self.samples.append((now, self.probe.run()))
        while self.samples and self.samples[0][0] < now - WINDOW:
            self.samples.popleft()
        if now - self.tick_started >= self.interval:
            self._tick(now)
        open_for = self.duty * self.interval
        self._set_closed(self.duty < 1.0 and (self.duty < 1 / 16 or now - self.tick_started >= open_for))
        self._save()

    def _tick(self, now: float) -> None:
        elapsed = now - self.tick_started
        if self.duty < 1.0:
            self.throttled_seconds += elapsed * (1.0 - self.duty)
        self.tick_started = now
        self.reading = Reading(
            p95([s for _, s in self.samples]) if self.samples else None, self.probe.active_backends()
        )
        reason = self.reading.over(self.config)
        if reason:
            self.reason = reason
            self.duty = 0.0 if self.duty / 4 < 1 / 16 else self.duty / 4
            self.full_since = None
            if self.episode_started is None:
                self.episode_started = now
                self._event("throttled", f"Copy throttled: {reason} on {self.move.source}.")
        else:
            self.duty = min(1.0, self.duty + 0.125)
            if self.duty >= 1.0 and self.episode_started is not None:
                self.full_since = self.full_since or now
                if now - self.full_since >= RELEASE_AFTER:
                    lasted = now - self.episode_started
                    self.episode_started = self.full_since = None
                    probe = f"probe p95 {self.reading.p95_ms:.1f} ms" if self.reading.p95_ms is not None else "probe -"
                    self._event(
                        "throttle-released",
                        f"Copy back at full speed after {lasted:.1f}s of throttling ({probe}, "
                        f"{self.reading.active} active backends on {self.move.source}).",
                    )

    def _set_closed(self, closed: bool) -> None:
        if closed == self.closed:
            return
        key = gate_key(self.move.id)
        self.target.execute("SELECT pg_advisory_lock(%s)" if closed else "SELECT pg_advisory_unlock(%s)", [key])
        self.closed = closed

    def _event(self, kind: str, message: str, *, running: bool = True) -> None:
        MoveEvent.objects.create(
            move=self.move,
            kind=kind,
            message=message,
            data={"p95_ms": self.reading.p95_ms, "active": self.reading.active, "duty": self.duty},
        )
        self._save(force=True, running=running)

    def _save(self, *, force: bool = False, running: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self.last_saved < 1.0:
            return
        self.last_saved = now
        state = dict(self.move.throttle)
        state.update(
            {
                "running": running,
                "throttling": self.episode_started is not None and running,
                "duty": round(self.duty, 3),
                "reason": self.reason if self.episode_started is not None else "",
                "probe_p95_ms": self.reading.p95_ms,
                "active": self.reading.active,
                "throttled_seconds": round(self.throttled_seconds, 1),
                "updated_at": timezone.now().isoformat(),
            }
        )
        self.move.throttle = state
        MoveRange.objects.filter(id=self.move.id).update(throttle=state)
