"""Ctrl-C ends a load test through Locust's own shutdown, whatever greenlet is running when it arrives."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.loadtest.conftest import REPO
from tests.support import wait_until

pytestmark = pytest.mark.slow

# A shape whose tick keeps the CPU for most of every second, so the interrupt almost
# always lands inside it: the case where Python would raise KeyboardInterrupt in the
# shape's greenlet and Locust would die with a traceback and no HTML report.
BUSY_LOCUSTFILE = """
import time

from locust import LoadTestShape, User, constant, task

import locustfiles.locustfile  # noqa: F401  (our hooks, as in every real run)


class Idle(User):
    wait_time = constant(1)

    @task
    def nothing(self):
        pass


class BusyShape(LoadTestShape):
    def tick(self):
        started = time.monotonic()
        while time.monotonic() - started < 0.95:
            pass
        return (1, 1)
"""


def test_ctrl_c_during_a_busy_shape_tick_writes_reports_without_a_traceback(tmp_path: Path) -> None:
    locustfile = tmp_path / "busy.py"
    locustfile.write_text(BUSY_LOCUSTFILE)
    html = tmp_path / "report.html"
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--html", str(html), "Idle"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(locust.stdout or ()), daemon=True)
    reader.start()
    try:
        # Locust logs this line as its shape greenlet starts ticking: from then on, most of every second is tick.
        wait_until(
            lambda: any("Shape worker starting" in line for line in lines) or locust.poll() is not None,
            timeout=60,
            what="Locust to start the shape",
        )
        assert locust.poll() is None, "".join(lines)
        locust.send_signal(signal.SIGINT)
        locust.wait(timeout=60)
    finally:
        if locust.poll() is None:
            locust.kill()
            locust.wait()
    reader.join(timeout=10)
    output = "".join(lines)
    assert "Exiting due to CTRL+C interruption" in output, output
    assert "Traceback" not in output, output
    assert html.exists(), "Locust wrote its HTML report on the way out"
