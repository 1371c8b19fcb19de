"""The staff analytics page: every figure comes from the warehouse, never from the shards."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe

from .charts import bar_chart, line_chart
from .conf import get_config
from .engines import warehouse
from .errors import WarehouseError, WarehouseUnavailable
from .reports import ReportResult, parse_day, report_window, run_report_on

RETRY_AFTER_SECONDS = 30


def _days(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def _per_day(result: ReportResult, days: list[date], column: str, *, where: Any = None) -> list[float]:
    totals: dict[date, float] = defaultdict(float)
    for row in result.as_dicts():
        if where is None or where(row):
            totals[row["day"]] += float(row[column] or 0)
    return [totals.get(d, 0.0) for d in days]


def build_charts(results: dict[str, ReportResult], days: list[date]) -> list[dict[str, Any]]:
    labels = [d.strftime("%m-%d") for d in days]
    generations = results["generations"]
    models = sorted({row["model"] for row in generations.as_dicts()})
    latency = results["latency"]
    capacity = results["shard-capacity"]
    shards = sorted({row["shard"] for row in capacity.as_dicts()})
    active = results["active-users"]
    top = results["top-users"]
    charts = [
        ("Tokens per day, by model", line_chart(
            "Tokens per day by model", labels,
            {m: _per_day(generations, days, "tokens", where=lambda r, m=m: r["model"] == m) for m in models},
        )),
        ("Generations per day, by status", line_chart(
            "Generations per day by status", labels,
            {s: _per_day(generations, days, "generations", where=lambda r, s=s: r["status"] == s)
             for s in sorted({row["status"] for row in generations.as_dicts()})},
        )),
        ("Active users (daily, 7-day, 30-day)", line_chart(
            "Active users", labels, {k: _per_day(active, days, k) for k in ("dau", "wau", "mau")},
        )),
        ("Generation latency (ms)", line_chart(
            "Latency p50 and p95", labels, {"p50": _per_day(latency, days, "p50_ms"), "p95": _per_day(latency, days, "p95_ms")},
        )),
        ("Rows written per shard per day", line_chart(
            "Rows per shard per day", labels,
            {s: _per_day(capacity, days, "rows", where=lambda r, s=s: r["shard"] == s) for s in shards},
        )),
        ("Top users by tokens", bar_chart(
            "Top users by tokens", [str(r[1] or r[0]) for r in top.rows], [float(r[3]) for r in top.rows],
        )),
    ]  # fmt: skip
    return [{"title": title, "svg": mark_safe(svg)} for title, svg in charts]


@login_required
def analytics_view(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        return render(request, "analytics/forbidden.html", status=403)
    try:
        since_arg, until_arg = request.GET.get("since"), request.GET.get("until")
        since, until = report_window(
            parse_day(since_arg, option="since") if since_arg else None,
            parse_day(until_arg, option="until") if until_arg else None,
        )
        if (until - since).days > 366:
            raise WarehouseError("The window is longer than a year; choose a shorter one.")
    except WarehouseError as exc:
        return render(request, "analytics/index.html", {"error": str(exc)}, status=400)
    config = get_config()
    try:
        with warehouse(config, read_only=True) as wh:
            names = ("generations", "active-users", "top-users", "latency", "shard-capacity")
            results = {name: run_report_on(wh, name, since=since, until=until) for name in names}
    except WarehouseUnavailable as exc:
        response = render(request, "analytics/unavailable.html", {"reason": str(exc)}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    days = _days(since, until)
    context = {
        "since": since,
        "until": until,
        "charts": build_charts(results, days),
        "top_users": results["top-users"].as_dicts(),
        "engine": config.label,
    }
    return render(request, "analytics/index.html", context)
