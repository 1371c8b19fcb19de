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

The controller (``throttle_controller``) probes the source every
``PROBE_EVERY`` seconds with the application's common signed-in read (the
last ``PROBE_ROWS`` rows of a user of the source outside the moved range, in
the model's default order), counts its active client backends and, if asked
to, reads the lag of the source's streaming replicas. Every ``interval`` it
compares the probe's p95 (``baseline_of`` its p95 in each of the last
``CONTROL_WINDOWS`` windows of ``WINDOW`` seconds) with what it aims at, a
share of the budget's headroom above the baseline, and the other signals with
their limits, and sets the share of every short pacing period the gate stands
open (AIMD). The budget derived from a baseline is measured the way it is
controlled: the second lowest p95 of ``BASELINE_WINDOWS`` whole windows of
probes taken at the probing rate before the copy, then kept current with
windows taken while the gate stood shut (``throttle_baseline``). The first
reading is taken as soon as the controller starts, so a source that is over
budget when the copy begins pauses it at once; and a controller starts the
copy at a quarter of the time (slow start), so a copy that would overload the
source does not get a full-speed burst first. Each episode is journalled when
it starts (with the reason) and when the copy has been back at full speed for
``RELEASE_AFTER`` seconds.

If no command follows the copy, or the controller dies, its session ends, the
lock goes with it and the copy runs at full speed (it never stalls a move).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from .conf import get_settings
from .errors import MoveError
from .pgconn import one
from .schema import ShardedTable
from .throttle_baseline import WINDOW, baseline_of, p95

PROBE_EVERY = 0.05  # seconds between probes of the source
CONTROL_WINDOWS = 5  # the controller reads the p95 of the last CONTROL_WINDOWS windows as the baseline is read
RELEASE_AFTER = 2.0  # an episode ends once the copy ran at full speed this long
PROBE_ROWS = 20  # a signed-in page lists a user's last 20 rows
PROBE_USERS = 50  # users the probe reads in turn, taken on each side of the range
LSN_HISTORY_SECONDS = 600.0  # how far back the WAL positions used to date a replica's lag go
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
    max_replica_lag: float | None = None  # seconds the source's streaming replicas may lag (None: not watched)
    probe: str = ""  # what the probe reads (for status)
    baseline_windows_ms: tuple[float, ...] = ()  # the p95 of each baseline window

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
            max_replica_lag=data.get("max_replica_lag"),
            probe=str(data.get("probe", "")),
            baseline_windows_ms=tuple(data.get("baseline_windows_ms") or ()),
        )

    def describe(self) -> str:
        if not self.enabled:
            return "off (--no-throttle): the copy runs at full speed"
        parts = []
        if self.max_probe_ms is not None:
            basis = f", from a baseline of {self.baseline_ms:.2f} ms" if self.budget_from == "baseline" else ""
            parts.append(f"probe p95 <= {self.max_probe_ms:.2f} ms{basis}")
        if self.max_active is not None:
            parts.append(f"<= {self.max_active} active backends")
        if self.max_replica_lag is not None:
            parts.append(f"replica lag <= {self.max_replica_lag:g} s")
        return "on: " + ("; ".join(parts) or "no limit")


