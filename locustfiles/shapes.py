"""Load shapes QA picks in the web UI (or with ``--shape`` headless): baseline, stress, spike, soak.

Each shape is a sequence of phases (a number of users held for some time);
each phase's own statistics window is kept, so the report can say "step 6
(35 users): p95 1.9 s, over the 1.2 s target" rather than only whole-run
figures. Sizes come from the options under "Custom parameters" in the UI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from locust import LoadTestShape

from .memory import GunicornMemory, MemorySample, memory_trend
from .options import LoadOptions
from .thresholds import Thresholds, Verdict, evaluate, load_thresholds, merge, percentile
from .windows import Snapshot, take_snapshot, window

logger = logging.getLogger(__name__)


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
    passed: bool | None
    problems: str

    def row(self) -> dict[str, Any]:
        verdict = {True: "ok", False: "over target", None: "not judged"}[self.passed]
        return {**asdict(self), "verdict": verdict}


class PhasedShape(LoadTestShape):
    """Runs ``plan()``'s phases in order and keeps a result per judged phase."""

    abstract = True
    gate_applies = True  # whether the whole run must meet thresholds.toml (not for stress: it is meant to break)

    def __init__(self) -> None:
        super().__init__()
        self._prepared = False
        self.results: list[PhaseResult] = []
        self.stop_reason = ""

    # --- what a shape defines ---------------------------------------------------------------------------

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        raise NotImplementedError

    def phase_ended(self, phase: Phase, result: PhaseResult | None, verdict: Verdict | None) -> bool:
        """Called when a phase ends; return False to end the test there."""
        return True

    def on_tick(self, elapsed: float) -> None:
        """Called every second while the shape runs."""

    def summary(self) -> dict[str, Any]:
        return {
            "shape": type(self).__name__,
            "phases": [r.row() for r in self.results],
            "stopped_because": self.stop_reason,
        }

    # --- the machinery -----------------------------------------------------------------------------------

    def reset_time(self) -> None:
        """Locust calls this when a shape test starts: start over (the web UI can run a shape many times)."""
        super().reset_time()
        parsed = self.runner.environment.parsed_options if self.runner is not None else None
        self.options = LoadOptions.from_parsed(parsed)
        self.thresholds: Thresholds = load_thresholds(self.options.thresholds)
        self._plan = iter(self.plan(self.options))
        self._phase: Phase | None = None
        self._phase_started = 0.0
        self._window_start: Snapshot | None = None
        self.results = []
        self.stop_reason = ""
        self._prepared = True
        self.prepare()

    def prepare(self) -> None:
        """Shape-specific state for a new run."""

    def tick(self) -> tuple[int, float] | None:
        if not self._prepared:
            self.reset_time()
        elapsed = self.get_run_time()
        phase = self._phase
        if phase is None or elapsed - self._phase_started >= phase.seconds:
            if phase is not None:
                result, verdict = self._judge(phase, elapsed)
                if not self.phase_ended(phase, result, verdict):
                    self._phase = None
                    return None
            phase = self._phase = next(self._plan, None)
            if phase is None:
                self.stop_reason = self.stop_reason or "all phases ran"
                return None
            logger.info(
                "%s: phase %r, %d users for %.0f s", type(self).__name__, phase.name, phase.users, phase.seconds
            )
            self._phase_started = elapsed
            self._window_start = None
        if self._window_start is None and elapsed - self._phase_started >= phase.settle_seconds:
            self._window_start = take_snapshot(self.runner.stats)
        self.on_tick(elapsed)
        return phase.users, phase.spawn_rate

    def _judge(self, phase: Phase, elapsed: float) -> tuple[PhaseResult | None, Verdict | None]:
        if not phase.judged or self._window_start is None:
            return None, None
        end = take_snapshot(self.runner.stats)
        entries = window(self._window_start, end)
        seconds = end.taken_at - self._window_start.taken_at
        verdict = evaluate(entries, self.thresholds, judge_volume=False)
        requests, failures, times = merge(entries)
        problems = "; ".join(f"{c.subject}: {c.measured} (limit {c.limit})" for c in verdict.failed_checks)
        result = PhaseResult(
            name=phase.name,
            users=phase.users,
            seconds=round(seconds, 1),
            requests=requests,
            rps=round(requests / seconds, 2) if seconds > 0 else 0.0,
            p50_ms=percentile(times, 0.5),
            p95_ms=percentile(times, 0.95),
            failure_ratio=round(failures / requests, 4) if requests else 0.0,
            passed=verdict.passed if requests else None,
            problems=problems,
        )
        self.results.append(result)
        return result, verdict

    def finish(self) -> None:
        """At quit time: judge the phase that was still running (a run stopped early from the UI)."""
        if self._prepared and self._phase is not None:
            self._judge(self._phase, self.get_run_time())
            self._phase = None


