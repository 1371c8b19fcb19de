"""Daily aggregates and dimensions, recomputed for exactly the days a batch of changes touched."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from .engines import Warehouse

_CHUNK = 500


def _chunks(days: list[date]) -> Iterable[list[date]]:
    for i in range(0, len(days), _CHUNK):
        yield days[i : i + _CHUNK]


def refresh_days(wh: Warehouse, days: Iterable[date]) -> None:
    """Recompute ``agg_*`` for ``days`` from the facts and add them (and their models) to the dimensions."""
    wanted = sorted({d for d in days if d.year > 1970})
    for chunk in _chunks(wanted):
        marks = ", ".join(["%s"] * len(chunk))
        wh.execute(f"DELETE FROM agg_generation_daily WHERE day IN ({marks})", chunk)
        wh.execute(
            "INSERT INTO agg_generation_daily (day, model_name, status, generations, prompt_tokens, completion_tokens) "
            "SELECT day, model_name, status, count(*), sum(prompt_tokens), sum(completion_tokens) "
            f"FROM fact_generation WHERE NOT deleted AND day IN ({marks}) GROUP BY day, model_name, status",
            chunk,
        )
        wh.execute(f"DELETE FROM agg_user_daily WHERE day IN ({marks})", chunk)
        wh.execute(
            "INSERT INTO agg_user_daily (day, user_id, generations, tokens, usage_events, rows_written, bytes_written) "
            "SELECT day, user_id, sum(g), sum(t), sum(u), sum(g) + sum(u), sum(b) FROM ("
            " SELECT day, user_id, 1 AS g, prompt_tokens + completion_tokens AS t, 0 AS u, "
            "  prompt_bytes + output_bytes + error_bytes AS b "
            f" FROM fact_generation WHERE NOT deleted AND day IN ({marks})"
            " UNION ALL SELECT day, user_id, 0, 0, 1, 0 FROM fact_usage "
            f" WHERE NOT deleted AND day IN ({marks})) x GROUP BY day, user_id",
            [*chunk, *chunk],
        )
        wh.executemany(
            "INSERT INTO dim_day (day, week, month, weekday) VALUES (%s, %s, %s, %s) ON CONFLICT (day) DO NOTHING",
            [(d, d - timedelta(days=d.weekday()), d.replace(day=1), d.isoweekday()) for d in chunk],
        )
        wh.execute(
            "INSERT INTO dim_model (model_name, first_day) SELECT model_name, min(day) FROM agg_generation_daily "
            f"WHERE day IN ({marks}) GROUP BY model_name ON CONFLICT (model_name) DO UPDATE "
            "SET first_day = least(dim_model.first_day, excluded.first_day)",
            chunk,
        )


def replace_users(wh: Warehouse, users: list[tuple[int, str, bool, datetime | None]]) -> None:
    wh.execute("DELETE FROM dim_user")
    wh.executemany(
        "INSERT INTO dim_user (user_id, username, is_staff, date_joined) VALUES (%s, %s, %s, %s)",
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
