"""The hot-shard advisor changes nothing, isolates a noisy tenant, and its prediction holds once applied with shardmove."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from migrations_tooling.models import MoveRange
from shardrouter.advisor import advise
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.mapstore import load_map_from_database
from tests.conftest import ALL_DATABASES
from tests.moves.support import Ledger, latest_move, on_db, seed, shardmove, wait_for_phase

# Standard map: [0, 1000) on shard1, [1000, MAX) on shard2; shard3 is spare.


def shardmap(*args: str) -> str:
    out = io.StringIO()
    call_command("shardmap", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def rows_on(alias: str) -> int:
    return sum(
        on_db(alias, f"SELECT count(*) FROM {table}")[0][0] for table in ("content_generation", "content_usageevent")
    )


def test_a_user_heavier_than_a_share_is_isolated_and_the_others_are_evened_out() -> None:
    ranges = [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")]
    weights = {10: 300.0} | {uid: 10.0 for uid in range(20, 101, 10)} | {uid: 10.0 for uid in range(1000, 1041, 10)}
    advice = advise(ranges=ranges, weights=weights, databases=["shard1", "shard2", "shard3"], by="rows")
    first = advice.moves[0]
    assert (first.lo, first.hi, first.target, first.isolates_user) == (10, 11, "shard3", 10)
    assert advice.loads_after == {"shard1": 70.0, "shard2": 70.0, "shard3": 300.0}
    assert sum(advice.loads_after.values()) == sum(advice.loads_before.values())


def test_an_even_map_gets_no_moves_and_too_few_shards_are_refused() -> None:
    ranges = [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")]
    weights = {uid: 1.0 for uid in range(0, 2000, 10)}
    assert advise(ranges=ranges, weights=weights, databases=["shard1", "shard2"], by="rows").moves == []


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_advise_refuses_fewer_shards_than_the_map_uses() -> None:
    with pytest.raises(CommandError, match="--shards 1 is fewer than the 2 databases"):
        shardmap("advise", "--shards", "1")


def apply(move: dict[str, Any]) -> None:
    shardmove("start", str(move["lo"]), str(move["hi"]), "--to", move["target"])
    record = latest_move()
    wait_for_phase(record.id, "catching_up")
    for command in ("switch-reads", "switch-writes", "complete"):
        shardmove(command, str(record.id))
    assert MoveRange.objects.get(id=record.id).phase == "complete"


@pytest.mark.slow
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_the_advice_applied_with_shardmove_gives_the_balance_it_predicted() -> None:
    ledger = Ledger()
    seed(ledger, "shard1", [10], per_user=150)  # the noisy tenant: 300 rows
    seed(ledger, "shard1", range(20, 101, 10), per_user=5)  # 9 users, 10 rows each
    seed(ledger, "shard2", range(1000, 1041, 10), per_user=5)  # 5 users, 10 rows each
    version = load_map_from_database().version

    text = shardmap("advise", "--shards", "3", "--by", "rows")
    assert "isolate user 10" in text and "manage.py shardmove start 10 11 --to shard3 --wait" in text
    advice = json.loads(shardmap("advise", "--shards", "3", "--by", "rows", "--format", "json"))
    assert load_map_from_database().version == version and MoveRange.objects.count() == 0  # advice changes nothing
    assert advice["loads_before"] == {"shard1": 390.0, "shard2": 50.0, "shard3": 0.0}
    assert advice["moves"][0]["isolates_user"] == 10 and advice["moves"][0]["range"] == "[10, 11)"
    assert advice["imbalance_after"] < advice["imbalance_before"]

    for move in advice["moves"]:
        apply(move)

    measured = {alias: rows_on(alias) for alias in advice["databases"]}
    for alias, predicted in advice["loads_after"].items():
        assert abs(measured[alias] - predicted) <= 0.1 * max(predicted, 1), (alias, measured, advice["loads_after"])
    assert measured["shard3"] == 300  # the tenant alone on its database
    assert load_map_from_database().write_alias(10) == "shard3"
    assert load_map_from_database().write_alias(9) == "shard1"  # the neighbours below stay where they were