def _ramp_rate(users: int, seconds: float) -> float:
    return max(users / max(seconds, 1.0), 1.0)


class BaselineShape(PhasedShape):
    """Today's traffic, held steady: the reference the CI gate and every comparison use."""

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        users = options.baseline_users
        yield Phase("ramp", users, options.ramp_seconds, _ramp_rate(users, options.ramp_seconds), judged=False)
        yield Phase("steady", users, options.run_seconds or 300, _ramp_rate(users, options.ramp_seconds))


class StressShape(PhasedShape):
    """Adds users step by step until a step misses the service level; reports the step where it broke."""

    gate_applies = False

    def prepare(self) -> None:
        self.broke_at: PhaseResult | None = None
        self.last_good: PhaseResult | None = None

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        users, step = options.stress_start_users, 0
        settle = min(10.0, options.stress_step_seconds / 4)
        while users <= options.stress_max_users:
            step += 1
            rate = _ramp_rate(options.stress_step_users, 2)
            yield Phase(f"step {step}", users, options.stress_step_seconds, rate, settle_seconds=settle)
            users += options.stress_step_users
        self.stop_reason = f"reached --stress-max-users={options.stress_max_users} without breaking"

    def phase_ended(self, phase: Phase, result: PhaseResult | None, verdict: Verdict | None) -> bool:
        if result is None or result.passed is None:
            return True
        if result.passed:
            self.last_good = result
            return True
        self.broke_at = result
        self.stop_reason = f"service level broke at {result.name} ({result.users} users): {result.problems}"
        logger.warning("StressShape: %s", self.stop_reason)
        return False

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "broke_at": self.broke_at.row() if getattr(self, "broke_at", None) else None,
            "last_good": self.last_good.row() if getattr(self, "last_good", None) else None,
        }


class SpikeShape(PhasedShape):
    """Baseline, a sudden jump (spawned within seconds), then baseline again: does it absorb and recover?"""

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        base, spike = options.baseline_users, options.spike_users
        ramp = options.ramp_seconds
        yield Phase("ramp", base, ramp, _ramp_rate(base, ramp), judged=False)
        yield Phase("before", base, 60, _ramp_rate(base, ramp))
        yield Phase("spike", spike, options.spike_seconds, _ramp_rate(spike - base, 2))
        yield Phase("recovery", base, 120, _ramp_rate(spike - base, 2), settle_seconds=10)


class SoakShape(PhasedShape):
    """Baseline traffic for a long time, sampling the app server's memory to catch leaks."""

    def prepare(self) -> None:
        self.memory = GunicornMemory.discover(self.options.app_pid)
        self.samples: list[MemorySample] = []
        self._next_sample = 0.0
        if not self.memory.available:
            logger.warning(
                "SoakShape: no gunicorn process serving quantumquill.wsgi found on this machine; memory is not "
                "sampled (pass --app-pid when the app server runs here under another command line)."
            )

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        users = options.baseline_users
        yield Phase("ramp", users, options.ramp_seconds, _ramp_rate(users, options.ramp_seconds), judged=False)
        yield Phase("steady", users, options.run_seconds or 3600, _ramp_rate(users, options.ramp_seconds))

    def on_tick(self, elapsed: float) -> None:
        if elapsed >= self._next_sample:
            self._next_sample = elapsed + self.options.soak_sample_seconds
            sample = self.memory.sample()
            if sample is not None:
                self.samples.append(sample)

    def summary(self) -> dict[str, Any]:
        trend = memory_trend(getattr(self, "samples", []))
        return {
            **super().summary(),
            "memory_samples": [asdict(s) for s in getattr(self, "samples", [])],
            "memory_trend": asdict(trend) if trend else None,
            "memory_sampled": bool(getattr(self, "samples", [])),
        }


SHAPE_CLASSES: dict[str, type[PhasedShape]] = {
    "baseline": BaselineShape,
    "stress": StressShape,
    "spike": SpikeShape,
    "soak": SoakShape,
}
