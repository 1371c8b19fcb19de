"""`make observe` starts Prometheus on the platform `make run` serves, rules loaded, and says where it is."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from quantumquill.devstack.stack import REPO_ROOT, free_port
from tests.support import wait_until

pytestmark = pytest.mark.slow


def api(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=5) as response:
        return dict(json.loads(response.read())["data"])


def test_observe_scrapes_web_worker_and_service_with_the_rules_loaded(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "observe.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "quantumquill.devstack", "observe", "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "Prometheus is up" in log.read_text(), timeout=30, what="Prometheus to start")
        assert re.search(rf"http://127\.0\.0\.1:{port}\b", log.read_text())
        targets = wait_until(lambda: api(port, "targets")["activeTargets"], timeout=10, what="scrape targets")
        assert {(t["labels"]["job"], t["labels"]["instance"]) for t in targets} == {
            ("quantumquill-web", "127.0.0.1:8000"),
            ("quantumquill-worker", "127.0.0.1:55808"),
            ("contentgen", "127.0.0.1:55464"),
        }
        groups = api(port, "rules")["groups"]
        assert any(rule["name"] == "ShardUnreachable" for group in groups for rule in group["rules"])
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
