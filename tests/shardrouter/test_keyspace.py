"""Shard-map validation and editing, as pure functions."""

from __future__ import annotations

import pytest

from shardrouter.errors import ShardMapError
from shardrouter.keyspace import (
    KEYSPACE_END,
    ShardMap,
    ShardRange,
    assign_range,
    describe_diff,
    parse_key,
    parse_map_text,
    validate_ranges,
)

ALIASES = {"default", "shard1", "shard2", "shard3"}


def test_a_map_covering_the_keyspace_without_gaps_or_overlaps_is_valid() -> None:
    validate_ranges([ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")], ALIASES)


def test_an_overlap_is_refused_and_named() -> None:
    with pytest.raises(ShardMapError, match=r"overlap: \[0, 1000\) and \[500, MAX\)"):
        validate_ranges([ShardRange(0, 1000, "shard1"), ShardRange(500, KEYSPACE_END, "shard2")], ALIASES)


def test_a_gap_is_refused_and_named() -> None:
    with pytest.raises(ShardMapError, match=r"gap: user IDs \[1000, 2000\) belong to no shard"):
        validate_ranges([ShardRange(0, 1000, "shard1"), ShardRange(2000, KEYSPACE_END, "shard2")], ALIASES)


def test_missing_ends_of_the_keyspace_are_gaps() -> None:
    with pytest.raises(ShardMapError, match=r"gap: user IDs \[0, 5\).*gap: user IDs \[100, MAX\)"):
        validate_ranges([ShardRange(5, 100, "shard1")], ALIASES)


def test_an_unknown_alias_is_refused() -> None:
    with pytest.raises(ShardMapError, match="'shard9', which is not in DATABASES"):
        validate_ranges([ShardRange(0, KEYSPACE_END, "shard9")], ALIASES)


def test_empty_and_reversed_ranges_are_refused() -> None:
    with pytest.raises(ShardMapError, match="empty or reversed"):
        validate_ranges([ShardRange(0, 0, "shard1"), ShardRange(0, KEYSPACE_END, "shard2")], ALIASES)
    with pytest.raises(ShardMapError, match="empty"):
        validate_ranges([], ALIASES)


def test_assign_carves_a_range_out_and_keeps_the_rest() -> None:
    base = [ShardRange(0, KEYSPACE_END, "default")]
    result = assign_range(base, 1000, 2000, "shard2")
    assert result == [
        ShardRange(0, 1000, "default"),
        ShardRange(1000, 2000, "shard2"),
        ShardRange(2000, KEYSPACE_END, "default"),
    ]
    validate_ranges(result, ALIASES)


def test_assign_merges_neighbours_that_route_the_same_way() -> None:
    base = [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")]
    assert assign_range(base, 1000, KEYSPACE_END, "shard1") == [ShardRange(0, KEYSPACE_END, "shard1")]


def test_the_diff_lists_removed_and_added_ranges() -> None:
    old = [ShardRange(0, KEYSPACE_END, "default")]
    new = assign_range(old, 0, 1000, "shard1")
    assert describe_diff(old, new) == [
        "- [0, MAX) -> default",
        "+ [0, 1000) -> shard1",
        "+ [1000, MAX) -> default",
    ]


def test_lookup_finds_the_range_of_any_key_including_the_edges() -> None:
    shard_map = ShardMap(3, (ShardRange(1000, KEYSPACE_END, "shard2"), ShardRange(0, 1000, "shard1", "shard3")))
    assert shard_map.write_alias(0) == "shard1"
    assert shard_map.read_alias(999) == "shard3"
    assert shard_map.write_alias(1000) == "shard2"
    assert shard_map.write_alias(KEYSPACE_END - 1) == "shard2"
    with pytest.raises(ShardMapError):
        shard_map.range_for(KEYSPACE_END)
    assert shard_map.read_plan() == {
        "shard3": [ShardRange(0, 1000, "shard1", "shard3")],
        "shard2": [ShardRange(1000, KEYSPACE_END, "shard2")],
    }


@pytest.mark.parametrize("text", ["-1", "abc", "1.5", str(2**64)])
def test_bad_range_bounds_are_refused(text: str) -> None:
    with pytest.raises(ShardMapError, match=r"user ID|keyspace"):
        parse_key(text)


def test_map_text_parses_and_rejects_nonsense() -> None:
    assert parse_map_text("0:1000=shard1,1000:MAX=shard2") == [
        ShardRange(0, 1000, "shard1"),
        ShardRange(1000, KEYSPACE_END, "shard2"),
    ]
    with pytest.raises(ShardMapError, match="LO:HI=ALIAS"):
        parse_map_text("0-1000=shard1")
