"""Operations on the shard map (writes); commands and other tools call these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from .errors import ShardMapError
from .keyspace import ShardMap, ShardRange, assign_range, describe_diff, format_key, split_by_range
from .mapstore import apply_map, load_map_from_database
from .shardkeys import require_shard_key, sharded_models

# A guard gets (lo, hi) of a planned edit and raises ShardMapError if the edit must wait
# (for example while a live move owns the range). Configured in SHARDROUTER["MAP_EDIT_GUARDS"].
MapEditGuard = Callable[[int, int], None]


@dataclass(frozen=True)
class MapEdit:
    """A planned change: the map it starts from, the map it produces, and what it strands."""

    base: ShardMap
    ranges: list[ShardRange]
    diff: list[str]
    stranded_rows: dict[str, int]

    @property
    def changes_anything(self) -> bool:
        return bool(self.diff)


def _guards() -> list[MapEditGuard]:
    paths = getattr(settings, "SHARDROUTER", {}).get("MAP_EDIT_GUARDS", [])
    return [import_string(path) for path in paths]


def count_rows_in_range(alias: str, lo: int, hi: int) -> int:
    """Rows of every sharded table in ``alias`` whose shard key lies in ``[lo, hi)``."""
    total = 0
    for model in sharded_models():
        attname = require_shard_key(model)
        total += model._default_manager.using(alias).filter(**{f"{attname}__gte": lo, f"{attname}__lt": hi}).count()
    return total


def shardmap_plan_assign(*, lo: int, hi: int, alias: str) -> MapEdit:
    """Plan routing ``[lo, hi)`` to ``alias``, without changing anything."""
    if alias not in settings.DATABASES:
        known = ", ".join(sorted(settings.DATABASES))
        raise ShardMapError(f"{alias!r} is not a configured database; expected one of: {known}.")
    if hi <= lo:
        raise ShardMapError(f"[{format_key(lo)}, {format_key(hi)}) is empty; HI must be greater than LO.")
    base = load_map_from_database()
    for part in split_by_range(base.ranges, lo, hi):
        if part.reads_switched:
            raise ShardMapError(
                f"{part.label()} is in the middle of a live move (reads on {part.read_alias}, writes on {part.alias}); "
                "finish or cancel the move first."
            )
    for guard in _guards():
        guard(lo, hi)
    new_ranges = assign_range(base.ranges, lo, hi, alias)
    stranded: dict[str, int] = {}
    for part in split_by_range(base.ranges, lo, hi):
        if part.alias != alias:
            rows = count_rows_in_range(part.alias, part.lo, part.hi)
            if rows:
                stranded[f"{part.label()} on {part.alias}"] = rows
    return MapEdit(base, new_ranges, describe_diff(base.ranges, new_ranges), stranded)


def shardmap_apply_edit(*, edit: MapEdit, reason: str, allow_stranded_rows: bool = False) -> ShardMap:
    """Apply a planned edit; refuses one that would hide existing rows unless explicitly allowed."""
    if edit.stranded_rows and not allow_stranded_rows:
        detail = ", ".join(f"{rows} rows in {where}" for where, rows in edit.stranded_rows.items())
        raise ShardMapError(
            f"This edit would strand {detail}: they would stay where they are but no longer be routed to. "
            "Move them with `manage.py shardmove` instead, or pass --allow-stranded-rows if they are disposable."
        )
    return apply_map(edit.ranges, expected_version=edit.base.version, reason=reason)
