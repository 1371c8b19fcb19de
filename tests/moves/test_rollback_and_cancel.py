"""Going back: a rollback after the write cut-over loses nothing; cancel leaves both databases as they were."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management.base import CommandError

from migrations_tooling.models import MoveRange
from migrations_tooling.schema import sharded_tables
from shardrouter.mapstore import load_map_from_database
from tests.conftest import ALL_DATABASES
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

# Standard map: [0, 1000) on shard1, [1000, MAX) on shard2. The moves take [0, 500) from shard1 to shard2.
IN_RANGE = [7, 130, 499]
OUTSIDE = [500, 900, 1000, 8000]


def routes() -> list[tuple[int, int, str, str]]:
    return [(r.lo, r.hi, r.alias, r.read_alias) for r in load_map_from_database().ranges]


def test_rollback_after_the_write_cut_over_brings_traffic_back_without_losing_a_write() -> None:
    ledger = Ledger()
    seed(ledger, "shard1", [*IN_RANGE, 500, 900], per_user=40)
    seed(ledger, "shard2", [1000, 8000], per_user=40)
    before = routes()
    with Load(ledger, IN_RANGE + OUTSIDE, threads=3) as load:
        shardmove("start", "0", "500", "--to", "shard2")
        move = latest_move()
        wait_for_phase(move.id, "catching_up")
        shardmove("switch-reads", str(move.id))
        shardmove("switch-writes", str(move.id))
        load.wait_for_writes(60)  # these land on shard2 only

        assert "Rolled back" in shardmove("rollback", str(move.id))
        assert routes() == before
        load.wait_for_writes(60)  # and these on shard1 again

        # A rolled-back move can be tried again: same freeze protocol, forward once more.
        shardmove("switch-reads", str(move.id))
        shardmove("switch-writes", str(move.id))
        load.wait_for_writes(30)
        shardmove("complete", str(move.id))
    assert load.errors == [], load.errors[0]
    assert_every_write_in_place(ledger)


def snapshot(alias: str) -> dict[str, list[tuple[Any, ...]]]:
    return {table.name: on_db(alias, f"SELECT t::text FROM {table.name} t ORDER BY id") for table in sharded_tables()}


def test_cancel_leaves_source_and_target_exactly_as_they_were_before_the_move() -> None:
    ledger = Ledger()
    seed(ledger, "shard1", [*IN_RANGE, 500, 900], per_user=40)
    seed(ledger, "shard2", [1000, 8000], per_user=40)
    before = {alias: snapshot(alias) for alias in ("shard1", "shard2")}
    map_before = routes()

    shardmove("start", "0", "500", "--to", "shard2")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    shardmove("switch-reads", str(move.id))
    assert "Nothing changed" in shardmove("cancel", str(move.id), "--dry-run")
    assert "Cancelled" in shardmove("cancel", str(move.id))
    assert "already cancelled" in shardmove("cancel", str(move.id))

    assert {alias: snapshot(alias) for alias in ("shard1", "shard2")} == before
    assert routes() == map_before
    assert MoveRange.objects.get(id=move.id).phase == "cancelled"
    for alias in ("shard1", "shard2"):
        assert on_db(alias, "SELECT count(*) FROM qq_fence") == [(0,)]
        assert on_db(alias, "SELECT count(*) FROM qq_move_change") == [(0,)]
        assert on_db(alias, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == [(0,)]
        assert on_db(alias, "SELECT count(*) FROM pg_publication") == [(0,)]
        assert on_db(alias, "SELECT count(*) FROM pg_subscription") == [(0,)]
    # The range is free again: a new move of it can start.
    shardmove("start", "0", "500", "--to", "shard3")
    wait_for_phase(latest_move().id, "catching_up")


def test_cancel_during_the_copy_removes_the_copy_and_every_replication_object() -> None:
    seed(Ledger(), "shard1", list(range(1, 500, 25)), per_user=1500)
    shardmove("start", "0", "500", "--to", "shard2")
    assert "Cancelled" in shardmove("cancel", str(latest_move().id))
    assert on_db("shard2", "SELECT count(*) FROM content_generation WHERE user_id < 500") == [(0,)]
    for alias in ("shard1", "shard2"):
        assert on_db(alias, "SELECT count(*) FROM pg_replication_slots") == [(0,)]  # table-sync slots too
        assert on_db(alias, "SELECT count(*) FROM pg_subscription") == [(0,)]


def test_cancel_is_refused_once_writes_are_switched_so_they_cannot_be_lost() -> None:
    seed(Ledger(), "shard1", IN_RANGE, per_user=5)
    shardmove("start", "0", "500", "--to", "shard2")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    shardmove("switch-reads", str(move.id))
    shardmove("switch-writes", str(move.id))
    with pytest.raises(CommandError, match="rollback"):
        shardmove("cancel", str(move.id))
    assert latest_move().phase == "writes_switched"
