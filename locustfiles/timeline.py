"""What users saw during each step of an operation run under load: requests, failures, latency per window.

Input: the request log (``requestlog.py``) and the operation's steps with
their start and end times. Output: one row per window (the quiet time before,
each step, the time between steps) and the failed and slowest requests around
the steps that matter most (a write cut-over).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .thresholds import percentile


@dataclass(frozen=True)
class Request:
    end: float
    type: str
    name: str
    response_ms: float
    failed: bool
    error: str

    @property
    def start(self) -> float:
        return self.end - self.response_ms / 1000


@dataclass(frozen=True)
class Step:
    name: str
    started: float
    ended: float
    ok: bool = True


@dataclass(frozen=True)
class WindowRow:
    window: str
    seconds: float
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    max_ms: float


def read_request_log(path: Path) -> list[Request]:
    with path.open(newline="") as source:
        return [
            Request(
                float(row["end"]),
                row["type"],
                row["name"],
                float(row["response_ms"]),
                row["failed"] == "1",
                row["error"],
            )
            for row in csv.DictReader(source)
        ]


def _row(label: str, start: float, end: float, requests: Iterable[Request]) -> WindowRow:
    # A request belongs to the window it was in flight in at any moment.
    inside = [r for r in requests if r.end >= start and r.start < end]
    times: dict[int, int] = {}
    for request in inside:
        times[round(request.response_ms)] = times.get(round(request.response_ms), 0) + 1
    return WindowRow(
        window=label,
        seconds=round(end - start, 1),
        requests=len(inside),
        failures=sum(r.failed for r in inside),
        p50_ms=percentile(times, 0.5),
        p95_ms=percentile(times, 0.95),
        max_ms=max((r.response_ms for r in inside), default=0.0),
    )


def windows(requests: list[Request], steps: list[Step], *, begin: float, finish: float) -> list[WindowRow]:
    """Rows for: before the first step, each step, each gap between steps, after the last one."""
    rows = []
    cursor = begin
    for step in steps:
        if step.started > cursor:
            rows.append(_row(f"before {step.name}", cursor, step.started, requests))
        rows.append(_row(f"during {step.name}", step.started, step.ended, requests))
        cursor = step.ended
    if finish > cursor:
        rows.append(_row("after the last step", cursor, finish, requests))
    return rows


def around(requests: list[Request], step: Step, *, margin: float = 5.0) -> list[Request]:
    """Requests in flight from ``margin`` seconds before a step to ``margin`` seconds after it."""
    return [r for r in requests if r.end >= step.started - margin and r.start < step.ended + margin]


def markdown_table(rows: list[WindowRow]) -> str:
    lines = ["| window | s | requests | failed | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r.window} | {r.seconds} | {r.requests} | {r.failures} | {r.p50_ms:.0f} | {r.p95_ms:.0f} | {r.max_ms:.0f} |"
        for r in rows
    ]
    return "\n".join(lines)
