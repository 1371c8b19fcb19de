"""Sharded mode costs the database no extra statements: a request sends the same SQL whether its user's
database holds every user or a quarter of them (docs/scaling.md, "Sharded mode on one server")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from django.db import connections

from apps.content.models import Generation
from apps.content.selectors import generation_get, generation_list
from apps.content.services import generation_create
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.shardmap import shard_map_cache
from shardrouter.writes import run_sharded_write
from tests.conftest import ALL_DATABASES, write_map

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

USER = 1500
ONE_DATABASE = (ShardRange(0, KEYSPACE_END, "shard1"),)
# shard3 lives on the same server as shard1 in the test stack: sharded mode on one server.
SPLIT = (ShardRange(0, 1000, "shard1"), ShardRange(1000, 2000, "shard3"), ShardRange(2000, KEYSPACE_END, "shard1"))


@contextmanager
def statements_by_alias() -> Iterator[Counter[str]]:
    """Every statement Django sends while the block runs, counted by database alias."""
    sent: Counter[str] = Counter()

    def counting(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        sent[context["connection"].alias] += 1
        return execute(sql, params, many, context)

    with ExitStack() as stack:
        for alias in connections:
            stack.enter_context(connections[alias].execute_wrapper(counting))
        yield sent


def request_costs() -> dict[str, dict[str, int]]:
    """Statements per database of each kind of request the scale-out benchmark makes, for USER."""
    shard_map_cache.refresh()
    created = generation_create(user_id=USER, prompt="first", job_delay=None)

    def listing() -> None:
        queryset = generation_list(user_id=USER)
        list(queryset.values("id", "prompt", "status", "created_at")[:20])
        queryset.count()

    kinds: dict[str, Callable[[], object]] = {
        "list": listing,
        "open": lambda: generation_get(user_id=USER, generation_id=created.id),
        "create": lambda: generation_create(user_id=USER, prompt="another", job_delay=None),
        "update": lambda: run_sharded_write(
            user_id=USER,
            work=lambda: Generation.objects.for_user(USER).filter(id=created.id).update(prompt="edited"),
        ),
    }
    costs: dict[str, dict[str, int]] = {}
    for kind, request in kinds.items():
        with statements_by_alias() as sent:
            request()
        costs[kind] = dict(sent)
    return costs


def test_a_request_sends_the_same_statements_with_one_database_or_four_on_one_server() -> None:
    write_map(ONE_DATABASE, reason="test: one database")
    monolith = request_costs()
    write_map(SPLIT, reason="test: sharded on one server")
    sharded = request_costs()

    assert monolith == {kind: {"shard1": count} for kind, count in _totals(monolith).items()}
    assert sharded == {kind: {"shard3": count} for kind, count in _totals(monolith).items()}
    assert all(count > 0 for count in _totals(monolith).values())


def _totals(costs: dict[str, dict[str, int]]) -> dict[str, int]:
    return {kind: sum(per_alias.values()) for kind, per_alias in costs.items()}
