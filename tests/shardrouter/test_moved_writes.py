"""A database that says a range has moved (QQ002 naming the alias) is believed until the map catches up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections

from apps.content.models import Generation
from apps.content.services import generation_create
from shardrouter.errors import ShardWriteUnavailable
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.shardmap import shard_map_cache
from shardrouter.writes import run_sharded_write
from tests.conftest import ALL_DATABASES, raw_rows, write_map

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)

REFUSE = """
CREATE OR REPLACE FUNCTION test_refuse_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id >= 1000 AND NEW.user_id < 2000 THEN
        RAISE EXCEPTION 'moved' USING ERRCODE = 'QQ002', DETAIL = %s;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_moved BEFORE INSERT ON content_generation
    FOR EACH ROW EXECUTE FUNCTION test_refuse_moved();
"""


@pytest.fixture
def shard2_says(request: pytest.FixtureRequest) -> Iterator[None]:
    detail = request.param
    with connections["shard2"].cursor() as cursor:
        cursor.execute(REFUSE % ("'" + detail.replace("'", "''") + "'"))
    try:
        yield
    finally:
        with connections["shard2"].cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_refuse_moved ON content_generation")
            cursor.execute("DROP FUNCTION IF EXISTS test_refuse_moved()")


@pytest.mark.parametrize("shard2_says", ["alias=shard3 lo=1000 hi=2000"], indirect=True)
def test_a_write_refused_as_moved_goes_where_the_database_says_until_the_map_changes(shard2_says: None) -> None:
    created = generation_create(user_id=1500, prompt="followed the database")
    assert raw_rows("shard3", "SELECT prompt FROM content_generation WHERE id = %s", [created.id]) == [
        ("followed the database",)
    ]
    # Later writes of the range go there at once; other users are unaffected.
    assert shard_map_cache.write_alias(1999) == "shard3"
    assert shard_map_cache.write_alias(2000) == "shard2"
    assert Generation.objects.for_user(2500).create(user_id=2500, prompt="x").id

    # A new map version is the authority again.
    write_map([ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")], reason="test: new version")
    assert shard_map_cache.write_alias(1500) == "shard2"


@pytest.mark.parametrize(
    "shard2_says", ["alias=nowhere lo=1000 hi=2000", "alias=shard3 lo=1600 hi=2000", "no detail"], indirect=True
)
def test_a_moved_refusal_naming_an_unknown_alias_or_another_range_is_not_followed(shard2_says: None) -> None:
    with pytest.raises(ShardWriteUnavailable, match="moved"):
        run_sharded_write(
            user_id=1500, work=lambda: Generation.objects.for_user(1500).create(user_id=1500, prompt="x"), max_wait=0.2
        )
    assert shard_map_cache.write_alias(1500) == "shard2"