def requested(
    *,
    no_throttle: bool,
    max_latency_ms: float | None,
    max_active: int | None,
    max_replica_lag: float | None = None,
    source: str | None = None,
) -> ThrottleConfig:
    """The throttle a ``start`` asks for (options over ``SHARDMOVE`` settings); MoveError naming the fix.

    ``source``: the move's source alias, for ``THROTTLE_MAX_REPLICA_LAG_SECONDS`` (None: resolved when the
    copy is set up, ``for_source``).
    """
    config = get_settings()
    if no_throttle and (max_latency_ms is not None or max_active is not None or max_replica_lag is not None):
        raise MoveError(
            "--no-throttle copies at full speed, so --max-source-latency/--max-source-active/--max-replica-lag "
            "make no sense with it; pass either --no-throttle or the limits."
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
    if max_replica_lag is not None and not max_replica_lag > 0:
        raise MoveError(
            f"--max-replica-lag must be a number of seconds above 0 (got {max_replica_lag}); for example "
            "--max-replica-lag 5 (above the replicas' wal_receiver_status_interval), or leave it out to not watch "
            "the source's streaming replicas."
        )
    if no_throttle or not config.throttle:
        return ThrottleConfig(enabled=False, max_probe_ms=None, max_active=None)
    active = max_active or config.throttle_max_active
    from_setting = replica_lag_setting(source)  # checked even when the option overrides it
    lag = max_replica_lag if max_replica_lag is not None else from_setting
    if max_latency_ms is not None:
        return ThrottleConfig(True, float(max_latency_ms), active, None, "option", lag)
    if config.throttle_max_probe_ms is not None:
        return ThrottleConfig(True, config.throttle_max_probe_ms, active, None, "setting", lag)
    return ThrottleConfig(True, None, active, None, "baseline", lag)


def for_source(config: ThrottleConfig, source: str) -> ThrottleConfig:
    """``config`` with the replica-lag limit the settings give ``source`` unless an option set one."""
    if not config.enabled or config.max_replica_lag is not None:
        return config
    return dataclasses.replace(config, max_replica_lag=replica_lag_setting(source))


def replica_lag_setting(source: str | None) -> float | None:
    """``THROTTLE_MAX_REPLICA_LAG_SECONDS`` for ``source``: one number for every source, or {alias: seconds}
    (None: not watched; ``source`` None only checks the setting). MoveError naming the fix if it is malformed."""
    raw = get_settings().throttle_max_replica_lag
    if raw is None:
        return None
    values = list(raw.values()) if isinstance(raw, dict) else [raw]
    for item in values:
        try:
            ok = float(item) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MoveError(
                f"SHARDMOVE['THROTTLE_MAX_REPLICA_LAG_SECONDS'] must be seconds above 0, or {{alias: seconds}} with "
                f"an entry per source whose replicas are watched (got {raw!r}); for example 5, or {{'shard2': 5}}."
            )
    if source is None:
        return None
    chosen: float | None = raw.get(source) if isinstance(raw, dict) else raw
    return None if chosen is None else float(chosen)


# --- the probe ------------------------------------------------------------------------------------------


class Probe:
    """The application's common signed-in read on the source, timed: a user's last ``PROBE_ROWS`` rows (the same
    index and heap reads; only their primary keys are sent back).

    The users are real users of the source outside the moved range (their
    reads are the ones to protect, and the copy's own reads of the range do
    not warm their pages); without any, users of the range; without those
    either, a one-row index read of the range (it reads nothing but the index).
    """

    def __init__(self, conn: psycopg.Connection[Any], table: ShardedTable, lo: int, hi: int) -> None:
        self.conn = conn
        users, where = _probe_users(conn, table, lo, hi)
        self.users: Sequence[int] = users
        order = table.order_by or ((table.pk, True),)
        if self.users:
            # The page's index scan and heap reads, but only the key is sent: every column of 20 rows, 20 times a
            # second, made the probe cost the source a sizeable share of what its users' reads cost it.
            self.query = sql.SQL("SELECT {pk} FROM {t} WHERE {key} = %s ORDER BY {order} LIMIT {n}").format(
                pk=sql.Identifier(table.pk),
                t=table.ident,
                key=sql.Identifier(table.key),
                order=sql.SQL(", ").join(
                    sql.SQL("{} DESC" if desc else "{}").format(sql.Identifier(col)) for col, desc in order
                ),
                n=sql.Literal(PROBE_ROWS),
            )
            self.describe = f"the last {PROBE_ROWS} {table.name} rows (their IDs) of {len(self.users)} users {where}"
        else:
            self.users = range(lo, min(hi, lo + 1_000_000))  # random.choice picks from it without a list
            self.query = sql.SQL("SELECT {pk} FROM {t} WHERE {key} = %s LIMIT 1").format(
                pk=sql.Identifier(table.pk), t=table.ident, key=sql.Identifier(table.key)
            )
            self.describe = f"a one-row index read of {table.name} (the source holds no rows to read)"

    def run(self) -> float:
        """Milliseconds one probe took."""
        started = time.perf_counter()
        self.conn.execute(self.query, [random.choice(self.users)], prepare=True).fetchall()
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


def _probe_users(conn: psycopg.Connection[Any], table: ShardedTable, lo: int, hi: int) -> tuple[list[int], str]:
    """Up to ``PROBE_USERS`` users of the source outside [lo, hi) (the nearest on each side, found through the
    shard key's index one at a time), else inside it; and where they were found."""

    def distinct_keys(start: sql.Composable, step: str, bound: sql.Composable) -> list[int]:
        # A loose index scan: each step is one index lookup, whatever the table's size.
        op, desc = (">", "") if step == "up" else ("<", " DESC")
        query = sql.SQL(
            "WITH RECURSIVE u(k, n) AS ("
            "(SELECT {key}, 1 FROM {t} WHERE {start} AND {bound} ORDER BY {key}" + desc + " LIMIT 1) "
            "UNION ALL SELECT (SELECT {key} FROM {t} WHERE {key} "
            + op
            + " u.k AND {bound} ORDER BY {key}"
            + desc
            + " LIMIT 1), n + 1 FROM u WHERE u.k IS NOT NULL AND n < {n}) SELECT k FROM u WHERE k IS NOT NULL"
        ).format(
            key=sql.Identifier(table.key), t=table.ident, start=start, bound=bound, n=sql.Literal(PROBE_USERS // 2)
        )
        return [int(row[0]) for row in conn.execute(query).fetchall()]

    key = sql.Identifier(table.key)
    true = sql.SQL("TRUE")
    outside = distinct_keys(sql.SQL("{} >= {}").format(key, sql.Literal(hi)), "up", true) + distinct_keys(
        sql.SQL("{} < {}").format(key, sql.Literal(lo)), "down", true
    )
    if outside:
        return outside, "outside the range"
    inside = distinct_keys(
        sql.SQL("{} >= {}").format(key, sql.Literal(lo)), "up", sql.SQL("{} < {}").format(key, sql.Literal(hi))
    )
    return inside, "of the range (the source holds no other)"


def probe_table(tables: list[ShardedTable]) -> ShardedTable:
    """The table the probe reads: the first with a default order (what a page lists), else the first."""
    return next((t for t in tables if t.order_by), tables[0])


def window_p95s(probe: Probe, windows: int) -> list[float]:
    """The probe's p95 in each of ``windows`` whole ``WINDOW``-long windows, probing as the controller does."""
    found = []
    for _ in range(windows):
        samples: list[float] = []
        end = time.monotonic() + WINDOW
        while time.monotonic() < end:
            samples.append(probe.run())
            time.sleep(PROBE_EVERY)
        found.append(p95(samples))
    return found


def with_baseline(
    config: ThrottleConfig, conn: psycopg.Connection[Any], table: ShardedTable, lo: int, hi: int
) -> ThrottleConfig:
    """Measure the probe's p95 before the copy as the controller will (``baseline_of`` the p95s of
    ``THROTTLE_BASELINE_WINDOWS`` windows, ``BASELINE_WINDOWS`` by default); derive the budget from it unless one
    was given."""
    if not config.enabled:
        return config
    probe = Probe(conn, table, lo, hi)
    windows = [round(ms, 3) for ms in window_p95s(probe, get_settings().throttle_baseline_windows)]
    baseline = round(baseline_of(windows), 3)
    budget = config.max_probe_ms
    if config.budget_from == "baseline":
        settings = get_settings()
        budget = round(
            max(baseline * settings.throttle_latency_factor, baseline + settings.throttle_latency_slack_ms), 3
        )
    return ThrottleConfig(
        config.enabled,
        budget,
        config.max_active,
        baseline,
        config.budget_from,
        config.max_replica_lag,
        probe.describe,
        tuple(windows),
    )


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


# --- the source's streaming replicas ---------------------------------------------------------------------


class ReplicaLag:
    """How far behind the source's streaming (physical) replicas are, in seconds.

    A replica's lag is the larger of ``pg_stat_replication.replay_lag`` and
    the age of the oldest WAL it has not replayed: the controller keeps the
    source's WAL position at each reading, and a replica whose replay position
    the source passed N seconds ago is at least N seconds behind. The second
    keeps growing while a replica's replay stands still (``replay_lag`` is only
    measured when the replay position moves, so it keeps its last, small value).
    Both rest on the replay position the replica reports, at least every
    ``wal_receiver_status_interval`` (10 s by default): keep the limit above it.
    """

    QUERY = (
        "SELECT r.application_name, coalesce(host(r.client_addr), 'local'), r.replay_lsn::text, "
        "extract(epoch FROM r.replay_lag)::float8 FROM pg_stat_replication r "
        "JOIN pg_stat_activity a ON a.pid = r.pid WHERE a.datname IS NULL"  # physical: not bound to a database
    )

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.history: deque[tuple[float, int]] = deque()  # (monotonic time, the source's WAL position)

    def read(self) -> tuple[float | None, str]:
        """The largest lag of a connected replica and which replica it is; (None, "") without replicas."""
        now = time.monotonic()
        self.history.append((now, _lsn(str(one(self.conn, "SELECT pg_current_wal_lsn()::text")))))
        rows = self.conn.execute(self.QUERY).fetchall()
        while self.history and self.history[0][0] < now - LSN_HISTORY_SECONDS:
            self.history.popleft()
        worst: tuple[float | None, str] = (None, "")
        for name, addr, replay_lsn, replay_lag in rows:
            behind = self.age_of(_lsn(replay_lsn), now) if replay_lsn is not None else 0.0
            lag = max(float(replay_lag or 0.0), behind)
            if worst[0] is None or lag > worst[0]:
                worst = (lag, f"{name or 'replica'}@{addr}")
        return worst

    def age_of(self, replayed: int, now: float) -> float:
        """Seconds since the source's WAL first went past ``replayed`` (0: the replica has replayed it all)."""
        for at, position in self.history:
            if position > replayed:
                return now - at
        return 0.0


def _lsn(text: str) -> int:
    high, low = str(text).split("/")
    return (int(high, 16) << 32) | int(low, 16)
