"""Cross-shard reads are explicit, concurrent, and count each row once even mid-move."""

from __future__ import annotations

import pytest

from apps.content.models import Generation
from apps.content.services import generation_create
from shardrouter.errors import ScatterGatherError, ShardRoutingError
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.scatter import scatter_count, scatter_gather
from tests.conftest import ALL_DATABASES, write_map

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


def test_scatter_gather_merges_every_shard_in_order_and_limits() -> None:
    made = [generation_create(user_id=uid, prompt=f"p{n}") for n, uid in enumerate([1, 1001, 2, 1002, 3])]
    rows, failures = scatter_gather(Generation.objects.all(), order_by=("-created_at", "-id"), limit=4)
    assert failures == {}
    expected = sorted(made, key=lambda g: (g.created_at, g.id), reverse=True)[:4]
    assert [g.id for g in rows] == [g.id for g in expected]


def test_scatter_count_sums_all_shards_with_a_filter() -> None:
    for uid in (1, 2, 1001, 1002, 1003):
        generation_create(user_id=uid, prompt="count me")
    generation_create(user_id=4, prompt="not me")
    total, _ = scatter_count(Generation.objects.filter(prompt="count me"))
    assert total == 5


def test_rows_copied_to_a_move_target_are_not_counted_twice() -> None:
    generation = generation_create(user_id=7, prompt="moving")
    # A copy on the target, as replication makes it, while reads are switched there.
    copy = Generation.objects.using("shard1").get(id=generation.id)
    copy.save(using="shard3", force_insert=True)
    write_map([ShardRange(0, 1000, "shard1", read_alias="shard3"), ShardRange(1000, KEYSPACE_END, "shard2")])
    total, _ = scatter_count(Generation.objects.all())
    assert total == 1


def test_scatter_gather_refuses_models_that_are_not_sharded() -> None:
    from django.contrib.auth.models import User

    with pytest.raises(ShardRoutingError, match="not sharded"):
        scatter_gather(User.objects.all(), order_by=("id",))


def test_a_failing_shard_is_reported_unless_partial_results_are_allowed() -> None:
    generation_create(user_id=1001, prompt="shard2 row")
    # A map entry pointing at a database whose table is missing makes that shard fail.
    from django.db import connections

    with connections["shard3"].cursor() as cursor:
        cursor.execute("ALTER TABLE content_generation RENAME TO content_generation_hidden")
    try:
        write_map([ShardRange(0, 1000, "shard3"), ShardRange(1000, KEYSPACE_END, "shard2")])
        with pytest.raises(ScatterGatherError, match="shard3"):
            scatter_gather(Generation.objects.all(), order_by=("id",))
        rows, failures = scatter_gather(Generation.objects.all(), order_by=("id",), allow_partial=True)
        assert [g.prompt for g in rows] == ["shard2 row"]
        assert list(failures) == ["shard3"]
    finally:
        with connections["shard3"].cursor() as cursor:
            cursor.execute("ALTER TABLE content_generation_hidden RENAME TO content_generation")
