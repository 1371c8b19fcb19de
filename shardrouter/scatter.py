"""Explicit cross-shard reads (scatter-gather) for operators and analytics.

Each database is asked only for the user-ID ranges it serves reads for in the
current map, so rows that exist in two places during a live move are counted
once. The per-database queries run concurrently in threads (each with its own
connection, closed afterwards); ordered results are merged and limited.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.db import connections, models
from django.db.models import Q, QuerySet

from .errors import ScatterGatherError, ShardRoutingError
from .keyspace import ShardRange
from .shardkeys import shard_key_attname
from .shardmap import current_map

M = TypeVar("M", bound=models.Model)
R = TypeVar("R")


@dataclass
class ScatterResult(Generic[R]):
    """Results per database alias, and the error of each database that failed."""

    results: dict[str, R] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _ranges_q(attname: str, ranges: Sequence[ShardRange]) -> Q:
    condition = Q()
    for item in ranges:
        condition |= Q(**{f"{attname}__gte": item.lo, f"{attname}__lt": item.hi})
    return condition


def scatter(
    queryset: QuerySet[M],
    fn: Callable[[QuerySet[M]], R],
    *,
    allow_partial: bool = False,
    timeout: float = 30.0,
) -> ScatterResult[R]:
    """Apply ``fn`` to ``queryset`` on every database, restricted to the ranges that database serves.

    ``fn`` receives the per-database queryset (already ``.using(alias)``) and
    returns anything (a list, a count, an aggregate). Raises
    ``ScatterGatherError`` if any database fails, unless ``allow_partial``.
    """
    attname = shard_key_attname(queryset.model)
    if attname is None:
        raise ShardRoutingError(f"{queryset.model._meta.label} is not sharded; query it directly.")
    plan = current_map().read_plan()

    def run(alias: str, ranges: list[ShardRange]) -> R:
        try:
            return fn(queryset.using(alias).filter(_ranges_q(attname, ranges)))
        finally:
            connections[alias].close()

    outcome: ScatterResult[R] = ScatterResult()
    with ThreadPoolExecutor(max_workers=len(plan), thread_name_prefix="scatter") as pool:
        futures = {alias: pool.submit(run, alias, ranges) for alias, ranges in plan.items()}
        for alias, future in futures.items():
            try:
                outcome.results[alias] = future.result(timeout=timeout)
            except Exception as exc:
                outcome.failures[alias] = f"{type(exc).__name__}: {exc}"
    if outcome.failures and not allow_partial:
        raise ScatterGatherError(outcome.failures)
    return outcome


def _compare(order_by: Sequence[str]) -> Callable[[Any, Any], int]:
    fields = [(name.lstrip("-"), name.startswith("-")) for name in order_by]

    def compare(a: Any, b: Any) -> int:
        for name, descending in fields:
            va, vb = getattr(a, name), getattr(b, name)
            if va == vb:
                continue
            # None sorts first ascending, last descending, as in PostgreSQL's NULLS default reversed.
            if va is None or (vb is not None and va < vb):
                result = -1
            else:
                result = 1
            return -result if descending else result
        return 0

    return compare


def scatter_gather(
    queryset: QuerySet[M],
    *,
    order_by: Sequence[str],
    limit: int | None = None,
    allow_partial: bool = False,
) -> tuple[list[M], dict[str, str]]:
    """Rows of ``queryset`` from every shard, merged in ``order_by`` order and cut to ``limit``.

    Returns (rows, failures); failures is empty unless ``allow_partial`` let
    some databases fail. Include a unique field (such as ``id``) in
    ``order_by`` for a stable order.
    """
    if not order_by:
        raise ValueError("scatter_gather needs order_by, for example ('-created_at', '-id').")
    if limit is not None and limit < 0:
        raise ValueError("limit must be a non-negative number of rows.")

    def fetch(qs: QuerySet[M]) -> list[M]:
        ordered = qs.order_by(*order_by)
        return list(ordered[:limit] if limit is not None else ordered)

    outcome = scatter(queryset, fetch, allow_partial=allow_partial)
    key = functools.cmp_to_key(_compare(order_by))
    merged = heapq.merge(*outcome.results.values(), key=key)
    rows = list(merged)
    return (rows[:limit] if limit is not None else rows), outcome.failures


def scatter_count(queryset: QuerySet[M], *, allow_partial: bool = False) -> tuple[int, dict[str, str]]:
    """``queryset.count()`` summed over every shard."""
    outcome = scatter(queryset, lambda qs: qs.count(), allow_partial=allow_partial)
    return sum(outcome.results.values()), outcome.failures
