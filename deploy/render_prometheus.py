"""A Prometheus configuration that scrapes the platform, with the alert rules of deploy/prometheus/rules.

python deploy/render_prometheus.py --web 10.0.0.11:8000 --worker 10.0.0.21:9808 --contentgen 10.0.0.31:9464

Jobs: ``quantumquill-web`` (each app server's ``/metrics``: every worker process summed, plus the cluster
snapshot), ``quantumquill-worker`` (each Celery worker's metrics port), ``contentgen`` (each generation
service replica's metrics port). The alert rules and the dashboard use these job names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RULES_DIR = Path(__file__).resolve().parent / "prometheus" / "rules"
WEB_JOB, WORKER_JOB, CONTENTGEN_JOB = "quantumquill-web", "quantumquill-worker", "contentgen"


@dataclass(frozen=True)
class PrometheusSettings:
    web: Sequence[str] = field(default_factory=list)
    workers: Sequence[str] = field(default_factory=list)
    contentgen: Sequence[str] = field(default_factory=list)
    scrape_interval: str = "15s"
    rule_files: Sequence[str] = field(default_factory=lambda: [str(RULES_DIR / "*.yml")])


def render_prometheus_config(settings: PrometheusSettings) -> str:
    """The YAML of ``prometheus.yml`` for these targets."""
    jobs = [(WEB_JOB, settings.web), (WORKER_JOB, settings.workers), (CONTENTGEN_JOB, settings.contentgen)]
    config = {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "evaluation_interval": settings.scrape_interval,
            # A scrape must end before the next one starts.
            "scrape_timeout": settings.scrape_interval,
        },
        "rule_files": list(settings.rule_files),
        "scrape_configs": [
            {"job_name": name, "metrics_path": "/metrics", "static_configs": [{"targets": list(targets)}]}
            for name, targets in jobs
            if targets
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--web", action="append", default=[], help="an app server's host:port (repeat)")
    parser.add_argument("--worker", action="append", default=[], help="a Celery worker's metrics host:port (repeat)")
    parser.add_argument("--contentgen", action="append", default=[], help="a generation service's metrics host:port")
    parser.add_argument("--interval", default="15s", help="scrape and rule evaluation interval (default 15s)")
    args = parser.parse_args(argv)
    if not (args.web or args.worker or args.contentgen):
        parser.error("name at least one target (--web, --worker or --contentgen)")
    settings = PrometheusSettings(args.web, args.worker, args.contentgen, args.interval)
    sys.stdout.write(render_prometheus_config(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
