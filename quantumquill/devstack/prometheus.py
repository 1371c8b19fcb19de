"""A Prometheus server for the platform on this machine: ``make observe`` and the observability tests.

Runs Debian's ``prometheus`` binary (scripts/system-deps.sh installs it) on a
loopback port with its data under ``work_dir``, scraping the given targets
with the alert rules of deploy/prometheus/rules loaded.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deploy.render_prometheus import PrometheusSettings, render_prometheus_config


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        raise RuntimeError(
            "Prometheus is not installed; run scripts/system-deps.sh (Debian: apt-get install prometheus)."
        )
    return found


class PrometheusQueryError(RuntimeError):
    """Prometheus refused or failed a query."""


@dataclass
class PrometheusServer:
    port: int
    work_dir: Path
    settings: PrometheusSettings
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "prometheus.log"

    def start(self, *, timeout: float = 30) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "prometheus.yml"
        config.write_text(render_prometheus_config(self.settings))
        self._log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.work_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=2d",
                "--web.enable-lifecycle",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not become ready within {timeout:.0f}s:\n{self._tail()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (``[{"metric": {...}, "value": [ts, "v"]}, ...]``)."""
        data = self.api("query", query=expr)
        result = data["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    def value(self, expr: str) -> float | None:
        """The single value of a query that yields one series (None when it yields none)."""
        result = self.query(expr)
        if not result:
            return None
        return float(result[0]["value"][1])

    def firing(self, alertname: str) -> list[dict[str, str]]:
        """Labels of each firing instance of ``alertname``."""
        alerts = self.api("alerts")["alerts"]
        return [a["labels"] for a in alerts if a["labels"].get("alertname") == alertname and a["state"] == "firing"]

    def targets_up(self, job: str) -> int:
        return sum(1 for t in self.api("targets")["activeTargets"] if t["labels"]["job"] == job and t["health"] == "up")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
