"""What the operator console shows, read from the toolkit's selectors and the servers; nothing here writes data.

Read and write rates are differences of PostgreSQL's cumulative counters
between two looks: the previous look per database is kept in the cache (not in
any database), so the first page view shows no rate yet.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache

from migrations_tooling import selectors as move_selectors
from migrations_tooling.models import LagSample, MoveEvent, MoveRange, Phase, VerifyRun
from shardrouter.keyspace import KEYSPACE_END, ShardMap
from shardrouter.models import ShardMapRevision
from shardrouter.stats import DatabaseCounters, database_counters

PALETTE = ("#4a55e0", "#1f8a4c", "#b7791f", "#c8323b", "#7b3fb8", "#0f8aa0", "#8a5a1f", "#5f6b7a")
RATE_KEY = "ops:counters:{alias}"
# The path a move normally takes; the timeline marks where it is on it.
PATH = (Phase.COPYING, Phase.CATCHING_UP, Phase.READS_SWITCHED, Phase.WRITES_SWITCHED, Phase.COMPLETE)


@dataclass
class ShardLoad:
    alias: str
    colour: str
    counters: DatabaseCounters
    read_rate: float | None
    write_rate: float | None


def _rates(counters: DatabaseCounters, now: float) -> tuple[float | None, float | None]:
    key = RATE_KEY.format(alias=counters.alias)
    try:
        previous = cache.get(key)
        cache.set(key, (now, counters.reads, counters.writes), 3600)
    except Exception:  # the cache being down costs the rates, not the page
        return None, None
    if counters.error or not previous or now - previous[0] < 0.5:
        return None, None
    seconds = now - previous[0]
    return max(0.0, (counters.reads - previous[1]) / seconds), max(0.0, (counters.writes - previous[2]) / seconds)


def colours(aliases: list[str]) -> dict[str, str]:
    return {alias: PALETTE[n % len(PALETTE)] for n, alias in enumerate(sorted(aliases))}


def shard_loads(shard_map: ShardMap, extra: list[str]) -> list[ShardLoad]:
    """Rows, bytes and recent read/write rates of every database the map uses (and ``extra`` ones)."""
    aliases = sorted(shard_map.aliases() | set(extra))
    palette = colours(aliases)
    now = time.time()
    out = []
    for alias in aliases:
        counters = database_counters(alias)
        reads, writes = _rates(counters, now)
        out.append(ShardLoad(alias, palette[alias], counters, reads, writes))
    return out


def key_position(key: int) -> float:
    """Where a user ID sits on the drawn axis, 0..1: logarithmic, so [0, 1000) and [10^9, MAX) both show."""
    return math.log10(key + 1) / math.log10(KEYSPACE_END + 1)


@dataclass
class MapBar:
    label: str
    alias: str
    read_alias: str
    colour: str
    x: float
    width: float


def map_bars(shard_map: ShardMap, palette: dict[str, str], *, width: float = 800) -> list[MapBar]:
    return [
        MapBar(
            item.label(),
            item.alias,
            item.read_alias,
            palette.get(item.alias, PALETTE[-1]),
            round(key_position(item.lo) * width, 2),
            round(max((key_position(item.hi) - key_position(item.lo)) * width, 1.0), 2),
        )
        for item in shard_map.ranges
    ]


def map_history(limit: int = 20) -> list[ShardMapRevision]:
    return list(ShardMapRevision.objects.order_by("-version")[:limit])


@dataclass
class LagChart:
    points: str  # SVG polyline points
    max_bytes: int
    samples: int
    first: str
    last: str


def lag_chart(move: MoveRange, *, width: float = 600, height: float = 120) -> LagChart:
    samples = list(LagSample.objects.filter(move=move).order_by("-id")[:300])[::-1]
    if not samples:
        return LagChart("", 0, 0, "", "")
    t0 = samples[0].at.timestamp()
    span = max(samples[-1].at.timestamp() - t0, 1.0)
    top = max(max(s.lag_bytes or 0 for s in samples), 1)
    points = " ".join(
        f"{(s.at.timestamp() - t0) / span * width:.1f},{height - (s.lag_bytes or 0) / top * height:.1f}"
        for s in samples
    )
    return LagChart(points, top, len(samples), f"{samples[0].at:%H:%M:%S}", f"{samples[-1].at:%H:%M:%S}")


@dataclass
class Freeze:
    at: str
    direction: str
    milliseconds: float
    catch_up_ms: float


def freeze_history(move: MoveRange) -> list[Freeze]:
    out = []
    for event in MoveEvent.objects.filter(move=move, kind="cut-over").order_by("id"):
        data: dict[str, Any] = event.data or {}
        if "freeze" not in data:
            continue
        out.append(
            Freeze(
                f"{event.at:%Y-%m-%d %H:%M:%S}",
                str(data.get("direction", "")),
                round(float(data["freeze"]) * 1000, 1),
                round(float(data.get("catch_up", 0.0)) * 1000, 1),
            )
        )
    return out


@dataclass
class Step:
    phase: str
    state: str  # done, current, ahead


@dataclass
class MovePage:
    status: move_selectors.MoveStatus
    timeline: list[Step]
    lag: LagChart
    freezes: list[Freeze]
    verify_runs: list[VerifyRun]
    events: list[MoveEvent]
    errors: list[MoveEvent]
    live: bool
    progress_percent: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def timeline(phase: str) -> list[Step]:
    if phase not in PATH:
        return [Step(p.value, "done" if n == 0 else "ahead") for n, p in enumerate(PATH)] + [Step(phase, "current")]
    index = PATH.index(Phase(phase))
    return [Step(p.value, "done" if n < index else "current" if n == index else "ahead") for n, p in enumerate(PATH)]


def move_page(move: MoveRange) -> MovePage:
    status = move_selectors.move_status(move)
    events = list(MoveEvent.objects.filter(move=move).order_by("-id")[:30])
    return MovePage(
        status=status,
        timeline=timeline(status.phase),
        lag=lag_chart(move),
        freezes=freeze_history(move),
        verify_runs=list(VerifyRun.objects.filter(move=move).order_by("-id")[:10]),
        events=events,
        errors=[e for e in events if e.kind == "error"],
        live=status.phase not in (Phase.COMPLETE, Phase.CANCELLED),
        progress_percent=round(100 * status.rows_copied / status.rows_total, 1) if status.rows_total else 100.0,
    )
