"""Django's PostgreSQL backend, measured: every statement and every failed connect counted per alias.

Set as each database's ENGINE by the settings, so every alias (the control
database and each shard) reports ``qq_db_queries_total{alias}``, its latency
histogram, its errors and its failed connects without touching the queries
themselves. An execute wrapper is Django's documented hook for this; the
connect override catches what a wrapper cannot see (a server that is down
fails before any statement runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db.backends.postgresql import base

from apps.observability import metrics
from apps.observability.context import current_stats


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(_measure(self.alias))

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        try:
            return super().get_new_connection(conn_params)
        except Exception:
            metrics.db_connection_errors.labels(self.alias).inc()
            raise


def _measure(alias: str) -> Callable[..., Any]:
    # One observation per statement; its count is also exported as qq_db_queries_total (exposition.py). Inside a
    # request the statement is handed to the request's stats and observed with the request's other values when it
    # ends (apps.observability.pending); elsewhere (jobs, commands) it is observed here.
    duration = metrics.db_query_duration.labels(alias)
    get_stats = current_stats.get
    clock = time.perf_counter

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        started = clock()
        try:
            return execute(sql, params, many, context)
        except Exception as exc:
            metrics.db_query_errors.labels(alias, type(exc).__name__).inc()
            raise
        finally:
            seconds = clock() - started
            stats = get_stats()
            if stats is None:
                duration.observe(seconds)
            else:
                stats.add(alias, seconds, duration)

    return wrapper
