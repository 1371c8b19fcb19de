"""What users saw during each step of a data move: the windows of the migration-under-load report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from locustfiles.requestlog import RequestLog
from locustfiles.timeline import Request, Step, around, read_request_log, windows
from tests.loadtest.conftest import REPO


def request(end: float, ms: float, failed: bool = False) -> Request:
    return Request(end, "GET", "page: list", ms, failed, "HTTP 500" if failed else "")


def test_each_request_counts_in_every_window_it_was_in_flight_in() -> None:
    requests = [request(101, 10), request(105.2, 400), request(106, 50, failed=True), request(112, 20)]
    steps = [Step("switch-writes", 105.0, 105.5)]
    rows = {
        row.window: (row.requests, row.failures, row.max_ms) for row in windows(requests, steps, begin=100, finish=115)
    }
    assert rows == {
        "before switch-writes": (2, 0, 400),  # the 400 ms request started at 104.8, before the step
        "during switch-writes": (1, 0, 400),
        "after the last step": (2, 1, 50),
    }


def test_around_a_cut_over_means_five_seconds_either_side() -> None:
    requests = [request(90, 10), request(96, 10), request(103, 10), request(111, 10)]
    nearby = around(requests, Step("switch-reads", 100, 102), margin=5)
    assert [r.end for r in nearby] == [96, 103]


def test_the_request_log_round_trips(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.csv")
    log.on_request(request_type="GET", name="page: detail", response_time=12.34, exception=None)
    log.on_request(request_type="SSE", name="stream: complete (page)", response_time=900, exception=ValueError("x"))
    log.close()
    rows = read_request_log(tmp_path / "requests.csv")
    assert [(r.type, r.name, r.response_ms, r.failed, r.error) for r in rows] == [
        ("GET", "page: detail", 12.3, False, ""),
        ("SSE", "stream: complete (page)", 900.0, True, "x"),
    ]


@pytest.mark.slow
def test_the_migration_script_refuses_an_empty_range_before_starting_anything() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/migration_under_load.py", "--lo", "10", "--hi", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "need 0 <= --lo < --hi" in done.stderr
    assert "Traceback" not in done.stderr
