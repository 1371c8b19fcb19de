"""The same reports computed the expensive way: scatter-gather over the live shards.

This is what every cross-shard question cost before the warehouse. It stays
as an independent reference (tests compare the warehouse with it) and as the
baseline of the benchmark; pages and commands never use it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import BigIntegerField, Count, F, Func, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from apps.content.models import Generation, UsageEvent
from shardrouter.mapstore import load_map_from_database
from shardrouter.scatter import scatter

from .facts import NO_MODEL
from .reports import ReportResult, report_spec


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _window(qs: QuerySet[Any], since: date, until: date) -> QuerySet[Any]:
    return qs.filter(created_at__gte=_start(since), created_at__lt=_start(until + timedelta(days=1)))


def _day() -> TruncDate:
    return TruncDate("created_at", tzinfo=UTC)


def _octets(field: str) -> Func:
    return Func(F(field), function="octet_length", output_field=BigIntegerField())


def _gather(model: Any, fn: Callable[[QuerySet[Any]], list[Any]]) -> list[Any]:
    outcome = scatter(model.objects.all(), fn)
    return [row for rows in outcome.results.values() for row in rows]


def percentile_cont(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def generations(since: date, until: date) -> list[tuple[Any, ...]]:
    rows = _gather(
        Generation,
        lambda qs: list(
            _window(qs, since, until)
            .annotate(day=_day())
            .values("day", "status", "model_name")
            .annotate(n=Count("id"), pt=Sum("prompt_tokens"), ct=Sum("completion_tokens"))
            .values_list("day", "status", "model_name", "n", "pt", "ct")
        ),
    )
    merged: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for day, status, model, n, pt, ct in rows:
        totals = merged[(day, status, model or NO_MODEL)]
        totals[0] += n
        totals[1] += pt or 0
        totals[2] += ct or 0
    return [(*key, n, pt, ct, pt + ct) for key, (n, pt, ct) in sorted(merged.items())]


def active_users(since: date, until: date) -> list[tuple[Any, ...]]:
    pairs = _gather(
        Generation,
        lambda qs: list(
            _window(qs, since - timedelta(days=29), until).annotate(day=_day()).values_list("day", "user_id").distinct()
        ),
    )
    by_day: dict[date, set[int]] = defaultdict(set)
    for day, user in pairs:
        by_day[day].add(user)
    rows = []
    for day in sorted(d for d in by_day if since <= d <= until):

        def users(span: int, day: date = day) -> int:
            return len(set().union(*(by_day.get(day - timedelta(days=i), set()) for i in range(span))))

        rows.append((day, len(by_day[day]), users(7), users(30)))
    return rows


def top_users(since: date, until: date) -> list[tuple[Any, ...]]:
    rows = _gather(
        Generation,
        lambda qs: list(
            _window(qs, since, until)
            .values("user_id")
            .annotate(n=Count("id"), t=Sum(F("prompt_tokens") + F("completion_tokens")))
            .values_list("user_id", "n", "t")
        ),
    )
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for user, n, t in rows:
        totals[user][0] += n
        totals[user][1] += t or 0
    names = dict(get_user_model().objects.filter(id__in=list(totals)).values_list("id", "username"))
    ranked = sorted(totals.items(), key=lambda item: (-item[1][1], item[0]))[:20]
    return [(user, names.get(user, ""), n, t) for user, (n, t) in ranked]


def latency(since: date, until: date) -> list[tuple[Any, ...]]:
    rows = _gather(
        Generation,
        lambda qs: list(
            _window(qs, since, until)
            .filter(status=Generation.Status.SUCCEEDED, total_ms__isnull=False)
            .annotate(day=_day())
            .values_list("day", "total_ms")
        ),
    )
    by_day: dict[date, list[float]] = defaultdict(list)
    for day, value in rows:
        by_day[day].append(value)
    return [
        (day, len(values), percentile_cont(values, 0.5), percentile_cont(values, 0.95))
        for day, values in sorted(by_day.items())
    ]


def shard_capacity(since: date, until: date) -> list[tuple[Any, ...]]:
    generation_rows = _gather(
        Generation,
        lambda qs: list(
            _window(qs, since, until)
            .annotate(day=_day())
            .values("day", "user_id")
            .annotate(
                n=Count("id"),
                b=Sum(Coalesce(_octets("prompt"), 0) + Coalesce(_octets("output"), 0) + Coalesce(_octets("error"), 0)),
            )
            .values_list("day", "user_id", "n", "b")
        ),
    )
    usage_rows = _gather(
        UsageEvent,
        lambda qs: list(
            _window(qs, since, until)
            .annotate(day=_day())
            .values("day", "user_id")
            .annotate(n=Count("id"))
            .values_list("day", "user_id", "n")
        ),
    )
    shard_map = load_map_from_database()
    totals: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for day, user, n, b in generation_rows:
        key = (day, shard_map.write_alias(user))
        totals[key][0] += n
        totals[key][1] += b or 0
    for day, user, n in usage_rows:
        totals[(day, shard_map.write_alias(user))][0] += n
    return [(day, alias, n, b) for (day, alias), (n, b) in sorted(totals.items())]


COMPUTE: dict[str, Callable[[date, date], list[tuple[Any, ...]]]] = {
    "generations": generations,
    "active-users": active_users,
    "top-users": top_users,
    "latency": latency,
    "shard-capacity": shard_capacity,
}


def run_report_on_shards(name: str, *, since: date, until: date) -> ReportResult:
    spec = report_spec(name)
    return ReportResult(spec.name, spec.title, spec.columns, COMPUTE[name](since, until), since, until)
