"""Shard-map edits made by moves: route a range's reads and writes, via shardrouter's apply_map."""

from __future__ import annotations

from shardrouter.errors import ShardMapConflict
from shardrouter.keyspace import ShardRange, assign_range, format_key, split_by_range
from shardrouter.mapstore import apply_map, load_map_from_database

from .errors import MoveError


def range_parts(lo: int, hi: int) -> list[ShardRange]:
    """The map's ranges that intersect ``[lo, hi)``, clipped to it (newest map in the database)."""
    return split_by_range(load_map_from_database().ranges, lo, hi)


def traffic(lo: int, hi: int) -> tuple[str, str]:
    """("reads: X, writes: Y") of the range as two strings; several values are joined with '+'."""
    parts = range_parts(lo, hi)
    reads = "+".join(sorted({p.read_alias for p in parts}))
    writes = "+".join(sorted({p.alias for p in parts}))
    return reads, writes


def route_range(lo: int, hi: int, *, writes: str, reads: str, allowed_from: set[tuple[str, str]], reason: str) -> bool:
    """Make ``[lo, hi)`` route writes to ``writes`` and reads to ``reads``; False if it already does.

    Every part of the range must currently route as one of ``allowed_from``
    ((writes, reads) pairs) or as the wanted state, else the map was changed
    behind the move's back and nothing is written. Concurrent edits of other
    ranges are retried on the newer version.
    """
    for _attempt in range(10):
        base = load_map_from_database()
        parts = split_by_range(base.ranges, lo, hi)
        if all((p.alias, p.read_alias) == (writes, reads) for p in parts):
            return False
        unexpected = [p for p in parts if (p.alias, p.read_alias) not in allowed_from | {(writes, reads)}]
        if unexpected:
            detail = ", ".join(f"{p.label()} writes {p.alias} reads {p.read_alias}" for p in unexpected)
            raise MoveError(
                f"The shard map no longer routes [{format_key(lo)}, {format_key(hi)}) as this move left it ({detail}). "
                "Someone edited the map during the move; restore it with `manage.py shardmap` or cancel the move."
            )
        new_ranges = assign_range(base.ranges, lo, hi, writes, read_alias=reads)
        try:
            apply_map(new_ranges, expected_version=base.version, reason=reason)
            return True
        except ShardMapConflict:
            continue
    raise MoveError("The shard map kept changing while this move tried to update it; re-run the command.")
