"""The request path's observations, added up in memory and written to the multi-process value files in batches.

In multi-process mode (gunicorn, ``exposition.py``) every counter increment and every histogram observation
of ``prometheus_client`` is a write into a memory-mapped file: a process-wide lock, a ``getpid()`` (to notice
a fork) and a pack of 16 bytes, twice for a histogram (its sum and one bucket). A page with three statements
made nine of them, in the middle of the request, and in a busy server each costs several times what it does
in a tight loop. Here a request adds its observations to per-process totals instead (one lock, a few float
additions), and the totals are written to the value files by a thread of the process every
``QQ_METRICS_FLUSH_INTERVAL`` seconds (default 1): a handful of writes per interval, whatever the traffic.

Why the numbers stay exact:

- Nothing is dropped or counted twice: a flush takes the totals and writes them under one lock, so an
  observation is in exactly one flush. The values written are the same sums and bucket counts that one
  ``observe`` per value would have written (``bisect`` finds the same bucket as ``Histogram.observe``).
- A scrape sees a request at most one interval after it ended (``/metrics`` also writes its own process's
  totals before answering). Prometheus scrapes every 15-60 s and alerts and dashboards take ``rate()`` over
  minutes, so a delay under a second changes no alert and no graph; a scrape never sees a count go down.
- A worker that exits writes its totals first: gunicorn's ``worker_exit`` hook (every exit but SIGKILL:
  ``max_requests``, HUP, TERM, a timed-out worker's abort), and ``atexit`` for any other server. What it
  wrote stays in its files, which ``child_exit`` / ``mark_process_dead`` keep summed, as before.
- A worker killed with SIGKILL (the OOM killer) loses what it had not yet written: at most one interval of
  its requests, where with a write per value it lost only the requests it was answering. Counters still
  never go down; the loss is bounded by the interval (set it lower to bound it tighter, at more writes).

Only the request path (the HTTP counter and latency histogram, and the statements run inside a request) is
batched; everything else (errors, Celery jobs, statements outside a request) is written as it happens. In
single-process mode (``runserver``, tests) a value is a float behind a lock, already cheap, so there is no
batching and every observation is visible at once.

The batch adds to a histogram's ``_sum`` and ``_buckets`` value objects: ``prometheus_client`` has no public
call for "observe these totals". ``tests/observe/test_batched_metrics.py`` checks that a scrape of batched
observations equals one of the same observations made one by one, so a change in the library fails there.
"""

from __future__ import annotations

import atexit
import os
import threading
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client.metrics import Counter, Histogram


class _HistogramTotals:
    """Observations of one histogram child not yet written: their sum and the count per bucket."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, histogram: Histogram) -> None:
        self.bounds: list[float] = list(histogram._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0


class PendingObservations:
    """Per-process totals of counter increments and histogram observations, written every ``interval`` seconds."""

    def __init__(self, interval: float | None = None) -> None:
        # None: ``QQ_METRICS["FLUSH_INTERVAL"]``, read when the writer starts (settings are ready by then).
        self.interval = interval
        self._lock = threading.Lock()
        self._histograms: dict[Histogram, _HistogramTotals] = {}
        self._counters: dict[Counter, int] = {}
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()
        os.register_at_fork(after_in_child=self._forget_parent)
        atexit.register(self.flush)

    def add(self, counters: Iterable[Counter], observations: Iterable[tuple[Histogram, float]]) -> None:
        """Count each counter child once and observe each ``(histogram child, value)``; written at the next flush."""
        with self._lock:
            if self._writer is None:
                self._start_writer()
            pending_counters = self._counters
            for counter in counters:
                pending_counters[counter] = pending_counters.get(counter, 0) + 1
            histograms = self._histograms
            for histogram, value in observations:
                totals = histograms.get(histogram)
                if totals is None:
                    totals = histograms[histogram] = _HistogramTotals(histogram)
                totals.total += value
                totals.counts[bisect_left(totals.bounds, value)] += 1

    def flush(self) -> None:
        """Write every total not yet written to the value files (each observation exactly once)."""
        with self._lock:  # held while writing, so an exiting process's flush waits for the writer's
            histograms, self._histograms = self._histograms, {}
            counters, self._counters = self._counters, {}
            for histogram, totals in histograms.items():
                histogram._sum.inc(totals.total)
                for bucket, count in zip(histogram._buckets, totals.counts, strict=True):
                    if count:
                        bucket.inc(count)
            for counter, count in counters.items():
                counter.inc(count)

    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._write_every_interval, name="qq-metrics-writer", daemon=True)
        self._writer.start()

    def _write_every_interval(self) -> None:
        interval = self.interval if self.interval is not None else _configured_interval()
        while not self._stop.wait(interval):
            self.flush()

    def _forget_parent(self) -> None:
        # A forked child starts with no totals (its parent writes its own) and no writer thread (fork keeps none).
        self._lock = threading.Lock()
        self._histograms, self._counters = {}, {}
        self._writer = None
        self._stop = threading.Event()


def _configured_interval() -> float:
    from django.conf import settings

    return float(settings.QQ_METRICS["FLUSH_INTERVAL"])


# One per process: the value files are per process too.
request_observations = PendingObservations()
