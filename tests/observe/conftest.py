"""The platform as real processes with a real Prometheus scraping it every second.

Two gunicorn workers (one app server), a Celery worker, the generation service,
and Prometheus with the alert rules of deploy/prometheus/rules loaded. Started
once per module: the tests only add requests, generations and faults, each
measured as a difference or waited for by label. PROMETHEUS_MULTIPROC_DIR is
left unset: gunicorn and the Celery worker must sum their processes by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.render_prometheus import PrometheusSettings
from quantumquill.devstack.prometheus import PrometheusServer
from quantumquill.devstack.stack import free_port
from quantumquill.devstack.web import GunicornServer
from tests.contentgen.conftest import TOKEN, ServerProcess, _factory
from tests.generation.conftest import TUNING, Worker, start_worker
from tests.observe.otlp import OtlpReceiver

# Measured once per second, so an alert needs only its `for:` plus a couple of seconds.
CLUSTER_INTERVAL = "1"


@dataclass
class Platform:
    web: GunicornServer
    worker: Worker
    worker_metrics_port: int
    contentgen: ServerProcess
    prometheus: PrometheusServer
    log_dir: Path
    traces: OtlpReceiver

    def web_log_lines(self) -> list[dict[str, Any]]:
        return json_lines(self.web.log_file)

    def worker_log_lines(self) -> list[dict[str, Any]]:
        return json_lines(self.worker.log_path)

    def contentgen_log_lines(self) -> list[dict[str, Any]]:
        return json_lines(self.contentgen.log_path)


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


@pytest.fixture(scope="module")
def platform(
    django_db_setup: Any,
    django_db_blocker: Any,
    model_cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    from tests.conftest import child_env

    log_dir = tmp_path_factory.mktemp("observe")
    servers: list[ServerProcess] = []
    traces = OtlpReceiver().start()
    started: list[Any] = [traces]
    # Every process exports its spans to the receiver, quickly (the batch delay is 5 s by default).
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": traces.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    try:
        contentgen = _factory(model_cache_dir, log_dir, servers)(
            token_interval_ms=5, env={**tracing, "OTEL_SERVICE_NAME": "contentgen"}
        )
        with django_db_blocker.unblock():
            base = child_env(
                CONTENTGEN_TARGET=contentgen.target,
                CONTENTGEN_TOKEN=TOKEN,
                QQ_METRICS_CLUSTER_INTERVAL=CLUSTER_INTERVAL,
                **TUNING,
                **tracing,
            )
        worker_port = free_port()
        worker = start_worker(
            log_dir / "worker.log",
            {
                **base,
                "QQ_WORKER_METRICS_PORT": str(worker_port),
                "OTEL_SERVICE_NAME": "quantumquill-worker",
            },
        )
        started.append(worker)
        web = GunicornServer(
            "observe-web",
            free_port(),
            {
                **base,
                "GUNICORN_ACCESS_LOG": "",
                "OTEL_SERVICE_NAME": "quantumquill-web",
            },
            log_dir,
            workers=2,
            threads=4,
        )
        web.start()
        started.append(web)
        prometheus = PrometheusServer(
            free_port(),
            log_dir / "prometheus",
            PrometheusSettings(
                web=[f"127.0.0.1:{web.port}"],
                workers=[f"127.0.0.1:{worker_port}"],
                contentgen=[f"127.0.0.1:{contentgen.metrics_port}"],
                scrape_interval="1s",
            ),
        )
        prometheus.start()
        started.append(prometheus)
        yield Platform(web, worker, worker_port, contentgen, prometheus, log_dir, traces)
    finally:
        for item in reversed(started):
            item.stop()
        for server in servers:
            server.stop()
