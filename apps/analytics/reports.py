"""The named reports, read from the warehouse only (selectors: they never write, never touch a shard)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from .conf import WarehouseConfig
from .engines import Warehouse, warehouse
from .errors import WarehouseError, WarehouseUnavailable

DEFAULT_DAYS = 30


@dataclass(frozen=True)
class ReportSpec:
    name: str
    title: str
    columns: tuple[str, ...]
    sql: str  # parameters: since, until (dates, inclusive)


@dataclass(frozen=True)
class ReportResult:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    since: date
    until: date

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]


REPORTS: dict[str, ReportSpec] = {
    spec.name: spec
    for spec in (
        ReportSpec(
            "generations",
            "Generations and tokens per day, by status and model",
            ("day", "status", "model", "generations", "prompt_tokens", "completion_tokens", "tokens"),
            "SELECT day, status, model_name, sum(generations), sum(prompt_tokens), sum(completion_tokens), "
            "sum(prompt_tokens + completion_tokens) FROM agg_generation_daily WHERE day BETWEEN %s AND %s "
            "GROUP BY day, status, model_name ORDER BY day, status, model_name",
        ),
        ReportSpec(
            "active-users",
            "Daily, weekly (7 days) and monthly (30 days) active users",
            ("day", "dau", "wau", "mau"),
            "SELECT d.day, count(*), "
            "(SELECT count(DISTINCT w.user_id) FROM agg_user_daily w "
            " WHERE w.generations > 0 AND w.day BETWEEN d.day - 6 AND d.day), "
            "(SELECT count(DISTINCT m.user_id) FROM agg_user_daily m "
            " WHERE m.generations > 0 AND m.day BETWEEN d.day - 29 AND d.day) "
            "FROM agg_user_daily d WHERE d.generations > 0 AND d.day BETWEEN %s AND %s GROUP BY d.day ORDER BY d.day",
        ),
        ReportSpec(
            "top-users",
            "Top users by tokens",
            ("user_id", "username", "generations", "tokens"),
            "SELECT a.user_id, coalesce(u.username, ''), sum(a.generations), sum(a.tokens) FROM agg_user_daily a "
            "LEFT JOIN dim_user u ON u.user_id = a.user_id WHERE a.day BETWEEN %s AND %s "
            "GROUP BY a.user_id, u.username HAVING sum(a.generations) > 0 ORDER BY sum(a.tokens) DESC, a.user_id LIMIT 20",
        ),
        ReportSpec(
            "latency",
            "Generation latency per day (succeeded generations, ms)",
            ("day", "generations", "p50_ms", "p95_ms"),
            "SELECT day, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY total_ms), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY total_ms) FROM fact_generation "
            "WHERE NOT deleted AND status = 'succeeded' AND total_ms IS NOT NULL AND day BETWEEN %s AND %s "
            "GROUP BY day ORDER BY day",
        ),
        ReportSpec(
            "shard-capacity",
            "Rows and bytes written per shard per day (capacity planning)",
            ("day", "shard", "rows", "bytes"),
            "SELECT a.day, s.alias, sum(a.rows_written), sum(a.bytes_written) FROM agg_user_daily a "
            "JOIN dim_shard_range s ON a.user_id >= s.lo AND a.user_id < s.hi WHERE a.day BETWEEN %s AND %s "
            "GROUP BY a.day, s.alias ORDER BY a.day, s.alias",
        ),
    )
}


def report_spec(name: str) -> ReportSpec:
    try:
        return REPORTS[name]
    except KeyError:
        raise WarehouseError(f"Unknown report {name!r}; the reports are: {', '.join(REPORTS)}.") from None


def parse_day(value: str, *, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise WarehouseError(f"{option} {value!r} is not a date; expected YYYY-MM-DD, e.g. 2026-12-01.") from None


def report_window(since: date | None, until: date | None, *, today: date | None = None) -> tuple[date, date]:
    until = until or (today or datetime.now(UTC).date())
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise WarehouseError(f"--since {since} is after --until {until}; give a window that starts before it ends.")
    return since, until


def _normalise(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, Decimal):  # sums of integers on PostgreSQL
        return int(value) if value == int(value) else float(value)
    return value


def run_report_on(wh: Warehouse, name: str, *, since: date, until: date) -> ReportResult:
    spec = report_spec(name)
    try:
        found = wh.fetchall(spec.sql, [since, until])
    except wh.missing_table:
        raise WarehouseUnavailable("The warehouse is empty; run `manage.py warehouse sync` to load it.") from None
    rows = [tuple(_normalise(v) for v in row) for row in found]
    return ReportResult(spec.name, spec.title, spec.columns, rows, since, until)


def run_report(
    config: WarehouseConfig, name: str, *, since: date | None = None, until: date | None = None
) -> ReportResult:
    """A report over ``[since, until]`` (both inclusive; by default the last 30 days)."""
    report_spec(name)
    since, until = report_window(since, until)
    with warehouse(config, read_only=True) as wh:
        return run_report_on(wh, name, since=since, until=until)
