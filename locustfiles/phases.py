"""Load shapes as sequences of phases, judged phase by phase (no Locust import: testable on its own).

A phase holds a number of users for some seconds. Each judged phase gets its
own statistics window (snapshots of Locust's cumulative stats at its start,
after a settling time, and at its end), so a report can say "step 6 (35
users): p95 1.9 s, over the 1.2 s target" rather than only whole-run figures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .options import LoadOptions
from .thresholds import Thresholds, evaluate, merge, percentile
from .windows import Snapshot, window

logger = logging.getLogger(__name__)

# The stop reason of a sequence that ran every phase of its plan.
ALL_PHASES_RAN = "all phases ran"


@dataclass(frozen=True)
class Phase:
    name: str
    users: int
    seconds: float
    spawn_rate: float
    settle_seconds: float = 0.0  # left out of the phase's window (users still arriving, caches warming)
    judged: bool = True  # a ramp is run but not judged


@dataclass(frozen=True)
class PhaseResult:
    name: str
    users: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    failure_ratio: float
    passed: bool | None  # None: no requests in the window
    problems: str

    def row(self) -> dict[str, Any]:
        verdict = {True: "ok", False: "over target", None: "not judged"}[self.passed]
        return {**asdict(self), "verdict": verdict}


def judge_window(phase: Phase, start: Snapshot, end: Snapshot, thresholds: Thresholds) -> PhaseResult:
    entries = window(start, end)
    seconds = end.taken_at - start.taken_at
    verdict = evaluate(entries, thresholds, mode="window")
    requests, failures, times = merge(entries)
    return PhaseResult(
        name=phase.name,
        users=phase.users,
        seconds=round(seconds, 1),
        requests=requests,
        rps=round(requests / seconds, 2) if seconds > 0 else 0.0,
        p50_ms=percentile(times, 0.5),
        p95_ms=percentile(times, 0.95),
        failure_ratio=round(failures / requests, 4) if requests else 0.0,
        passed=verdict.passed if requests else None,
        problems="; ".join(f"{c.subject}: {c.measured} (limit {c.limit})" for c in verdict.failed_checks),
    )


@dataclass
class PhaseSequence:
    """Steps through ``plan`` as time passes; ``keep_going(result)`` may end the run after a judged phase."""

    plan: Iterable[Phase]
    thresholds: Thresholds
    snapshot: Callable[[], Snapshot]
    keep_going: Callable[[PhaseResult], bool] = lambda _result: True
    results: list[PhaseResult] = field(default_factory=list)
    stop_reason: str = ""

    def __post_init__(self) -> None:
        self._phases: Iterator[Phase] = iter(self.plan)
        self._phase: Phase | None = None
        self._started = 0.0
        self._window_start: Snapshot | None = None
        self._done = False

    @property
    def current(self) -> Phase | None:
        return self._phase

    def tick(self, elapsed: float) -> tuple[int, float] | None:
        """Users and spawn rate for this moment, or None when the run is over."""
        if self._done:
            return None
        phase = self._phase
        if phase is None or elapsed - self._started >= phase.seconds:
            if phase is not None:
                result = self._judge(phase)
                if result is not None and not self.keep_going(result):
                    self._stop()
                    return None
            phase = self._phase = next(self._phases, None)
            if phase is None:
                self.stop_reason = self.stop_reason or ALL_PHASES_RAN
                self._stop()
                return None
            logger.info("phase %r: %d users for %.0f s", phase.name, phase.users, phase.seconds)
            self._started = elapsed
            self._window_start = None
        if self._window_start is None and elapsed - self._started >= phase.settle_seconds:
            self._window_start = self.snapshot()
        return phase.users, phase.spawn_rate

    def finish(self) -> None:
        """At quit time: judge the phase that was still running (a run stopped early from the web UI)."""
        if self._phase is not None:
            self._judge(self._phase)
            self.stop_reason = self.stop_reason or f"stopped during phase {self._phase.name!r}, before the plan ended"
        self._stop()

    def _stop(self) -> None:
        self._phase = None
        self._done = True

    def _judge(self, phase: Phase) -> PhaseResult | None:
        if not phase.judged or self._window_start is None:
            return None
        result = judge_window(phase, self._window_start, self.snapshot(), self.thresholds)
        self.results.append(result)
        return result


def _ramp_rate(users: int, seconds: float) -> float:
    return max(users / max(seconds, 1.0), 1.0)


def baseline_plan(options: LoadOptions, default_seconds: float = 300) -> Iterator[Phase]:
    users, ramp = options.baseline_users, options.ramp_seconds
    yield Phase("ramp", users, ramp, _ramp_rate(users, ramp), judged=False)
    yield Phase("steady", users, options.run_seconds or default_seconds, _ramp_rate(users, ramp))


def stress_plan(options: LoadOptions) -> Iterator[Phase]:
    users, step = options.stress_start_users, 0
    settle = min(10.0, options.stress_step_seconds / 4)
    while users <= options.stress_max_users:
        step += 1
        rate = _ramp_rate(options.stress_step_users, 2)
        yield Phase(f"step {step}", users, options.stress_step_seconds, rate, settle_seconds=settle)
        users += options.stress_step_users


def spike_plan(options: LoadOptions) -> Iterator[Phase]:
    base, spike, ramp = options.baseline_users, options.spike_users, options.ramp_seconds
    sudden = _ramp_rate(abs(spike - base), 2)
    yield Phase("ramp", base, ramp, _ramp_rate(base, ramp), judged=False)
    yield Phase("before", base, 60, _ramp_rate(base, ramp))
    yield Phase("spike", spike, options.spike_seconds, sudden)
    yield Phase("recovery", base, 120, sudden, settle_seconds=10)


@dataclass
class BreakPoint:
    """The stress shape's rule: keep adding users while each step meets the service level."""

    max_users: int
    broke_at: PhaseResult | None = None
    last_good: PhaseResult | None = None

    def keep_going(self, result: PhaseResult) -> bool:
        if result.passed is None:
            return True
        if result.passed:
            self.last_good = result
            return True
        self.broke_at = result
        return False

    def describe(self) -> str:
        if self.broke_at is None:
            return f"reached --stress-max-users={self.max_users} without breaking the service level"
        b = self.broke_at
        return f"service level broke at {b.name} ({b.users} users, {b.rps} req/s): {b.problems}"
