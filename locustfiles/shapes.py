"""Load shapes QA picks in the web UI (or with ``--shape`` headless): baseline, stress, spike, soak.

Thin Locust adapters over ``phases.py``. Sizes come from the options under
"Custom parameters" in the UI, read again each time a shape starts (the web
UI can run a shape many times, with different sizes).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from locust import LoadTestShape

from .memory import GunicornMemory, MemorySample, memory_trend
from .options import LoadOptions
from .phases import ALL_PHASES_RAN, BreakPoint, Phase, PhaseSequence, baseline_plan, spike_plan, stress_plan
from .thresholds import load_thresholds
from .windows import take_snapshot

logger = logging.getLogger(__name__)


class PhasedShape(LoadTestShape):
    """Runs ``plan()``'s phases in order, keeping a result per judged phase."""

    abstract = True
    gate_applies = True  # whether the whole run must meet thresholds.toml (not for stress: it is meant to break)

    def __init__(self) -> None:
        super().__init__()
        self.sequence: PhaseSequence | None = None

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        raise NotImplementedError

    def prepare(self, options: LoadOptions) -> None:
        """Shape-specific state for a new run."""

    def keep_going(self, result: Any) -> bool:
        return True

    def on_tick(self, elapsed: float) -> None:
        """Called every second while the shape runs."""

    def reset_time(self) -> None:
        """Locust calls this when a shape test starts: start over with the options as they are now."""
        super().reset_time()
        runner = self.runner
        if runner is None:
            raise RuntimeError(f"{type(self).__name__} started without a Locust runner")
        self.options = LoadOptions.from_parsed(runner.environment.parsed_options)
        self.prepare(self.options)
        self.sequence = PhaseSequence(
            plan=self.plan(self.options),
            thresholds=load_thresholds(self.options.thresholds),
            snapshot=lambda: take_snapshot(runner.stats),
            keep_going=self.keep_going,
        )

    def tick(self) -> tuple[int, float] | None:
        if self.sequence is None:
            self.reset_time()
        assert self.sequence is not None
        elapsed = self.get_run_time()
        users = self.sequence.tick(elapsed)
        if users is not None:
            self.on_tick(elapsed)
        return users

    def finish(self) -> None:
        if self.sequence is not None:
            self.sequence.finish()

    def summary(self) -> dict[str, Any]:
        sequence = self.sequence
        return {
            "shape": type(self).__name__,
            "phases": [r.row() for r in sequence.results] if sequence else [],
            "stopped_because": sequence.stop_reason if sequence else "not started",
        }


class BaselineShape(PhasedShape):
    """Today's traffic, held steady: the reference the CI gate and every comparison use."""

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        return baseline_plan(options)


class StressShape(PhasedShape):
    """Adds users step by step until a step misses the service level; reports the step where it broke."""

    gate_applies = False

    def prepare(self, options: LoadOptions) -> None:
        self.break_point = BreakPoint(options.stress_max_users)

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        return stress_plan(options)

    def keep_going(self, result: Any) -> bool:
        going = self.break_point.keep_going(result)
        if not going:
            logger.warning("StressShape: %s", self.break_point.describe())
        return going

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        point: BreakPoint | None = getattr(self, "break_point", None)
        if point is not None and self.sequence is not None:
            if point.broke_at is not None or self.sequence.stop_reason == ALL_PHASES_RAN:
                summary["stopped_because"] = point.describe()
            summary["broke_at"] = point.broke_at.row() if point.broke_at else None
            summary["last_good"] = point.last_good.row() if point.last_good else None
        return summary


class SpikeShape(PhasedShape):
    """Baseline, a sudden jump (spawned within seconds), then baseline again: does it absorb and recover?"""

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        return spike_plan(options)


class SoakShape(PhasedShape):
    """Baseline traffic for a long time, sampling the app server's memory to catch leaks."""

    def prepare(self, options: LoadOptions) -> None:
        host = self.runner.environment.host if self.runner is not None else None
        split = urllib.parse.urlsplit(host or "")
        local = split.hostname in ("127.0.0.1", "localhost", "::1")
        self.memory = GunicornMemory.discover(app_pid=options.app_pid, port=(split.port or 80) if local else None)
        self.samples: list[MemorySample] = []
        self._next_sample = 0.0
        if not self.memory.available:
            logger.warning(
                "SoakShape: the app server of %s is not a process of this machine that can be read; memory is "
                "not sampled (pass --app-pid with the gunicorn master's PID if it runs here).",
                host,
            )

    def plan(self, options: LoadOptions) -> Iterator[Phase]:
        return baseline_plan(options, default_seconds=3600)

    def on_tick(self, elapsed: float) -> None:
        if elapsed >= self._next_sample:
            self._next_sample = elapsed + self.options.soak_sample_seconds
            sample = self.memory.sample()
            if sample is not None:
                self.samples.append(sample)

    def summary(self) -> dict[str, Any]:
        samples: list[MemorySample] = getattr(self, "samples", [])
        trend = memory_trend(samples)
        return {
            **super().summary(),
            "memory_samples": [asdict(s) for s in samples],
            "memory_trend": {**asdict(trend), "reading": trend.reading} if trend else None,
            "memory_sampled": bool(samples),
        }


SHAPE_CLASSES: dict[str, type[PhasedShape]] = {
    "baseline": BaselineShape,
    "stress": StressShape,
    "spike": SpikeShape,
    "soak": SoakShape,
}
