"""The throttle's controller: probes the source and paces the copy's gate so the source stays within budget.

Why it paces the way it does (the measurements are in docs/benchmarks.md):

* **Short bursts.** The gate opens for the copy's share (``duty``) of every
  ``PACE_PERIOD`` (0.2 s), not of every control interval. A source capped in
  CPU (a container's quota, a cloud instance's credits) serves its users at
  full speed as long as the copy leaves it headroom in each scheduling period;
  half a second of full-speed copy uses all of it and every read in that half
  second waits, so a long burst costs the users' p95 even at a low average.
  In short bursts the source's ``COPY`` runs at about ``duty`` times its speed,
  smoothed by the socket buffers between it and the target.
* **An aim under the budget.** Over a window of probes the p95 the controller
  lets through overshoots the value it steers to (it reacts after the fact),
  so it steers to ``AIM_SHARE`` of the budget's headroom above the baseline
  (1.1x the baseline for the default 1.2x budget), and the budget is what the
  users should see.
* **A baseline kept current.** Every ``REBASE_EVERY`` seconds the gate stays
  shut for a window of probes that measures the source without the copy, now
  (``throttle_baseline``); a budget derived from the baseline follows them.

* **Quick to back off, slow to speed up.** The p95 of the last five windows,
  read as the baseline is (``baseline_of``: the same statistic, so an idle
  source reads at its baseline), is compared with the aim, and the last
  window alone with the budget, so a copy that hurts the users now is held
  back within a second. Until a whole
  window of probes has been read the copy keeps its slow start.

Multiplicative decrease, additive increase: over a limit the duty is divided
by four (below 1/16: paused); within them an eighth is added back every
control interval.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import psycopg
from django.utils import timezone

from .conf import get_settings
from .models import MoveEvent, MoveRange
from .pgconn import connect, one
from .schema import ShardedTable
from .throttle import (
    CONTROL_WINDOWS,
    PROBE_EVERY,
    RELEASE_AFTER,
    SLOW_START,
    Probe,
    ReplicaLag,
    ThrottleConfig,
    controller_key,
    gate_key,
)
from .throttle_baseline import REBASE_EVERY, SETTLE, WINDOW, QuietWindows, baseline_of, p95

PACE_PERIOD = 0.2  # the gate opens for the copy's share of every PACE_PERIOD seconds (short bursts, not long ones)
AIM_SHARE = 0.5  # the controller aims at the baseline plus this share of the budget's headroom above it
MIN_DUTY = 1 / 16  # below this share the copy is paused
MIN_WINDOW_SAMPLES = 10  # a window with fewer probes (the controller just started) is not a reading
GATE_WAIT = 0.1  # seconds the controller waits to shut a gate another session holds (then: shut by that session)


@dataclass(frozen=True)
class Limits:
    """The latency the controller holds the probe to now: the budget and, under it, what it aims at."""

    budget_ms: float | None
    aim_ms: float | None
    baseline_ms: float | None

    @classmethod
    def of(cls, config: ThrottleConfig, baseline: float | None) -> Limits:
        """The limits for ``config`` given the current ``baseline``; a budget derived from a baseline follows it."""
        budget = config.max_probe_ms
        if budget is None:
            return cls(None, None, baseline)
        if baseline is None:
            return cls(budget, budget, None)
        if config.budget_from == "baseline":
            settings = get_settings()
            budget = max(baseline * settings.throttle_latency_factor, baseline + settings.throttle_latency_slack_ms)
        aim = min(budget, baseline + max(0.0, budget - baseline) * AIM_SHARE)
        return cls(round(budget, 3), round(aim, 3), round(baseline, 3))


@dataclass
class Reading:
    p95_ms: float | None  # baseline_of the last CONTROL_WINDOWS windows' p95
    active: int
    replica_lag: float | None = None
    replica: str = ""
    last_window_ms: float | None = None  # the last window's p95 alone

    def over(self, config: ThrottleConfig, limits: Limits) -> str:
        """Why the source is over its limits ("" if it is not): the probe's steady p95 against the aim, its last
        window against the budget (a copy that hurts now is held back at once), the others as set."""
        reasons = []
        if limits.aim_ms is not None and self.p95_ms is not None and self.p95_ms > limits.aim_ms:
            reasons.append(
                f"probe p95 {self.p95_ms:.2f} ms > {limits.aim_ms:.2f} ms (aim; budget {limits.budget_ms:.2f} ms)"
            )
        elif (
            limits.budget_ms is not None and self.last_window_ms is not None and self.last_window_ms > limits.budget_ms
        ):
            reasons.append(
                f"probe p95 {self.last_window_ms:.2f} ms > {limits.budget_ms:.2f} ms (budget) in the last second"
            )
        if config.max_active is not None and self.active > config.max_active:
            reasons.append(f"{self.active} active backends > {config.max_active}")
        if config.max_replica_lag is not None and self.replica_lag is not None:
            if self.replica_lag > config.max_replica_lag:
                reasons.append(f"replica {self.replica} lags {self.replica_lag:.1f} s > {config.max_replica_lag:g} s")
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
        self.replicas = ReplicaLag(self.source) if config.max_replica_lag is not None else None
        self.samples: deque[tuple[float, float]] = deque()
        self.duty = SLOW_START  # the copy earns its full speed (the source is read at once)
        started = time.monotonic()
        self.quiet = QuietWindows(config.baseline_windows_ms)
        self.limits = Limits.of(config, self.quiet.baseline())
        self.shut_since: float | None = None  # monotonic time the gate was last shut (None: open)
        self.holding = False  # this session holds the gate shut (not: open, or shut by another session)
        self.quiet_until = 0.0  # a quiet window under way keeps the gate shut until then
        self.next_quiet = started + REBASE_EVERY  # when to measure the source without the copy next
        self.next_probe = started
        self.pace_started = started
        self.tick_started = started - interval  # the first step reads the source at once
        self.episode_started: float | None = None
        self.full_since: float | None = None
        self.throttled_seconds = float(move.throttle.get("throttled_seconds", 0.0))
        self.last_saved = 0.0
        self.reading = Reading(None, 0)
        self.reason = ""
        self.owner = bool(one(self.target, "SELECT pg_try_advisory_lock(%s)", [controller_key(move.id)]))

    @property
    def closed(self) -> bool:
        return self.shut_since is not None

    def close(self) -> None:
        if self.shut_since is not None:
            self.throttled_seconds += time.monotonic() - self.shut_since
            self.shut_since = None  # closing the session below releases the gate
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
            wake = min(end, self._step(now)) if self.owner else end
            time.sleep(max(0.0, min(wake, now + PROBE_EVERY) - time.monotonic()))

    def _step(self, now: float) -> float:
        """Probe when due, decide when due, set the gate for this moment; when to step next (monotonic)."""
        if now >= self.next_probe:
            ms = self.probe.run()
            self.samples.append((now, ms))
            while self.samples and self.samples[0][0] < now - CONTROL_WINDOWS * WINDOW:
                self.samples.popleft()
            # Only the windows the controller scheduled count: the gate also shuts when the source is slow, and
            # windows taken then would pull the baseline up (throttle_baseline).
            measuring = now < self.quiet_until
            if self.quiet.add(now, ms, shut_since=self.shut_since if measuring else None):
                self.limits = Limits.of(self.config, self.quiet.baseline())
            self.next_probe = now + PROBE_EVERY
        if now - self.tick_started >= self.interval:
            self._tick(now)
        if self.limits.aim_ms is not None and now >= self.next_quiet:
            self.quiet_until = now + SETTLE + WINDOW + 2 * PROBE_EVERY
            self.next_quiet = now + REBASE_EVERY
        self._set_closed(self._should_close(now), now)
        self._save()
        return min(self.next_probe, self.tick_started + self.interval, self.next_quiet, self._next_gate_change(now))

    def _should_close(self, now: float) -> bool:
        if now < self.quiet_until or self.duty < MIN_DUTY:
            return True
        return self.duty < 1.0 and (now - self.pace_started) % PACE_PERIOD >= self.duty * PACE_PERIOD

    def _next_gate_change(self, now: float) -> float:
        if now < self.quiet_until:
            return self.quiet_until
        if self.duty < MIN_DUTY or self.duty >= 1.0:
            return float("inf")
        cycle = self.pace_started + (now - self.pace_started) // PACE_PERIOD * PACE_PERIOD
        opened_until = cycle + self.duty * PACE_PERIOD
        return opened_until if now < opened_until else cycle + PACE_PERIOD

    def _tick(self, now: float) -> None:
        self.tick_started = now
        lag, replica = self.replicas.read() if self.replicas is not None else (None, "")
        windows = self._window_p95s(now)
        steady = baseline_of(windows) if windows else None
        last = windows[0] if windows else None
        self.reading = Reading(steady, self.probe.active_backends(), lag, replica, last)
        reason = self.reading.over(self.config, self.limits)
        if not reason and self.reading.p95_ms is None and self.limits.aim_ms is not None:
            return  # no whole window of probes yet: the copy keeps its slow start until the source has been read
        if reason:
            self.reason = reason
            self.duty = 0.0 if self.duty / 4 < MIN_DUTY else self.duty / 4
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
                    probe = f"probe p95 {self.reading.p95_ms:.2f} ms" if self.reading.p95_ms is not None else "probe -"
                    self._event(
                        "throttle-released",
                        f"Copy back at full speed after {lasted:.1f}s of throttling ({probe}, "
                        f"{self.reading.active} active backends on {self.move.source}).",
                    )

    def _window_p95s(self, now: float) -> list[float]:
        """The probe's p95 in each of the last ``CONTROL_WINDOWS`` whole windows, the latest first: read
        together as the baseline is (one window slowed by something else on the machine does not hold the copy
        back) and compared with the aim; the latest alone with the budget (a copy that hurts is held back at once).
        """
        windows = [
            [ms for at, ms in self.samples if now - (i + 1) * WINDOW <= at < now - i * WINDOW]
            for i in range(CONTROL_WINDOWS)
        ]
        return [p95(w) for w in windows if len(w) >= MIN_WINDOW_SAMPLES]

    def _set_closed(self, closed: bool, now: float) -> None:
        key = gate_key(self.move.id)
        if closed and self.closed and not self.holding:
            # Shut by another session so far: take the gate over as soon as it lets go (no wait: the next step
            # tries again), or the copy would run free while this controller means to hold it.
            self.holding = bool(one(self.target, "SELECT pg_try_advisory_lock(%s)", [key]))
        if closed == self.closed:
            return
        if closed:
            self.holding = self._take_gate(key)
            self.shut_since = now
        else:
            assert self.shut_since is not None
            if self.holding:
                self.target.execute("SELECT pg_advisory_unlock(%s)", [key])
                self.holding = False
            self.throttled_seconds += now - self.shut_since  # the copy time held back, by whatever shut the gate
            self.shut_since = None

    def _take_gate(self, key: int) -> bool:
        """Hold the gate shut; False if another session holds it shut longer than ``GATE_WAIT`` (an operator
        pausing the copy by hand): the copy stands still either way, and the controller never stalls on it (a
        copying worker holds the gate only for the moment it passes it with a row)."""
        try:
            with self.target.transaction():
                self.target.execute(f"SET LOCAL lock_timeout = '{int(GATE_WAIT * 1000)}ms'")
                self.target.execute("SELECT pg_advisory_lock(%s)", [key])  # session-level: outlives the transaction
        except psycopg.errors.LockNotAvailable:
            return False
        return True

    def _event(self, kind: str, message: str, *, running: bool = True) -> None:
        MoveEvent.objects.create(
            move=self.move,
            kind=kind,
            message=message,
            data={
                "p95_ms": self.reading.p95_ms,
                "active": self.reading.active,
                "replica_lag": self.reading.replica_lag,
                "duty": self.duty,
                "aim_ms": self.limits.aim_ms,
                "budget_ms": self.limits.budget_ms,
            },
        )
        self._save(force=True, running=running)

    def _save(self, *, force: bool = False, running: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self.last_saved < 1.0:
            return
        self.last_saved = now
        held = self.throttled_seconds + (now - self.shut_since if self.shut_since is not None else 0.0)
        state = dict(self.move.throttle)
        state.update(
            {
                "running": running,
                "throttling": self.episode_started is not None and running,
                "duty": round(self.duty, 3),
                "reason": self.reason if self.episode_started is not None else "",
                "probe_p95_ms": self.reading.p95_ms,
                "active": self.reading.active,
                "replica_lag": self.reading.replica_lag,
                "throttled_seconds": round(held, 1),
                "baseline_now_ms": self.limits.baseline_ms,
                "budget_now_ms": self.limits.budget_ms,
                "aim_ms": self.limits.aim_ms,
                "quiet_windows": self.quiet.taken,
                "updated_at": timezone.now().isoformat(),
            }
        )
        self.move.throttle = state
        MoveRange.objects.filter(id=self.move.id).update(throttle=state)
