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
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess, start_http_server
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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


def process_exited(pid: int) -> None:
    """A worker process ended: drop its live-gauge files (its counters stay summed, as they should)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


def scrape_registry(*extra: Collector) -> CollectorRegistry:
    """The registry to render for one scrape: every process's samples, plus ``extra`` collectors."""
    if multiprocess_dir() is None:
        if not extra:
            return REGISTRY
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    for collector in extra:
        registry.register(collector)
    return registry


def render(*extra: Collector) -> bytes:
    return generate_latest(scrape_registry(*extra))


class _Forward(Collector):
    """The default registry's metrics inside another registry (single-process mode)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self):
        return self.source.collect()


def serve_in_background(port: int, host: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` of this process tree on ``host:port`` (the Celery worker's main process uses it)."""
    return start_http_server(port, addr=host, registry=scrape_registry())
