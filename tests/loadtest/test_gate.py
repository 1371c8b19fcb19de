"""The CI gate: a short headless baseline against the real platform processes, judged by thresholds.toml.

Runs inside ``make test``, alone (it judges latency). Reports of the gate run go to ``reports/ci-gate/``
(CSV, HTML, summary.md) for CI to keep as artefacts. The gate's other outcomes (a violated threshold, the
stress and soak shapes, SIGTERM) judge nothing against the clock and run with the rest of the suite
(test_gate_outcomes.py).
"""

from __future__ import annotations

import psycopg
import pytest

from locustfiles.localplatform import LocalPlatform
from tests.loadtest.conftest import REPO, run_against, summary_of

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # judged against thresholds.toml: alone, after the parallel part

GATE_REPORTS = REPO / "reports" / "ci-gate"
# A max_tokens no seeded generation has, to tell the rows the run wrote from the seeded history.
RUN_MAX_TOKENS = "37"


def generations_written_by_the_run(platform: LocalPlatform) -> dict[str, int]:
    assert platform.stack is not None
    shards = dict(part.split("=", 1) for part in platform.stack.env()["SHARD_DATABASE_URLS"].split(","))
    counts = {}
    for alias in ("shard1", "shard2"):
        with psycopg.connect(shards[alias].replace("postgres://", "postgresql://")) as conn:
            row = conn.execute("SELECT count(*) FROM content_generation WHERE max_tokens = %s", [int(RUN_MAX_TOKENS)])
            counts[alias] = row.fetchone()[0]  # type: ignore[index]
    return counts


def test_the_baseline_meets_the_thresholds_with_load_on_every_shard(platform: LocalPlatform) -> None:
    run = run_against(
        platform,
        "--shape",
        "baseline",
        "--reports-dir",
        str(GATE_REPORTS),
        "--",
        "--baseline-users",
        "12",
        "--ramp-seconds",
        "10",  # about one login a second, as at steady traffic; a burst of logins is a stress test
        "--run-seconds",
        "30",
        "--max-tokens",
        RUN_MAX_TOKENS,
    )
    assert run.code == 0, run.output
    summary = summary_of(run.output)
    assert summary["passed"] is True
    judged = {check["subject"] for check in summary["checks"] if check["verdict"] == "ok"}
    every_group = {"pages", "auth", "api", "stream_first_chunk", "stream_complete", "grpc"}
    assert every_group <= judged, summary["checks"]
    assert [phase["name"] for phase in summary["shape"]["phases"]] == ["steady"]
    written = generations_written_by_the_run(platform)
    assert written["shard1"] > 0 and written["shard2"] > 0, written
