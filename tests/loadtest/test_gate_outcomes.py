"""The CI gate's outcomes other than a pass: a violated threshold, the stress and soak shapes, SIGTERM.

None of them judges latency against the clock (the thresholds they use are impossible on purpose, or they
check what a run reports and leaves behind), so they run in the parallel part of ``make test``, on the
parallel worker's platform; the judged baseline runs alone (test_gate.py).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from locustfiles.localplatform import LocalPlatform
from locustfiles.options import DEFAULT_THRESHOLDS
from tests.loadtest.conftest import REPO, run_against, summary_of

pytestmark = pytest.mark.slow


def impossible_thresholds(tmp_path: Path) -> Path:
    """The shipped thresholds with pages held to 1 ms, judged from a handful of requests (short runs)."""
    path = tmp_path / "impossible.toml"
    text = DEFAULT_THRESHOLDS.read_text()
    text = re.sub(r"(?s)(\[groups\.pages\].*?p95_ms = )\d+", r"\g<1>1", text, count=1)
    text = text.replace("min_group_requests = 20", "min_group_requests = 3")
    path.write_text(text)
    assert "p95_ms = 1\n" in text and "min_group_requests = 3\n" in text
    return path


def test_the_gate_fails_with_a_non_zero_exit_when_a_threshold_is_violated(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    run = run_against(
        platform,
        "--shape",
        "baseline",
        "--thresholds",
        str(impossible_thresholds(tmp_path)),
        "--reports-dir",
        str(tmp_path / "reports"),
        "--",
        "--baseline-users",
        "6",
        "--ramp-seconds",
        "2",
        "--run-seconds",
        "12",
    )
    assert run.code == 1, run.output
    assert "Load test FAILED its thresholds" in run.output
    summary = summary_of(run.output)
    assert summary["passed"] is False
    failed = [check for check in summary["checks"] if check["verdict"] == "FAIL"]
    assert any(check["subject"] == "pages" and check["limit"] == "<= 1 ms" for check in failed), failed


def test_the_stress_shape_stops_at_the_step_that_breaks_and_reports_it(platform: LocalPlatform, tmp_path: Path) -> None:
    run = run_against(
        platform,
        "--shape",
        "stress",
        "--thresholds",
        str(impossible_thresholds(tmp_path)),
        "--reports-dir",
        str(tmp_path / "reports"),
        "--",
        "--stress-start-users",
        "4",
        "--stress-step-seconds",
        "8",
    )
    # Stress is meant to break: finding the break point is its result, not a failure of the run.
    assert run.code == 0, run.output
    shape = summary_of(run.output)["shape"]
    assert shape["broke_at"]["name"] == "step 1" and shape["broke_at"]["users"] == 4
    assert "pages: p95" in shape["broke_at"]["problems"]
    assert shape["stopped_because"].startswith("service level broke at step 1 (4 users")


@pytest.mark.parametrize("by", ["pid", "discovery"])
def test_the_soak_samples_the_app_servers_worker_memory(platform: LocalPlatform, tmp_path: Path, by: str) -> None:
    pid = platform.gunicorn_pidfile.read_text().strip() if by == "pid" else "0"
    run = run_against(
        platform,
        "--shape",
        "soak",
        "--reports-dir",
        str(tmp_path / "reports"),
        "--",
        "--baseline-users",
        "4",
        "--ramp-seconds",
        "2",
        "--run-seconds",
        "8",
        "--soak-sample-seconds",
        "1",
        "--app-pid",
        pid,
    )
    shape = summary_of(run.output)["shape"]
    samples = shape["memory_samples"]
    assert len(samples) >= 6, shape
    assert {sample["workers"] for sample in samples} == {platform.settings.app_workers}
    assert all(sample["workers_rss_mb"] > 20 for sample in samples)
    assert shape["memory_trend"]["samples"] == len(samples)
    assert list((tmp_path / "reports").glob("soak-*/memory.csv")), "the soak wrote memory.csv"


def test_sigterm_stops_locust_and_the_platform_the_launcher_started() -> None:
    """A CI timeout or a supervisor ends the run: reports are written and nothing is left running."""
    workdir = REPO / "var" / "loadtest-sigterm"
    launcher = subprocess.Popen(
        [
            *(sys.executable, "-m", "locustfiles.run", "--headless", "--private-platform", str(workdir)),
            *("--seed-users", "4", "--reports-dir", str(workdir / "reports")),
            *("--", "--run-seconds", "600", "--baseline-users", "2"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert launcher.stdout is not None
    lines = []
    for line in launcher.stdout:
        lines.append(line)
        if "phase 'steady'" in line:
            break
    gunicorn = int((workdir / "logs" / "gunicorn.pid").read_text())
    state = json.loads((workdir / "stack" / "stack.json").read_text())
    launcher.send_signal(signal.SIGTERM)
    output = "".join(lines) + launcher.communicate(timeout=120)[0]
    assert "Stopping the embedded servers" in output, output
    assert "Traceback" not in output
    assert not Path(f"/proc/{gunicorn}").exists(), "gunicorn was stopped"
    assert not (workdir / "stack").exists(), "the private platform's servers' files went with it"
    for port in state["ports"].values():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"nothing listens on {port} any more"
    reports = list((workdir / "reports").glob("baseline-*"))
    assert reports and (reports[-1] / "summary.json").exists() and (reports[-1] / "stats_stats.csv").exists()
