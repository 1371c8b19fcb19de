"""Distributed load generation: a headless master and two worker processes against the real platform.

Invariant: every request a worker's users make counts in the master's totals (the master's report is the sum of
its workers' requests, no worker's share lost or counted twice), and both workers take part.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from locustfiles.distributed import worker_request_log
from locustfiles.localplatform import LocalPlatform
from quantumquill.devstack.stack import free_port
from tests.loadtest.conftest import REPO, launch, run_against

pytestmark = pytest.mark.slow


def master_total(output: str) -> tuple[int, int]:
    """(requests, failures) of the master's Aggregated row in its stats CSV."""
    report_dir = Path(output.rsplit("Reports: ", 1)[1].split()[0])
    with (report_dir / "stats_stats.csv").open() as stats:
        aggregated = next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")
    return int(aggregated["Request Count"]), int(aggregated["Failure Count"])


def logged_requests(path: Path) -> int:
    with path.open() as log:
        return sum(1 for _ in csv.DictReader(log))


def test_two_workers_report_into_one_master_and_all_their_requests_count(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    request_log = tmp_path / "requests.csv"
    run = run_against(
        platform,
        "--workers",
        "2",
        "--master-port",
        str(free_port()),
        "--user-classes",
        "WebUser,ApiUser",
        "--request-log",
        str(request_log),
        "--reports-dir",
        str(tmp_path / "reports"),
        "--shape",
        "baseline",
        "--",
        "--baseline-users",
        "12",
        "--ramp-seconds",
        "3",
        "--run-seconds",
        "10",
    )
    # The latency verdict depends on how busy the machine is (the CI gate judges it); this test is about counting.
    assert run.code in (0, 1) and "Traceback" not in run.output, run.output
    assert "2 local worker(s)" in run.output and "2 workers connected" in run.output

    per_worker = [logged_requests(Path(worker_request_log(str(request_log), index))) for index in (1, 2)]
    assert all(count > 0 for count in per_worker), f"both workers ran users: {per_worker}"
    requests, failures = master_total(run.output)
    assert requests == sum(per_worker), (requests, per_worker)
    assert failures == 0

    # The master judged the whole run (a worker writes no summary of its own share over it).
    summary = json.loads((Path(run.output.rsplit("Reports: ", 1)[1].split()[0]) / "summary.json").read_text())
    checks = {check["subject"]: check for check in summary["checks"]}
    assert checks["errors in the load scripts"]["verdict"] == "ok", checks


def test_a_worker_started_elsewhere_with_master_host_joins_and_its_requests_count(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """As on another machine: a second launcher runs only a worker, pointed at the master by --master-host."""
    port = str(free_port())
    remote_log = tmp_path / "remote" / "requests.csv"
    remote = subprocess.Popen(
        [
            *(sys.executable, "-m", "locustfiles.run"),
            *("--master-host", "127.0.0.1", "--master-port", port, "--request-log", str(remote_log)),
        ],
        cwd=REPO,
        env={**os.environ, "CONTENTGEN_TOKEN": platform.contentgen_token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        local_log = tmp_path / "local" / "requests.csv"
        run = run_against(
            platform,
            "--workers",
            "1",
            "--expect-workers",
            "2",
            "--master-port",
            port,
            "--user-classes",
            "WebUser",
            "--request-log",
            str(local_log),
            "--reports-dir",
            str(tmp_path / "reports"),
            "--shape",
            "baseline",
            "--",
            "--baseline-users",
            "6",
            "--ramp-seconds",
            "3",
            "--run-seconds",
            "8",
        )
        remote_output, _ = remote.communicate(timeout=60)  # the worker leaves when its master quits
    finally:
        if remote.poll() is None:
            remote.kill()
            remote.wait(timeout=10)
    assert run.code in (0, 1) and "Traceback" not in run.output, run.output
    assert "2 workers connected" in run.output
    assert "1 worker(s) joining the master at 127.0.0.1:" in remote_output, remote_output
    assert remote.returncode == 0, remote_output

    per_worker = [logged_requests(Path(worker_request_log(str(log), 1))) for log in (local_log, remote_log)]
    assert all(count > 0 for count in per_worker), (per_worker, run.output, remote_output)
    assert master_total(run.output)[0] == sum(per_worker), (master_total(run.output), per_worker)


def test_too_few_expected_workers_are_refused_before_anything_starts() -> None:
    run = launch("--headless", "--workers", "3", "--expect-workers", "2")
    assert run.code == 1, run.output
    assert "--expect-workers 2 is fewer than the 3 worker(s) started here" in run.output
    assert "Traceback" not in run.output
