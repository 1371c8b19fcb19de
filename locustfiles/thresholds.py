"""The service level we hold the platform to, read from thresholds.toml, and the check against it.

Plain data in, a verdict out: the same check judges a whole run (the CI gate,
when Locust quits), one step of the stress shape, and the live "Service level"
tab of the web UI.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ThresholdsError(ValueError):
    """thresholds.toml is missing or malformed; the message names the file and the key."""


@dataclass(frozen=True)
class EndpointStats:
    """One Locust statistics entry (or the part of it inside a time window)."""

    name: str
    method: str
    requests: int
    failures: int
    response_times: Mapping[int, int]


@dataclass(frozen=True)
class GroupThreshold:
    name: str
    prefixes: tuple[str, ...]
    p95_ms: float | None
    max_failure_ratio: float | None
    required: bool
    why: str

    def matches(self, entry_name: str) -> bool:
        return entry_name.startswith(self.prefixes)


@dataclass(frozen=True)
class Thresholds:
    source: str
    max_failure_ratio: float
    min_requests: int
    min_group_requests: int
    max_exceptions: int
    groups: tuple[GroupThreshold, ...]
    soak_max_rss_growth_mb_per_hour: float | None = None


@dataclass(frozen=True)
class Check:
    """One line of the verdict: what was measured against which limit."""

    subject: str
    measured: str
    limit: str
    passed: bool | None  # None: not judged (too few requests)
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]
    totals: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed is not False for check in self.checks)

    @property
    def failed_checks(self) -> list[Check]:
        return [check for check in self.checks if check.passed is False]


def _number(table: Mapping[str, Any], key: str, where: str, *, default: float | None = None) -> float | None:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ThresholdsError(f"{where}: {key} must be a non-negative number, got {value!r}")
    return float(value)


def load_thresholds(path: str | Path) -> Thresholds:
    """Read and validate a thresholds file; raises ThresholdsError with the file and key on any problem."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ThresholdsError(f"thresholds file {file} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdsError(f"{file} is not valid TOML: {exc}") from None
    gate = data.get("gate")
    if not isinstance(gate, dict):
        raise ThresholdsError(f"{file}: a [gate] table is required")
    groups = []
    for name, table in (data.get("groups") or {}).items():
        where = f"{file} [groups.{name}]"
        prefixes = table.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes or not all(isinstance(p, str) and p for p in prefixes):
            raise ThresholdsError(f"{where}: prefixes must be a non-empty list of request-name prefixes")
        groups.append(
            GroupThreshold(
                name=name,
                prefixes=tuple(prefixes),
                p95_ms=_number(table, "p95_ms", where),
                max_failure_ratio=_number(table, "max_failure_ratio", where),
                required=bool(table.get("required", False)),
                why=str(table.get("why", "")),
            )
        )
    soak = data.get("soak") or {}
    return Thresholds(
        source=str(file),
        max_failure_ratio=_number(gate, "max_failure_ratio", f"{file} [gate]", default=0.01) or 0.0,
        min_requests=int(_number(gate, "min_requests", f"{file} [gate]", default=1) or 0),
        min_group_requests=int(_number(gate, "min_group_requests", f"{file} [gate]", default=20) or 0),
        max_exceptions=int(_number(gate, "max_exceptions", f"{file} [gate]", default=0) or 0),
        groups=tuple(groups),
        soak_max_rss_growth_mb_per_hour=_number(soak, "max_rss_growth_mb_per_hour", f"{file} [soak]"),
    )


def percentile(response_times: Mapping[int, int], fraction: float) -> float:
    """The response time that ``fraction`` of the requests finished within (Locust's bucketed times)."""
    total = sum(response_times.values())
    if total == 0:
        return 0.0
    rank = fraction * total
    seen = 0
    for value in sorted(response_times):
        seen += response_times[value]
        if seen >= rank:
            return float(value)
    return float(max(response_times))


def merge(entries: Iterable[EndpointStats]) -> tuple[int, int, dict[int, int]]:
    requests = failures = 0
    merged: dict[int, int] = {}
    for entry in entries:
        requests += entry.requests
        failures += entry.failures
        for value, count in entry.response_times.items():
            merged[value] = merged.get(value, 0) + count
    return requests, failures, merged


def _ratio(failures: int, requests: int) -> float:
    return failures / requests if requests else 0.0


def evaluate(
    entries: Iterable[EndpointStats], thresholds: Thresholds, *, exceptions: int = 0, mode: str = "run"
) -> Verdict:
    """Judge statistics against the thresholds: overall failure ratio, then each group's p95 and failures.

    A group with fewer than ``min_group_requests`` requests is not judged
    (a p95 of a handful of samples is noise) unless it is ``required``, in
    which case too little traffic is itself a failure. ``mode``: ``"run"``
    judges a finished run; ``"live"`` a run still going (too little traffic is
    not a failure yet); ``"window"`` a part of a run such as a stress step,
    where run length and required traffic mean nothing.
    """
    if mode not in ("run", "live", "window"):
        raise ValueError(f"mode must be 'run', 'live' or 'window', got {mode!r}")
    entries = list(entries)
    requests, failures, merged = merge(entries)
    checks = []
    if mode != "window":
        enough = requests >= thresholds.min_requests
        checks.append(
            Check(
                "run length",
                f"{requests} requests",
                f">= {thresholds.min_requests}",
                enough if mode == "run" or enough else None,
                "" if mode == "run" or enough else "judged when the run ends",
            )
        )
        checks.append(
            Check(
                "errors in the load scripts",
                f"{exceptions}",
                f"<= {thresholds.max_exceptions}",
                exceptions <= thresholds.max_exceptions,
            )
        )
    ratio = _ratio(failures, requests)
    checks.append(
        Check(
            "all requests",
            f"failure ratio {ratio:.2%} ({failures}/{requests})",
            f"<= {thresholds.max_failure_ratio:.2%}",
            ratio <= thresholds.max_failure_ratio if requests else None,
        )
    )
    for group in thresholds.groups:
        g_requests, g_failures, g_times = merge(e for e in entries if group.matches(e.name))
        too_few = g_requests < thresholds.min_group_requests
        if too_few:
            if group.required and mode == "run":
                checks.append(
                    Check(
                        group.name,
                        f"{g_requests} requests",
                        f">= {thresholds.min_group_requests}",
                        False,
                        "required group got too little traffic",
                    )
                )
            else:
                checks.append(Check(group.name, f"{g_requests} requests", "-", None, "too few requests to judge"))
            continue
        if group.p95_ms is not None:
            p95 = percentile(g_times, 0.95)
            checks.append(Check(group.name, f"p95 {p95:.0f} ms", f"<= {group.p95_ms:.0f} ms", p95 <= group.p95_ms))
        if group.max_failure_ratio is not None:
            g_ratio = _ratio(g_failures, g_requests)
            checks.append(
                Check(
                    group.name,
                    f"failure ratio {g_ratio:.2%} ({g_failures}/{g_requests})",
                    f"<= {group.max_failure_ratio:.2%}",
                    g_ratio <= group.max_failure_ratio,
                )
            )
    totals = {
        "requests": requests,
        "failures": failures,
        "failure_ratio": ratio,
        "p50_ms": percentile(merged, 0.50),
        "p95_ms": percentile(merged, 0.95),
    }
    return Verdict(tuple(checks), totals)
