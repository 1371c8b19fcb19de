"""Moves are not facts: a live move's copy, reverse replication and clean-up never reach the warehouse as changes."""

from __future__ import annotations

import pytest

from apps.analytics.conf import WarehouseConfig
from apps.analytics.engines import warehouse
from apps.analytics.sync import Syncer
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from tests.analytics.support import assert_warehouse_equals_owners, following
from tests.conftest import ALL_DATABASES, write_map
from tests.moves.support import Ledger, Load, assert_every_write_in_place, latest_move, seed, shardmove, wait_for_phase

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

USERS = [3, 260, 499, 500, 777, 999, 1000, 4200, 10**12]


def through_the_cut_over(move_id: int) -> None:
    wait_for_phase(move_id, "catching_up")
    shardmove("switch-reads", str(move_id))
    assert "Writes switched" in shardmove("switch-writes", str(move_id))


def test_monolith_to_two_shards_then_a_split_with_a_rollback_leaves_the_warehouse_equal_to_the_owners_rows(
    duckdb_warehouse: WarehouseConfig,
) -> None:
    write_map([ShardRange(0, KEYSPACE_END, "default")], reason="test: monolith")
    ledger = Ledger()
    seed(ledger, "default", USERS, per_user=30)
    syncer = Syncer(duckdb_warehouse)
    syncer.catch_up()
    assert_warehouse_equals_owners(duckdb_warehouse)

    with Load(ledger, USERS, threads=3) as load, following(syncer) as sync_errors:
        load.wait_for_writes(30)
        shardmove("start", "0", "1000", "--to", "shard1")
        first = latest_move().id
        shardmove("start", "1000", "MAX", "--to", "shard2")
        second = latest_move().id
        through_the_cut_over(first)
        through_the_cut_over(second)
        load.wait_for_writes(30)
        # Back to the monolith for [0, 1000) (reverse replication ran meanwhile), then forward again.
        assert "Rolled back" in shardmove("rollback", str(first))
        load.wait_for_writes(30)
        shardmove("switch-reads", str(first))
        assert "Writes switched" in shardmove("switch-writes", str(first))
        load.wait_for_writes(30)
        for move_id in (first, second):
            assert "Complete" in shardmove("complete", str(move_id))
        # Split shard1: [500, 1000) to shard3 (same server).
        shardmove("start", "500", "1000", "--to", "shard3")
        split = latest_move().id
        through_the_cut_over(split)
        load.wait_for_writes(30)
        assert "Complete" in shardmove("complete", str(split))
        load.wait_for_writes(30)
    assert load.errors == [], load.errors[0]
    assert sync_errors == [], sync_errors
    assert_every_write_in_place(ledger)

    syncer.catch_up()
    assert_warehouse_equals_owners(duckdb_warehouse)
    with warehouse(duckdb_warehouse, read_only=True) as wh:
        assert wh.fetchall("SELECT alias, error FROM wh_source WHERE error IS NOT NULL") == []
