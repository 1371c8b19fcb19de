"""Load shapes as phases: each phase judged on its own window; the stress shape stops where it broke."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from locustfiles.options import LoadOptions
from locustfiles.phases import BreakPoint, Phase, PhaseSequence, baseline_plan, spike_plan, stress_plan
from locustfiles.thresholds import EndpointStats, Thresholds, load_thresholds
from locustfiles.windows import Snapshot, window


def snap(at: float, **entries: tuple[int, int, dict[int, int]]) -> Snapshot:
    return Snapshot(
        at,
        {(name, "GET"): EndpointStats(name, "GET", r, f, t) for name, (r, f, t) in entries.items()},
    )


def test_a_window_holds_only_what_happened_between_two_snapshots() -> None:
    start = snap(10.0, list=(100, 1, {10: 90, 20: 10}))
    end = snap(20.0, list=(150, 4, {10: 120, 20: 25, 900: 5}), new=(3, 0, {5: 3}))
    got = {e.name: (e.requests, e.failures, dict(e.response_times)) for e in window(start, end)}
    assert got == {"list": (50, 3, {10: 30, 20: 15, 900: 5}), "new": (3, 0, {5: 3})}


def test_statistics_reset_in_the_web_ui_mid_window_count_from_zero() -> None:
    start = snap(10.0, list=(100, 1, {10: 100}))
    end = snap(20.0, list=(7, 0, {10: 7}))
    assert [(e.requests, dict(e.response_times)) for e in window(start, end)] == [(7, {10: 7})]


@pytest.fixture
def thresholds(tmp_path: Path) -> Thresholds:
    path = tmp_path / "t.toml"
    path.write_text('[gate]\nmin_group_requests = 5\n[groups.pages]\nprefixes = ["page: "]\np95_ms = 100\n')
    return load_thresholds(path)


class FakeStats:
    """Cumulative statistics that grow as a test scripts them, like Locust's."""

    def __init__(self) -> None:
        self.requests = 0
        self.times: dict[int, int] = {}
        self.now = 0.0

    def add(self, count: int, ms: int) -> None:
        self.requests += count
        self.times[ms] = self.times.get(ms, 0) + count

    def snapshot(self) -> Snapshot:
        return snap(self.now, **{"page: list": (self.requests, 0, dict(self.times))})


def run(sequence: PhaseSequence, stats: FakeStats, until: float, traffic: Callable[[int], int]) -> list[object]:
    """Tick once a second; each second adds 10 requests at the latency traffic(users) gives."""
    ticks = []
    while stats.now <= until:
        tick = sequence.tick(stats.now)
        ticks.append(tick)
        if tick is None:
            break
        stats.add(10, traffic(tick[0]))
        stats.now += 1
    return ticks


def test_the_stress_shape_adds_users_until_a_step_misses_the_target_and_reports_that_step(
    thresholds: Thresholds,
) -> None:
    options = LoadOptions(stress_start_users=5, stress_step_users=5, stress_step_seconds=20, stress_max_users=100)
    stats, point = FakeStats(), BreakPoint(options.stress_max_users)
    sequence = PhaseSequence(stress_plan(options), thresholds, stats.snapshot, point.keep_going)
    ticks = run(sequence, stats, 500, lambda users: 30 if users < 20 else 400)  # slow from 20 users on
    assert ticks[-1] is None, "the run ends at the break"
    assert [(r.name, r.users, r.passed) for r in sequence.results] == [
        ("step 1", 5, True),
        ("step 2", 10, True),
        ("step 3", 15, True),
        ("step 4", 20, False),
    ]
    assert point.last_good is not None and point.last_good.users == 15
    assert point.broke_at is not None and point.broke_at.p95_ms == 400
    assert point.describe().startswith("service level broke at step 4 (20 users, ")
    assert "pages: p95 400 ms (limit <= 100 ms)" in point.describe()


def test_a_step_is_judged_after_its_users_settle(thresholds: Thresholds) -> None:
    options = LoadOptions(stress_start_users=5, stress_step_users=5, stress_step_seconds=20, stress_max_users=10)
    stats = FakeStats()
    sequence = PhaseSequence(stress_plan(options), thresholds, stats.snapshot)
    seconds = iter(range(1000))
    # The first 5 s of each step (the settling time) are slow; the rest is fast.
    run(sequence, stats, 100, lambda _users: 900 if next(seconds) % 20 < 5 else 30)
    assert [(r.name, r.passed, r.p95_ms) for r in sequence.results] == [("step 1", True, 30), ("step 2", True, 30)]
    assert sequence.stop_reason == "all phases ran"


def test_stress_reaching_the_user_ceiling_says_so(thresholds: Thresholds) -> None:
    point = BreakPoint(max_users=10)
    assert point.describe() == "reached --stress-max-users=10 without breaking the service level"


def test_the_baseline_ramps_then_holds_and_judges_only_the_steady_part(thresholds: Thresholds) -> None:
    options = LoadOptions(baseline_users=12, ramp_seconds=6, run_seconds=30)
    stats = FakeStats()
    sequence = PhaseSequence(baseline_plan(options), thresholds, stats.snapshot)
    ticks = run(sequence, stats, 100, lambda _users: 40)
    assert ticks[0] == (12, 2.0)
    assert ticks[-1] is None and len(ticks) == 6 + 30 + 1
    assert [(r.name, r.users, r.requests) for r in sequence.results] == [("steady", 12, 300)]


def test_the_spike_jumps_within_seconds_and_judges_before_during_and_recovery() -> None:
    phases = list(spike_plan(LoadOptions(baseline_users=10, spike_users=50, spike_seconds=30, ramp_seconds=10)))
    assert [(p.name, p.users, p.judged) for p in phases] == [
        ("ramp", 10, False),
        ("before", 10, True),
        ("spike", 50, True),
        ("recovery", 10, True),
    ]
    assert phases[2].spawn_rate == 20  # 40 more users within 2 seconds


def test_a_run_stopped_early_judges_the_phase_it_was_in(thresholds: Thresholds) -> None:
    stats = FakeStats()
    sequence = PhaseSequence([Phase("steady", 5, 600, 5)], thresholds, stats.snapshot)
    run(sequence, stats, 30, lambda _users: 40)
    sequence.finish()
    assert [(r.name, r.requests) for r in sequence.results] == [("steady", 310)]
    assert sequence.stop_reason == "stopped during phase 'steady', before the plan ended"
    assert sequence.tick(stats.now) is None
