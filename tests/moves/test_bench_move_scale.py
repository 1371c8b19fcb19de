"""The cost-curve benchmark runs end to end at a tiny size: every measurement taken, no write lost, a chart drawn.

Figures are not checked here (they belong to docs/benchmarks.md); this keeps the benchmark from rotting
when the engine or the models change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_move_scale
from tests.conftest import ALL_DATABASES, raw_rows

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


def test_two_tiny_sizes_measure_every_step_and_draw_the_chart(tmp_path: Path) -> None:
    figures, chart = tmp_path / "scale.json", tmp_path / "curves.png"

    code = bench_move_scale.main(
        ["--rows", "2000", "4000", "--freezes", "2", "--burst", "300", "--json", str(figures), "--chart", str(chart)]
    )

    assert code == 0
    results = json.loads(figures.read_text())
    sizes = results["sizes"]
    assert [s["rows"] for s in sizes] == [2000, 4000]
    for size in sizes:
        assert size["rows_copied"] == size["rows"]
        # verify reads the range and the burst written to it
        assert size["rows_verified"] == size["rows"] + 300
        assert size["burst"]["rows"] == 300 and size["burst"]["catch_up_seconds"] >= 0
        assert [f["direction"] for f in size["freezes"]] == ["switch-writes", "rollback"]
        assert size["requests"]["requests"] > 0 and size["requests"]["failed"] == 0
    assert set(results["summary"]) >= {"copy", "verify", "freeze_p50_ratio_largest_to_smallest"}
    # at a few thousand rows the times are noise: only that a line was fitted
    assert set(results["summary"]["copy"]["fit"]) == {"intercept_s", "us_per_row", "r2"}
    assert chart.read_bytes().startswith(b"\x89PNG")
    # Each size's move was cancelled: the range is back on the source only.
    assert (
        raw_rows("shard1", "SELECT count(*) FROM content_generation WHERE user_id >= 1000 AND user_id < 100000")[0][0]
        == 0
    )


def test_sizes_out_of_order_are_refused_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_move_scale.main(["--rows", "1000000", "300000"])

    assert exit_info.value.code == 2
    assert "smallest first, e.g. --rows 300000 1000000 3000000" in capsys.readouterr().err


def test_the_fit_recovers_a_straight_line_and_says_how_well_it_fits() -> None:
    rows = [300_000.0, 1_000_000.0, 3_000_000.0]

    exact = bench_move_scale.linear_fit(rows, [0.5 + 11e-6 * r for r in rows])
    bent = bench_move_scale.linear_fit(rows, [0.5 + 11e-12 * r * r for r in rows])

    assert exact["us_per_row"] == pytest.approx(11.0) and exact["intercept_s"] == pytest.approx(0.5)
    assert exact["r2"] == pytest.approx(1.0)
    assert bent["r2"] < 0.99
