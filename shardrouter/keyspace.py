"""The user-ID keyspace and pure operations on shard maps (no database access).

A shard map is a sorted list of half-open ranges ``[lo, hi)`` of user IDs that
covers the whole keyspace ``[0, KEYSPACE_END)`` with no gap and no overlap.
Each range names the database alias that takes its writes and the alias that
serves its reads; they differ only while a live move has switched reads.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ShardMapError

KEYSPACE_START = 0
# Exclusive end: the largest PostgreSQL bigint. User IDs are positive bigints below it.
KEYSPACE_END = 2**63 - 1


def format_key(key: int) -> str:
    return "MAX" if key == KEYSPACE_END else str(key)


def parse_key(text: str) -> int:
    """Parse a range bound: a non-negative integer or ``MAX`` (the end of the keyspace)."""
    cleaned = text.strip().replace("_", "")
    if cleaned.upper() == "MAX":
        return KEYSPACE_END
    try:
        value = int(cleaned)
    except ValueError:
        raise ShardMapError(
            f"{text!r} is not a user ID; expected a whole number from 0 to {KEYSPACE_END} or MAX."
        ) from None
    if not KEYSPACE_START <= value <= KEYSPACE_END:
        raise ShardMapError(f"{text!r} is outside the keyspace; expected 0 to {KEYSPACE_END} (or MAX).")
    return value


@dataclass(frozen=True)
class ShardRange:
    """User IDs ``lo <= id < hi``: writes go to ``alias``, reads to ``read_alias``."""

    lo: int
    hi: int
    alias: str
    read_alias: str = ""

    def __post_init__(self) -> None:
        if not self.read_alias:
            object.__setattr__(self, "read_alias", self.alias)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.lo <= key < self.hi

    @property
    def reads_switched(self) -> bool:
        return self.read_alias != self.alias

    def label(self) -> str:
        return f"[{format_key(self.lo)}, {format_key(self.hi)})"

    def to_json(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "alias": self.alias, "read_alias": self.read_alias}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardRange:
        return cls(int(data["lo"]), int(data["hi"]), str(data["alias"]), str(data.get("read_alias") or ""))


def validate_ranges(ranges: Sequence[ShardRange], known_aliases: Iterable[str] | None = None) -> None:
    """Raise ``ShardMapError`` listing every gap, overlap, empty range and unknown alias."""
    problems: list[str] = []
    if not ranges:
        raise ShardMapError("The shard map is empty; it must cover user IDs 0 to MAX.")
    ordered = sorted(ranges, key=lambda r: (r.lo, r.hi))
    known = set(known_aliases) if known_aliases is not None else None
    for item in ordered:
        if item.hi <= item.lo:
            problems.append(f"range {item.label()} is empty or reversed (hi must be greater than lo)")
        if item.lo < KEYSPACE_START or item.hi > KEYSPACE_END:
            problems.append(f"range {item.label()} leaves the keyspace [0, MAX)")
        if known is not None:
            for alias in {item.alias, item.read_alias} - known:
                problems.append(f"range {item.label()} names database {alias!r}, which is not in DATABASES")
    if ordered[0].lo != KEYSPACE_START:
        problems.append(f"gap: user IDs [0, {format_key(ordered[0].lo)}) belong to no shard")
    for prev, cur in itertools.pairwise(ordered):
        if cur.lo > prev.hi:
            problems.append(f"gap: user IDs [{format_key(prev.hi)}, {format_key(cur.lo)}) belong to no shard")
        elif cur.lo < prev.hi:
            problems.append(
                f"overlap: {prev.label()} and {cur.label()} both claim [{format_key(cur.lo)}, {format_key(min(prev.hi, cur.hi))})"
            )
    if ordered[-1].hi != KEYSPACE_END:
        problems.append(f"gap: user IDs [{format_key(ordered[-1].hi)}, MAX) belong to no shard")
    if problems:
        raise ShardMapError("Invalid shard map: " + "; ".join(problems) + ".")


def merge_adjacent(ranges: Sequence[ShardRange]) -> list[ShardRange]:
    """Join neighbouring ranges that route identically, so the map stays as short as possible."""
    merged: list[ShardRange] = []
    for item in sorted(ranges, key=lambda r: r.lo):
        last = merged[-1] if merged else None
        if last and last.hi == item.lo and (last.alias, last.read_alias) == (item.alias, item.read_alias):
            merged[-1] = replace(last, hi=item.hi)
        else:
            merged.append(item)
    return merged


def assign_range(
    ranges: Sequence[ShardRange], lo: int, hi: int, alias: str, *, read_alias: str | None = None
) -> list[ShardRange]:
    """Return a new map in which ``[lo, hi)`` routes to ``alias`` and everything else is unchanged."""
    if hi <= lo:
        raise ShardMapError(f"[{format_key(lo)}, {format_key(hi)}) is empty; HI must be greater than LO.")
    result: list[ShardRange] = []
    for item in ranges:
        if item.hi <= lo or item.lo >= hi:
            result.append(item)
            continue
        if item.lo < lo:
            result.append(replace(item, hi=lo))
        if item.hi > hi:
            result.append(replace(item, lo=hi))
    result.append(ShardRange(lo, hi, alias, read_alias or alias))
    return merge_adjacent(result)


def split_by_range(ranges: Sequence[ShardRange], lo: int, hi: int) -> list[ShardRange]:
    """The parts of the map that intersect ``[lo, hi)``, clipped to it."""
    return [replace(item, lo=max(item.lo, lo), hi=min(item.hi, hi)) for item in ranges if item.lo < hi and item.hi > lo]


def describe_diff(old: Sequence[ShardRange], new: Sequence[ShardRange]) -> list[str]:
    """Human-readable lines: ``- [lo, hi) -> alias`` for removed ranges and ``+ ...`` for added ones."""

    def line(sign: str, item: ShardRange) -> str:
        reads = f" (reads: {item.read_alias})" if item.reads_switched else ""
        return f"{sign} {item.label()} -> {item.alias}{reads}"

    old_set, new_set = set(old), set(new)
    lines = [line("-", item) for item in sorted(old_set - new_set, key=lambda r: r.lo)]
    lines += [line("+", item) for item in sorted(new_set - old_set, key=lambda r: r.lo)]
    return lines


@dataclass(frozen=True)
class ShardMap:
    """An immutable, validated snapshot of the map at one version, with O(log n) lookup."""

    version: int
    ranges: tuple[ShardRange, ...]
    _los: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.ranges, key=lambda r: r.lo))
        object.__setattr__(self, "ranges", ordered)
        object.__setattr__(self, "_los", tuple(r.lo for r in ordered))

    def range_for(self, key: int) -> ShardRange:
        index = bisect.bisect_right(self._los, key) - 1
        if index < 0 or not (self.ranges[index].lo <= key < self.ranges[index].hi):
            raise ShardMapError(f"User ID {key} is outside the keyspace [0, MAX).")
        return self.ranges[index]

    def write_alias(self, key: int) -> str:
        return self.range_for(key).alias

    def read_alias(self, key: int) -> str:
        return self.range_for(key).read_alias

    def aliases(self) -> set[str]:
        return {a for r in self.ranges for a in (r.alias, r.read_alias)}

    def read_plan(self) -> dict[str, list[ShardRange]]:
        """Which ranges each database serves reads for: the basis of cross-shard reads."""
        plan: dict[str, list[ShardRange]] = {}
        for item in self.ranges:
            plan.setdefault(item.read_alias, []).append(item)
        return plan

    def to_text(self) -> str:
        return ",".join(f"{format_key(r.lo)}:{format_key(r.hi)}={r.alias}" for r in self.ranges)


def parse_map_text(text: str) -> list[ShardRange]:
    """Parse ``LO:HI=ALIAS,LO:HI=ALIAS`` (as in QQ_EMBEDDED_SHARD_MAP) into ranges."""
    ranges = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        bounds, sep, alias = item.partition("=")
        lo_text, colon, hi_text = bounds.partition(":")
        if not sep or not colon or not alias.strip():
            raise ShardMapError(
                f"{item!r} is not of the form LO:HI=ALIAS (for example 0:1000=shard1 or 1000:MAX=shard2)."
            )
        ranges.append(ShardRange(parse_key(lo_text), parse_key(hi_text), alias.strip()))
    return ranges
