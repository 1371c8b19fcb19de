"""Statistics of a time window of a run: the difference of two snapshots of Locust's cumulative stats.

Locust keeps cumulative counts and response-time histograms per entry; a
stress step or the seconds around a spike are judged on their own window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .thresholds import EndpointStats

if TYPE_CHECKING:
    from locust.stats import RequestStats


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # time.monotonic()
    entries: dict[tuple[str, str], EndpointStats]


def endpoint_stats(stats: RequestStats) -> list[EndpointStats]:
    """Every entry of Locust's statistics as plain data (the whole run so far)."""
    return [
        EndpointStats(
            entry.name, entry.method or "", entry.num_requests, entry.num_failures, dict(entry.response_times)
        )
        for entry in stats.entries.values()
    ]


def take_snapshot(stats: RequestStats) -> Snapshot:
    return Snapshot(time.monotonic(), {(e.name, e.method): e for e in endpoint_stats(stats)})


def window(start: Snapshot, end: Snapshot) -> list[EndpointStats]:
    """What happened between two snapshots; an entry reset in between (web UI "reset stats") counts from zero."""
    result = []
    for key, last in end.entries.items():
        first = start.entries.get(key)
        if first is None or first.requests > last.requests:
            result.append(last)
            continue
        times = {
            value: count - first.response_times.get(value, 0)
            for value, count in last.response_times.items()
            if count - first.response_times.get(value, 0) > 0
        }
        result.append(
            EndpointStats(last.name, last.method, last.requests - first.requests, last.failures - first.failures, times)
        )
    return [entry for entry in result if entry.requests > 0]


def requests_per_second(entries: list[EndpointStats], seconds: float) -> float:
    return sum(entry.requests for entry in entries) / seconds if seconds > 0 else 0.0
