"""``/metrics`` of a Django process tree, single- or multi-process.

gunicorn and Celery prefork run several processes behind one scrape target.
With ``PROMETHEUS_MULTIPROC_DIR`` set (it must be set before the processes
start, and emptied when the server starts: ``prepare_multiprocess_dir``), each
process writes its samples to files there and a scrape sums them through
``MultiProcessCollector``. Without it (``runserver``, the test client) the
process's own registry is served.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .pending import request_observations

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The query latency histogram (metrics.py) and the statement counter derived from its count at scrape time.
DB_QUERY_DURATION = "qq_db_query_duration_seconds"
DB_QUERIES = "qq_db_queries"
DB_QUERIES_HELP = "SQL statements executed, by database alias."


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV, "")
    return Path(value) if value else None


def ensure_multiprocess_dir() -> None:
    """Create the multi-process folder if it is missing: metrics write there from their first value."""
    folder = multiprocess_dir()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)


def prepare_multiprocess_dir() -> None:
    """Empty (and create) the multi-process folder: call once when a server starts, before its workers fork.

    Files left by a previous run would otherwise be summed into the new one's counters.
    """
    folder = multiprocess_dir()
    if folder is None:
        return
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def process_exiting() -> None:
    """This process is about to exit: write the request metrics it still holds in memory (``pending.py``)."""
    request_observations.flush()


def process_exited(pid: int) -> None:
    """A worker process ended: drop its live-gauge files (its counters stay summed, as they should)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


def scrape_registry(*extra: Collector) -> CollectorRegistry:
    """The registry to render for one scrape: every process's samples, plus ``extra`` collectors."""
    registry = CollectorRegistry()
    if multiprocess_dir() is None:
        registry.register(_WithQueryCounts(REGISTRY))
    else:
        registry.register(_WithQueryCounts(multiprocess.MultiProcessCollector(None)))
    for collector in extra:
        registry.register(collector)
    return registry


def render(*extra: Collector) -> bytes:
    request_observations.flush()  # this process's own requests, up to the last one
    return generate_latest(scrape_registry(*extra))


class _WithQueryCounts(Collector):
    """``source``'s metrics plus ``qq_db_queries_total{alias}``, read off the query latency histogram's count.

    Every statement is observed once in ``qq_db_query_duration_seconds``, so its ``_count`` is the number of
    statements: exporting it again as the counter costs nothing per statement, where a counter of its own
    was one more shared-memory write on every query (docs/observability.md, "What it costs").
    """

    def __init__(self, source: CollectorRegistry | Collector) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            yield family
            if family.name == DB_QUERY_DURATION:
                yield _query_counts(family)


def _query_counts(histogram: Metric) -> CounterMetricFamily:
    counts = CounterMetricFamily(DB_QUERIES, DB_QUERIES_HELP, labels=["alias"])
    for sample in histogram.samples:
        if sample.name == f"{DB_QUERY_DURATION}_count":
            counts.add_metric([sample.labels["alias"]], sample.value)
    return counts


def serve_in_background(port: int, host: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` of this process tree on ``host:port`` (the Celery worker's main process uses it)."""
    return start_http_server(port, addr=host, registry=scrape_registry())
