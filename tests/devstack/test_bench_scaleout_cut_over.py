"""The live scale-out run rides out a write cut-over that gives up, as an operator would.

The engine's own behaviour (an aborted freeze leaves writes where they were) is tested in tests/moves; here
the bench's part: it retries ``switch-writes`` with the same limits (never a longer lock wait), lowers the
offered load only after the retries at the full load gave up, always restores it, and records every attempt.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from bench import bench_scaleout
from bench.bench_scaleout import CutOverPolicy, MoveFailed, Timeline, cut_over

GAVE_UP = (
    "LockTimedOut: In-flight writes on shard2 did not finish within the lock timeout (0.3s): PID 42 holds "
    "RowExclusiveLock on content_generation. Gave up after 3 attempt(s); End or wait out the transaction named "
    "above, then retry."
)


class QuietWatch:
    """Stands in for the sampler of pg_stat_activity, which needs a server."""

    def __enter__(self) -> QuietWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def summary(self, longer_than: float) -> dict[str, Any]:
        return {"server": "pg2", "write_transactions": 0, "longer": 0, "longer_than_s": longer_than,
                "p95_age_s": None, "max_age_s": None, "states_when_longer": {}, "examples": [],
                "server_cpu": 0.0, "server_throttled_share": 0.0}  # fmt: skip


class Load:
    """The offered load, lowered and restored through the callables the bench hands to ``cut_over``."""

    def __init__(self, rate: float, lowered: float) -> None:
        self.rate, self.lowered = rate, lowered

    def lower(self) -> Any:
        before, self.rate = self.rate, self.lowered

        def restore() -> None:
            self.rate = before

        return restore


def engine_answering(monkeypatch: pytest.MonkeyPatch, load: Load, codes: list[int]) -> list[tuple[Any, ...]]:
    """``shardmove`` answers with ``codes`` in turn; returns each command it got with the load offered then."""
    calls: list[tuple[Any, ...]] = []

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        code = codes[len(calls)]
        calls.append((command, load.rate))
        return subprocess.CompletedProcess(command, code, stdout="", stderr=GAVE_UP if code else "")

    monkeypatch.setattr(bench_scaleout, "run_shardmove", run)
    return calls


def test_a_cut_over_that_gives_up_is_retried_then_run_at_the_lowered_load_which_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load = Load(rate=120.0, lowered=90.0)
    calls = engine_answering(monkeypatch, load, [1, 1, 0])
    timeline = Timeline()

    cut_over(timeline, "to 4 servers (b)", CutOverPolicy(retries=1, lowered_retries=2, pause=0), load.lower, QuietWatch)

    # the same command every time: the freeze's limits are never loosened to get through
    assert {command for command, _ in calls} == {("switch-writes", "--max-freeze", "2", "--attempts", "3")}
    assert [rate for _, rate in calls] == [120.0, 120.0, 90.0]
    assert load.rate == 120.0
    assert [label for label, _, _ in timeline.phases] == [
        "to 4 servers (b): switch-writes given up",
        "to 4 servers (b): switch-writes given up",
        "to 4 servers (b): switch-writes",
    ]
    assert [(c["ok"], c["lowered_load"]) for c in timeline.cut_overs] == [(False, False), (False, False), (True, True)]
    assert all("PID 42" in what for _, what in timeline.events)


def test_a_cut_over_done_at_once_leaves_the_load_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    load = Load(rate=120.0, lowered=90.0)
    calls = engine_answering(monkeypatch, load, [0])
    timeline = Timeline()

    cut_over(timeline, "to 2 servers", CutOverPolicy(retries=1, lowered_retries=2, pause=0), load.lower, QuietWatch)

    assert [rate for _, rate in calls] == [120.0]
    assert [label for label, _, _ in timeline.phases] == ["to 2 servers: switch-writes"]
    assert timeline.events == []


def test_a_cut_over_that_never_gets_its_lock_stops_the_run_with_the_load_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load = Load(rate=120.0, lowered=90.0)
    calls = engine_answering(monkeypatch, load, [1, 1, 1, 1])
    timeline = Timeline()

    with pytest.raises(MoveFailed, match="gave up 4 times"):
        cut_over(timeline, "to 2 servers", CutOverPolicy(retries=1, lowered_retries=2, pause=0), load.lower, QuietWatch)

    assert [rate for _, rate in calls] == [120.0, 120.0, 90.0, 90.0]
    assert load.rate == 120.0
