"""Shard-map edit guard: ``shardmap assign`` must not touch a range a live move owns.

Registered in ``SHARDROUTER['MAP_EDIT_GUARDS']``; shardrouter calls it with the
edited range before planning any manual map edit.
"""

from __future__ import annotations

from shardrouter.errors import ShardMapError

from .planning import label, overlapping_moves

GUARD_PATH = "migrations_tooling.guards.refuse_ranges_of_active_moves"


def refuse_ranges_of_active_moves(lo: int, hi: int) -> None:
    moves = overlapping_moves(lo, hi)
    if moves:
        detail = "; ".join(f"move {m.id} {label(m.lo, m.hi)} {m.source} -> {m.target} ({m.phase})" for m in moves)
        first = moves[0].id
        raise ShardMapError(
            f"{label(lo, hi)} overlaps a live data move ({detail}); the move edits the map itself. Finish it with "
            f"`manage.py shardmove complete {first}` or abandon it with `manage.py shardmove cancel {first}` "
            "(`rollback` first if writes are switched), then edit the map."
        )
