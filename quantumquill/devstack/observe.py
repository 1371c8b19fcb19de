"""``make observe``: Prometheus scraping the platform ``make run`` started, with the alert rules loaded."""

from __future__ import annotations

import signal
import time

from deploy.render_prometheus import PrometheusSettings

from .prometheus import PrometheusServer, prometheus_binary
from .run import CONTENTGEN_METRICS_PORT, WORKER_METRICS_PORT
from .stack import PROFILES

PROMETHEUS_PORT = 59090


def observe(*, port: int = PROMETHEUS_PORT, interval: str = "5s") -> int:
    try:
        prometheus_binary()
    except RuntimeError as exc:
        print(f"{exc} `make observe` needs it; everything else works without it.")
        return 1
    server = PrometheusServer(
        port,
        PROFILES["dev"].data_dir / "prometheus",
        PrometheusSettings(
            web=["127.0.0.1:8000"],
            workers=[f"127.0.0.1:{WORKER_METRICS_PORT}"],
            contentgen=[f"127.0.0.1:{CONTENTGEN_METRICS_PORT}"],
            scrape_interval=interval,
        ),
    )
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    server.start()
    print(
        f"\nPrometheus is up: {server.url}  (scraping `make run` every {interval}; alerts at {server.url}/alerts)\n"
        f"Dashboard for Grafana: deploy/grafana/quantumquill.json. Ctrl-C stops Prometheus.\n",
        flush=True,
    )
    try:
        while not stopping and server.process is not None and server.process.poll() is None:
            time.sleep(0.3)
    finally:
        server.stop()
    return 0
