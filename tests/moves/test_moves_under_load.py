"""Monolith -> two shards -> three shards, live: no acknowledged write is lost, duplicated or misplaced."""

from __future__ import annotations

import pytest

from migrations_tooling.models import MoveEvent
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.mapstore import load_map_from_database
from tests.conftest import ALL_DATABASES, write_map
from tests.moves.support import (
    Ledger,
    Load,
    assert_every_write_in_place,
    latest_move,
    on_db,
    seed,
    shardmove,
    wait_for_phase,
)

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

# Users on both sides of every boundary the moves below draw (0 | 500 | 1000 | MAX).
USERS = [3, 120, 260, 499, 500, 777, 999, 1000, 1001, 4200, 77_000, 10**12]


def move_through_every_phase(load: Load, move_ids: list[int]) -> None:
    for move_id in move_ids:
        wait_for_phase(move_id, "catching_up")
    for move_id in move_ids:
        shardmove("switch-reads", str(move_id))
    load.wait_for_writes(40)
    for move_id in move_ids:
        assert "Writes switched" in shardmove("switch-writes", str(move_id))
    load.wait_for_writes(40)
    for move_id in move_ids:
        assert "rows match" in shardmove("verify", str(move_id))
        assert "Complete" in shardmove("complete", str(move_id))
    load.wait_for_writes(40)


def test_monolith_to_two_shards_then_a_split_loses_no_acknowledged_write_under_load() -> None:
    write_map([ShardRange(0, KEYSPACE_END, "default")], reason="test: monolith")
    ledger = Ledger()
    seed(ledger, "default", USERS, per_user=50)

    with Load(ledger, USERS, threads=4) as load:
        load.wait_for_writes(40)
        shardmove("start", "0", "1000", "--to", "shard1")
        first = latest_move()
        shardmove("start", "1000", "MAX", "--to", "shard2")
        second = latest_move()
        move_through_every_phase(load, [first.id, second.id])

        # Split the first shard: shard1 and shard3 share a server (a same-cluster move).
        shardmove("start", "500", "1000", "--to", "shard3")
        move_through_every_phase(load, [latest_move().id])
    assert load.errors == [], load.errors[0]

    assert [(r.lo, r.hi, r.alias, r.read_alias) for r in load_map_from_database().ranges] == [
        (0, 500, "shard1", "shard1"),
        (500, 1000, "shard3", "shard3"),
        (1000, KEYSPACE_END, "shard2", "shard2"),
    ]
    assert_every_write_in_place(ledger)
    # Each cut-over is in the journal, with its freeze.
    assert MoveEvent.objects.filter(kind="cut-over").count() == 3
    for alias in ("default", "shard1", "shard2", "shard3"):
        assert on_db(alias, "SELECT count(*) FROM qq_fence") == [(0,)]
        assert on_db(alias, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == [(0,)]
        assert on_db(alias, "SELECT count(*) FROM pg_publication") == [(0,)]
