"""Routing invariants: every row lives on its owner's shard, and nothing routes by accident."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from apps.content.models import Generation
from apps.content.services import generation_create
from shardrouter.context import shard_for
from shardrouter.errors import ShardRoutingError
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.router import ShardRouter
from tests.conftest import ALL_DATABASES, raw_rows, write_map
from tests.support import wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

USER_A = 42  # shard1 in the standard map
USER_B = 1042  # shard2


def test_each_users_rows_land_on_their_own_shard_and_nowhere_else() -> None:
    a = generation_create(user_id=USER_A, prompt="alpha")
    b = generation_create(user_id=USER_B, prompt="beta")

    assert raw_rows("shard1", "SELECT id, user_id FROM content_generation") == [(a.id, USER_A)]
    assert raw_rows("shard2", "SELECT id, user_id FROM content_generation") == [(b.id, USER_B)]
    for alias in ("default", "shard3"):
        assert raw_rows(alias, "SELECT count(*) FROM content_generation") == [(0,)]
    # The usage event travels with the generation it meters.
    assert raw_rows("shard1", "SELECT user_id, generation_id FROM content_usageevent") == [(USER_A, a.id)]
    assert raw_rows("shard2", "SELECT user_id, generation_id FROM content_usageevent") == [(USER_B, b.id)]


def test_a_query_on_a_sharded_model_with_nothing_to_route_it_raises() -> None:
    with pytest.raises(ShardRoutingError, match="for_user"):
        list(Generation.objects.all())
    with pytest.raises(ShardRoutingError):
        Generation.objects.filter(prompt="x").count()
    with pytest.raises(ShardRoutingError):
        Generation(prompt="no owner").save()


def test_the_router_has_no_opinion_on_global_models() -> None:
    router = ShardRouter()
    assert router.db_for_read(User) is None
    assert router.db_for_write(User) is None


def test_for_user_reads_only_that_users_rows_from_their_shard() -> None:
    generation_create(user_id=USER_A, prompt="mine")
    generation_create(user_id=USER_A + 1, prompt="neighbour on the same shard")
    generation_create(user_id=USER_B, prompt="other shard")

    prompts = list(Generation.objects.for_user(USER_A).values_list("prompt", flat=True))
    assert prompts == ["mine"]
    assert Generation.objects.for_user(USER_B).get().prompt == "other shard"


def test_the_shard_context_routes_unqualified_queries() -> None:
    generation_create(user_id=USER_B, prompt="in context")
    with shard_for(USER_B):
        assert Generation.objects.filter(prompt="in context").count() == 1
        # The context chooses the database, not the rows: filtering by owner stays the caller's job.
        assert Generation.objects.count() == 1
    with pytest.raises(ShardRoutingError):
        Generation.objects.count()


def test_save_and_delete_route_by_the_instances_own_shard_key() -> None:
    generation = Generation(user_id=USER_B, prompt="by instance")
    generation.save()
    assert raw_rows("shard2", "SELECT prompt FROM content_generation") == [("by instance",)]

    generation.prompt = "edited"
    generation.save()
    assert raw_rows("shard2", "SELECT prompt FROM content_generation") == [("edited",)]

    generation.delete()
    assert raw_rows("shard2", "SELECT count(*) FROM content_generation") == [(0,)]


def test_create_routes_by_the_shard_key_given_in_its_arguments() -> None:
    created = Generation.objects.create(user_id=USER_B, prompt="routed by kwargs")
    assert raw_rows("shard2", "SELECT id FROM content_generation") == [(created.id,)]


def test_create_refuses_a_shard_key_that_contradicts_for_user() -> None:
    with pytest.raises(ValueError, match="does not match"):
        Generation.objects.for_user(USER_A).create(user_id=USER_B, prompt="x")


def test_explicit_using_bypasses_the_router() -> None:
    Generation.objects.using("shard3").create(user_id=USER_A, prompt="placed by hand")
    assert raw_rows("shard3", "SELECT prompt FROM content_generation") == [("placed by hand",)]
    assert not Generation.objects.for_user(USER_A).exists()


@pytest.mark.parametrize("bad", [-1, "abc", None, True, 1.5j])
def test_a_bad_shard_key_is_refused_with_a_clear_error(bad: object) -> None:
    with pytest.raises(ValueError, match="user ID"):
        Generation.objects.for_user(bad)  # type: ignore[arg-type]


def test_sharded_ids_are_unique_time_ordered_and_not_from_a_sequence() -> None:
    ids = [generation_create(user_id=USER_A, prompt=str(n)).id for n in range(20)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 20
    assert all(i > 2**40 for i in ids)
    default_expr = raw_rows(
        "shard1",
        "SELECT column_default FROM information_schema.columns WHERE table_name = 'content_generation' AND column_name = 'id'",
    )
    assert default_expr == [(None,)]


def test_migrations_put_global_tables_only_on_the_control_database() -> None:
    def tables(alias: str) -> set[str]:
        return {row[0] for row in raw_rows(alias, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    for alias in ("shard1", "shard2", "shard3"):
        assert "auth_user" not in tables(alias)
        assert "shardrouter_shardmaprevision" not in tables(alias)
        assert {"content_generation", "content_usageevent"} <= tables(alias)
    assert {"auth_user", "shardrouter_shardmaprevision", "content_generation"} <= tables("default")


def test_monolith_mode_keeps_every_row_on_the_control_database() -> None:
    write_map([ShardRange(0, KEYSPACE_END, "default")], reason="test: monolith")
    a = generation_create(user_id=USER_A, prompt="monolith a")
    b = generation_create(user_id=USER_B, prompt="monolith b")

    assert sorted(raw_rows("default", "SELECT id FROM content_generation")) == sorted([(a.id,), (b.id,)])
    for alias in ("shard1", "shard2"):
        assert raw_rows(alias, "SELECT count(*) FROM content_generation") == [(0,)]
    assert Generation.objects.for_user(USER_B).get().prompt == "monolith b"


def test_with_reads_switched_reads_go_to_the_target_until_the_user_writes() -> None:
    from django.core.cache import cache

    router = ShardRouter()
    write_map([ShardRange(0, 1000, "shard1", read_alias="shard3"), ShardRange(1000, KEYSPACE_END, "shard2")])
    cache.delete_many([f"shardrouter:pin:{USER_A}", f"shardrouter:pin:{USER_A + 1}"])

    assert router.db_for_read(Generation, shard_key=USER_A) == "shard3"
    assert router.db_for_write(Generation, shard_key=USER_A) == "shard1"
    # Read-your-writes: having just written, the user reads from the write database...
    assert router.db_for_read(Generation, shard_key=USER_A) == "shard1"
    # ...while a user who did not write keeps reading from the target.
    assert router.db_for_read(Generation, shard_key=USER_A + 1) == "shard3"
    # Ranges whose reads are not switched are untouched.
    assert router.db_for_read(Generation, shard_key=USER_B) == "shard2"


def test_the_read_your_writes_pin_expires() -> None:
    from django.test import override_settings

    router = ShardRouter()
    write_map([ShardRange(0, 1000, "shard1", read_alias="shard3"), ShardRange(1000, KEYSPACE_END, "shard2")])
    with override_settings(SHARDROUTER={"SHARDED_APPS": ["content"], "READ_YOUR_WRITES_SECONDS": 1}):
        router.db_for_write(Generation, shard_key=USER_A + 2)
        assert router.db_for_read(Generation, shard_key=USER_A + 2) == "shard1"
        wait_until(
            lambda: router.db_for_read(Generation, shard_key=USER_A + 2) == "shard3",
            timeout=5,
            what="the read-your-writes pin to expire",
            poll=0.1,
        )


def test_a_user_reads_their_own_write_made_through_run_sharded_write_while_reads_are_switched() -> None:
    from django.core.cache import cache

    write_map([ShardRange(0, 1000, "shard1", read_alias="shard3"), ShardRange(1000, KEYSPACE_END, "shard2")])
    cache.delete(f"shardrouter:pin:{USER_A}")
    created = generation_create(user_id=USER_A, prompt="just written")  # every content write goes this way
    # shard3 has not received the row (no replication in this test): only the pin makes it readable.
    assert Generation.objects.for_user(USER_A).get(id=created.id).prompt == "just written"
    assert ShardRouter().db_for_read(Generation, shard_key=USER_A) == "shard1"


def test_a_write_acknowledged_just_before_reads_switch_is_read_from_the_write_database() -> None:
    from django.core.cache import cache

    cache.delete(f"shardrouter:pin:{USER_A}")
    # Written while this process still sees the range's reads on the source...
    created = generation_create(user_id=USER_A, prompt="written before the switch")
    # ...then it notices switch-reads before the row has reached the target (no replication in this test).
    write_map([ShardRange(0, 1000, "shard1", read_alias="shard3"), ShardRange(1000, KEYSPACE_END, "shard2")])
    assert Generation.objects.for_user(USER_A).get(id=created.id).prompt == "written before the switch"


def test_a_pinned_read_follows_writes_to_where_a_database_said_the_range_moved() -> None:
    from shardrouter.shardmap import shard_map_cache

    router = ShardRouter()
    # Reads switched to shard3; the cut-over of writes has happened, but this process's map does not show it yet.
    write_map([ShardRange(0, 1000, "shard1", read_alias="shard3"), ShardRange(1000, KEYSPACE_END, "shard2")])
    shard_map_cache.note_moved(0, 1000, "shard3")  # what a QQ002 refusal from shard1 told run_sharded_write
    router.db_for_write(Generation, shard_key=USER_A)  # the user writes: their reads now follow their writes

    assert router.db_for_read(Generation, shard_key=USER_A) == "shard3"  # not shard1, which no longer takes writes
