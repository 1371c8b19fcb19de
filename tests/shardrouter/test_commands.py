"""Operator commands: shardmap show/validate/assign and migrate_shards."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.content.services import generation_create
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.mapstore import load_map_from_database
from tests.conftest import ALL_DATABASES, write_map

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_show_prints_every_range_and_the_version() -> None:
    output = run("shardmap", "show")
    version = load_map_from_database().version
    assert f"Shard map v{version}" in output
    assert "[0, 1000)" in output and "-> shard1" in output
    assert "[1000, MAX)" in output and "-> shard2" in output


def test_show_counts_rows_on_request() -> None:
    generation_create(user_id=5, prompt="one")
    assert "2 rows" in run("shardmap", "show", "--rows")  # the generation and its usage event


def test_validate_reports_a_healthy_map() -> None:
    output = run("shardmap", "validate")
    assert "is valid" in output and "shard2: reachable" in output


def test_assign_without_apply_prints_the_diff_and_changes_nothing() -> None:
    before = load_map_from_database()
    output = run("shardmap", "assign", "2000", "3000", "shard3")
    assert "- [1000, MAX) -> shard2" in output
    assert "+ [2000, 3000) -> shard3" in output
    assert "Dry run: nothing changed" in output
    assert load_map_from_database() == before


def test_assign_with_apply_writes_a_new_version() -> None:
    before = load_map_from_database()
    output = run("shardmap", "assign", "2000", "3000", "shard3", "--apply")
    after = load_map_from_database()
    assert after.version == before.version + 1
    assert after.write_alias(2500) == "shard3" and after.write_alias(3000) == "shard2"
    assert f"v{after.version} applied" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("10", "5", "shard1"), "HI must be greater than LO"),
        (("0", "10", "nowhere"), "not a configured database"),
        (("zero", "10", "shard1"), "not a user ID"),
        (("0", str(2**64), "shard1"), "outside the keyspace"),
    ],
)
def test_a_bad_edit_raises_a_command_error_with_the_fix_and_changes_nothing(
    args: tuple[str, ...], message: str
) -> None:
    before = load_map_from_database()
    with pytest.raises(CommandError, match=message):
        run("shardmap", "assign", *args, "--apply")
    assert load_map_from_database() == before


def test_assign_refuses_to_strand_existing_rows() -> None:
    generation_create(user_id=1500, prompt="lives on shard2")
    before = load_map_from_database()
    with pytest.raises(CommandError, match=r"strand 2 rows in \[1000, 2000\) on shard2.*shardmove"):
        run("shardmap", "assign", "1000", "2000", "shard3", "--apply")
    assert load_map_from_database() == before


def test_assign_refuses_a_range_in_the_middle_of_a_live_move() -> None:
    write_map([ShardRange(0, 1000, "shard1", read_alias="shard3"), ShardRange(1000, KEYSPACE_END, "shard2")])
    with pytest.raises(CommandError, match="middle of a live move"):
        run("shardmap", "assign", "0", "500", "shard2", "--apply")


def test_migrate_shards_is_safe_to_re_run_and_summarises_each_database() -> None:
    output = run("migrate_shards")
    for alias in ("default", "shard1", "shard2", "shard3"):
        assert f"{alias}" in output
    assert "up to date" in output
    assert "All 4 database(s) migrated" in output
    plan = run("migrate_shards", "--plan")
    assert "shard1: 0 migration(s) to apply" in plan


def test_migrate_shards_refuses_an_unknown_alias() -> None:
    with pytest.raises(CommandError, match="Unknown database alias"):
        run("migrate_shards", "--database", "shard9")
