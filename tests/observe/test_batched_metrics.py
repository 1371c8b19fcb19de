"""The request path's metrics are written in batches (apps.observability.pending) and still say exactly what happened.

Invariants: totals written in one batch scrape exactly as the same values observed one by one; a scrape sees
every request once its worker has flushed; a worker that exits writes what it still held, so the summed series
count every request a stopped server answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from apps.observability import metrics
from apps.observability.context import RequestStats
from quantumquill.devstack.stack import free_port
from quantumquill.devstack.web import GunicornServer
from tests.conftest import ALL_DATABASES, child_env
from tests.observe.conftest import json_lines
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]

# In its own process: prometheus_client picks multi-process mode when it is first imported. The same values
# (bucket bounds exactly, between them, past the last one) go one by one into one label set and through a batch
# into another; their scraped samples must be the same.
_BATCH_EQUALS_ONE_BY_ONE = """
from apps.observability import exposition, metrics
from apps.observability.pending import PendingObservations
values = [0.0004, 0.0005, 0.001, 0.0011, 0.003, 0.05, 0.2, 1.0, 4.9, 5.0, 7.5, 0.0] * 3
direct, batched = metrics.db_query_duration.labels("direct"), metrics.db_query_duration.labels("batched")
requests_direct = metrics.http_requests.labels("direct", "GET", "200")
requests_batched = metrics.http_requests.labels("batched", "GET", "200")
pending = PendingObservations(interval=3600)
for n, value in enumerate(values):
    direct.observe(value)
    requests_direct.inc()
    pending.add((requests_batched,), [(batched, value)] if n % 2 else [(batched, value), (batched, 0.0)])
    if n % 2 == 0:
        direct.observe(0.0)
    if n == 7:
        pending.flush()  # totals written in two batches add up
pending.flush()
pending.flush()  # nothing left: writes nothing
print(exposition.render().decode())
"""


def _samples(text: str, label: str, value: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get(label) == value:
                rest = tuple(sorted((k, v) for k, v in sample.labels.items() if k != label))
                found[(sample.name, rest)] = sample.value
    return found


def test_totals_written_in_batches_scrape_exactly_as_the_values_observed_one_by_one(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", _BATCH_EQUALS_ONE_BY_ONE], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    direct = _samples(run.stdout, "alias", "direct")
    assert direct[("qq_db_query_duration_seconds_count", ())] == 54
    assert (
        direct[("qq_db_query_duration_seconds_bucket", (("le", "0.0005"),))] == 27
    )  # 0.0004, 0.0005 and 0.0, 3 times; 18 more 0.0
    assert _samples(run.stdout, "alias", "batched") == direct
    assert _samples(run.stdout, "view", "batched") == _samples(run.stdout, "view", "direct")
    assert _samples(run.stdout, "view", "batched")[("qq_http_requests_total", (("method", "GET"), ("status", "200")))]


def test_a_statement_that_ends_after_its_request_was_recorded_is_still_observed() -> None:
    histogram = metrics.db_query_duration.labels("late-statement")
    stats = RequestStats()
    stats.add("shard1", 0.002, histogram)
    assert stats.close() == [(histogram, 0.002)]
    before = REGISTRY.get_sample_value("qq_db_query_duration_seconds_count", {"alias": "late-statement"}) or 0.0
    stats.add("shard1", 0.003, histogram)  # e.g. a thread that was handed the request's context
    after = REGISTRY.get_sample_value("qq_db_query_duration_seconds_count", {"alias": "late-statement"})
    assert after == before + 1 and stats.queries == 2


# The process-wide batcher takes its interval from settings (QQ_METRICS_FLUSH_INTERVAL) when its writer starts:
# one value is added and never flushed by hand; the script prints whether it was written within 2 s.
_WRITER_USES_THE_CONFIGURED_INTERVAL = """
import time
import django
django.setup()
from prometheus_client import CollectorRegistry, multiprocess
from apps.observability import metrics
from apps.observability.pending import request_observations
def written():  # the value files as another process reads them (rendering /metrics would flush this one)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry.get_sample_value(
        "qq_http_requests_total", {"view": "configured-interval", "method": "GET", "status": "200"}
    ) == 1.0
request_observations.add((metrics.http_requests.labels("configured-interval", "GET", "200"),), [])
deadline = time.monotonic() + 2
while not written() and time.monotonic() < deadline:
    time.sleep(0.02)
print("written" if written() else "held")
"""


@pytest.mark.parametrize(("interval", "expected"), [("0.05", "written"), ("10", "held")])
def test_the_request_batcher_writes_at_the_configured_interval(tmp_path: Path, interval: str, expected: str) -> None:
    env = child_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path), QQ_METRICS_FLUSH_INTERVAL=interval)
    run = subprocess.run(
        [sys.executable, "-c", _WRITER_USES_THE_CONFIGURED_INTERVAL], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
        return response.status


def _home_requests(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "qq_http_requests_total" and sample.labels.get("view") == "home":
                if sample.labels["status"] == "200" and sample.labels["method"] == "GET":
                    return sample.value
    return 0.0


@pytest.mark.slow
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_a_scrape_sees_every_request_once_flushed_and_a_stopped_server_loses_none(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    # A long interval: what the second batch of requests holds in memory is written only by the workers' exit.
    env = child_env(GUNICORN_ACCESS_LOG="", PROMETHEUS_MULTIPROC_DIR=str(folder), QQ_METRICS_FLUSH_INTERVAL="5")
    server = GunicornServer("batched", free_port(), env, tmp_path, workers=2, threads=4)
    first, second = 40, 30
    try:
        server.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert list(pool.map(lambda _: _get(f"{server.url}/"), range(first))) == [200] * first

        def scraped() -> float:
            with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
                return _home_requests(response.read().decode())

        wait_until(lambda: scraped() == first, timeout=30, what=f"{first} requests on /metrics", poll=0.5)
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert list(pool.map(lambda _: _get(f"{server.url}/"), range(second))) == [200] * second
    finally:
        server.stop(timeout=20)

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    assert _home_requests(generate_latest(registry).decode()) == first + second
    pids = {line["pid"] for line in json_lines(server.log_file) if line.get("view") == "home"}
    assert len(pids) == 2, f"the requests should have been spread over both workers: {pids}"
