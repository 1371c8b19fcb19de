"""Daily aggregates and dimensions, recomputed for exactly the days a batch of changes touched."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from .engines import Warehouse


def refresh_days(wh: Warehouse, days: Iterable[date]) -> None:
    """Recompute ``agg_*`` for the span of ``days`` from the facts; add those days and models to the dimensions.

    The span (first to last day touched) rather than the exact set keeps it to a few statements: a follow batch
    touches today (and the day of a row created earlier and changed now), an initial load every day.
    """
    wanted = sorted({d for d in days if d.year > 1970})
    if not wanted:
        return
    span = [wanted[0], wanted[-1]]
    wh.execute("DELETE FROM agg_generation_daily WHERE day BETWEEN %s AND %s", span)
    wh.execute(
        "INSERT INTO agg_generation_daily (day, model_name, status, generations, prompt_tokens, completion_tokens) "
        "SELECT day, model_name, status, count(*), sum(prompt_tokens), sum(completion_tokens) "
        "FROM fact_generation WHERE NOT deleted AND day BETWEEN %s AND %s GROUP BY day, model_name, status",
        span,
    )
    wh.execute("DELETE FROM agg_user_daily WHERE day BETWEEN %s AND %s", span)
    # After an initial load this is a day x user row for most of the facts: into an empty table, the index is
    # built once afterwards.
    with wh.indexes_after("agg_user_daily"):
        wh.execute(
            "INSERT INTO agg_user_daily (day, user_id, generations, tokens, usage_events, rows_written, bytes_written) "
            "SELECT day, user_id, sum(g), sum(t), sum(u), sum(g) + sum(u), sum(b) FROM ("
            " SELECT day, user_id, 1 AS g, prompt_tokens + completion_tokens AS t, 0 AS u, "
            "  prompt_bytes + output_bytes + error_bytes AS b "
            " FROM fact_generation WHERE NOT deleted AND day BETWEEN %s AND %s"
            " UNION ALL SELECT day, user_id, 0, 0, 1, 0 FROM fact_usage "
            " WHERE NOT deleted AND day BETWEEN %s AND %s) x GROUP BY day, user_id",
            [*span, *span],
        )
    wh.execute(
        "INSERT INTO dim_day (day, week, month, weekday) "
        "SELECT DISTINCT day, day - CAST(extract(isodow FROM day) AS INTEGER) + 1, "
        "CAST(date_trunc('month', day) AS DATE), CAST(extract(isodow FROM day) AS INTEGER) "
        "FROM agg_user_daily WHERE day BETWEEN %s AND %s AND day NOT IN (SELECT day FROM dim_day)",
        span,
    )
    wh.execute(
        "INSERT INTO dim_model (model_name, first_day) SELECT model_name, min(day) FROM agg_generation_daily "
        "WHERE day BETWEEN %s AND %s AND model_name NOT IN (SELECT model_name FROM dim_model) GROUP BY model_name",
        span,
    )


STALE_KEY = "stale_days"


def mark_stale(wh: Warehouse, days: Iterable[date]) -> None:
    """Record (with the facts, in their transaction) that the aggregates of these days are to be recomputed."""
    wanted = sorted({d for d in days if d.year > 1970})
    if not wanted:
        return
    current = meta(wh, STALE_KEY)
    if current:
        first, last = (date.fromisoformat(d) for d in current.split(","))
        wanted = [min(first, wanted[0]), max(last, wanted[-1])]
    set_meta(wh, STALE_KEY, f"{wanted[0].isoformat()},{wanted[-1].isoformat()}")


def refresh_stale(wh: Warehouse) -> None:
    """Recompute the days ``mark_stale`` recorded, then forget them, in one transaction."""
    current = meta(wh, STALE_KEY)
    if not current:
        return
    with wh.transaction():
        refresh_days(wh, [date.fromisoformat(d) for d in current.split(",")])
        wh.execute("DELETE FROM wh_meta WHERE key = %s", [STALE_KEY])


def replace_users(wh: Warehouse, users: list[tuple[int, str, bool, datetime | None]]) -> None:
    wh.execute("DELETE FROM dim_user")
    wh.insert_rows(
        "dim_user",
        ("user_id", "username", "is_staff", "date_joined"),
        [(uid, name, staff, joined.replace(tzinfo=None) if joined else None) for uid, name, staff, joined in users],
    )


def replace_shard_ranges(wh: Warehouse, version: int, ranges: list[tuple[int, int, str]]) -> None:
    wh.execute("DELETE FROM dim_shard_range")
    wh.executemany(
        "INSERT INTO dim_shard_range (lo, hi, alias, map_version) VALUES (%s, %s, %s, %s)",
        [(lo, hi, alias, version) for lo, hi, alias in ranges],
    )


def meta(wh: Warehouse, key: str) -> str | None:
    row = wh.fetchone("SELECT value FROM wh_meta WHERE key = %s", [key])
    return None if row is None else str(row[0])


def set_meta(wh: Warehouse, key: str, value: Any) -> None:
    wh.execute(
        "INSERT INTO wh_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, str(value)],
    )
