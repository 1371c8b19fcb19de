"""The hot-shard advisor: where to split the key space so every database carries about the same load.

Pure: it gets each user's weight (rows, bytes or recent writes, read by
``shardrouter.stats``) and the map, and returns proposed moves with the balance
they would give. It changes nothing; the operator runs the printed
``shardmove`` commands.

The algorithm is greedy and keeps moves few and ranges whole: while the
heaviest database carries more than its share (total / databases) by more
than the tolerance, it moves to the lightest database the contiguous run of
the heaviest's users whose weight is closest to what both need (the smaller
of the heavy one's excess and the light one's room), but only if that lowers
the larger of the two loads. A run at the edge of a range takes the rest of
that range with it (no extra map pieces); a run of one user is the range
``[uid, uid + 1)``. A user heavier than a whole share cannot be evened out by
splitting: it is isolated on an empty database (a noisy tenant), and that
database then counts as settled, so the others are evened among themselves.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ShardMapError
from .keyspace import ShardRange, assign_range, format_key

TOLERANCE = 0.05  # stop once the heaviest database is within 5% of its share


@dataclass(frozen=True)
class Proposal:
    """One move: ``[lo, hi)`` from ``source`` to ``target``, carrying ``weight``."""

    lo: int
    hi: int
    source: str
    target: str
    weight: float
    users: int
    isolates_user: int | None

    @property
    def label(self) -> str:
        return f"[{format_key(self.lo)}, {format_key(self.hi)})"

    def commands(self) -> list[str]:
        lo, hi = format_key(self.lo), format_key(self.hi)
        return [
            f"manage.py shardmove plan {lo} {hi} --to {self.target}",
            f"manage.py shardmove start {lo} {hi} --to {self.target} --wait",
            "manage.py shardmove verify",
            "manage.py shardmove switch-reads",
            "manage.py shardmove switch-writes",
            "manage.py shardmove complete",
        ]


@dataclass
class Advice:
    by: str
    databases: list[str]
    total: float
    loads_before: dict[str, float]
    loads_after: dict[str, float]
    moves: list[Proposal] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.total / len(self.databases) if self.databases else 0.0

    def imbalance(self, loads: Mapping[str, float]) -> float:
        """Heaviest load over the even share (1.0 is perfectly even)."""
        return max(loads.values()) / self.share if self.share else 1.0

    @property
    def next_steps(self) -> list[str]:
        return [command for move in self.moves for command in move.commands()]

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "databases": self.databases,
            "total": self.total,
            "share": self.share,
            "loads_before": self.loads_before,
            "loads_after": self.loads_after,
            "imbalance_before": round(self.imbalance(self.loads_before), 4),
            "imbalance_after": round(self.imbalance(self.loads_after), 4),
            "moves": [asdict(move) | {"range": move.label, "commands": move.commands()} for move in self.moves],
            "next_steps": self.next_steps,
        }


def choose_databases(
    ranges: Sequence[ShardRange], known: Sequence[str], shards: int | None, *, control: str = ""
) -> list[str]:
    """The databases to spread over: those in the map, then spare ones up to ``shards`` (the control one last)."""
    in_map = sorted({r.alias for r in ranges})
    spare = sorted(set(known) - set(in_map), key=lambda alias: (alias == control, alias))
    if shards is None:
        return in_map + spare
    if shards < len(in_map):
        raise ShardMapError(
            f"--shards {shards} is fewer than the {len(in_map)} databases the map uses ({', '.join(in_map)}); "
            f"the advisor only spreads load. Pass --shards {len(in_map)} or more."
        )
    if shards > len(in_map) + len(spare):
        raise ShardMapError(
            f"--shards {shards} is more than the {len(in_map) + len(spare)} configured databases; add databases to "
            "DATABASES (and migrate them with `manage.py migrate_shards`) first."
        )
    return in_map + spare[: shards - len(in_map)]


def advise(
    *,
    ranges: Sequence[ShardRange],
    weights: Mapping[int, float],
    databases: Sequence[str],
    by: str,
    tolerance: float = TOLERANCE,
    max_moves: int | None = None,
) -> Advice:
    """Proposed moves that even the load of ``weights`` (user ID -> weight) over ``databases``."""
    current = list(ranges)
    users = sorted(weights)
    loads = _loads(current, users, weights, databases)
    advice = Advice(by, list(databases), float(sum(loads.values())), dict(loads), dict(loads))
    settled: set[str] = set()  # databases left to one tenant heavier than a share: nothing to even there
    for _ in range(max_moves if max_moves is not None else 3 * len(databases)):
        active = [a for a in databases if a not in settled]
        if len(active) < 2:
            break
        share = sum(loads[a] for a in active) / len(active)
        hot = max(active, key=lambda a: (loads[a], a))
        cold = min(active, key=lambda a: (loads[a], a))
        if share == 0 or loads[hot] - share <= tolerance * share:
            break
        mine = _users_of(current, users, hot)
        top = max(mine, key=lambda uid: (weights[uid], -uid))
        if weights[top] >= share and len(mine) == 1:
            settled.add(hot)
            continue
        if weights[top] >= share and loads[cold] == 0:
            proposal: Proposal | None = Proposal(top, top + 1, hot, cold, weights[top], 1, top)
            settled.add(cold)
        else:
            amount = min(loads[hot] - share, share - loads[cold])
            proposal = _best_run(current, users, weights, hot, cold, amount, loads) if amount > 0 else None
        if proposal is None:
            break
        advice.moves.append(proposal)
        current = assign_range(current, proposal.lo, proposal.hi, proposal.target)
        loads[hot] -= proposal.weight
        loads[proposal.target] += proposal.weight
    advice.loads_after = dict(loads)
    return advice


def _users_of(ranges: Sequence[ShardRange], users: Sequence[int], alias: str) -> list[int]:
    return [
        uid
        for item in ranges
        if item.alias == alias
        for uid in users[bisect.bisect_left(users, item.lo) : bisect.bisect_left(users, item.hi)]
    ]


def _loads(
    ranges: Sequence[ShardRange], users: Sequence[int], weights: Mapping[int, float], databases: Sequence[str]
) -> dict[str, float]:
    loads = dict.fromkeys(databases, 0.0)
    for item in ranges:
        for uid in users[bisect.bisect_left(users, item.lo) : bisect.bisect_left(users, item.hi)]:
            loads[item.alias] = loads.get(item.alias, 0.0) + weights[uid]
    return loads


def _best_run(
    ranges: Sequence[ShardRange],
    users: Sequence[int],
    weights: Mapping[int, float],
    hot: str,
    cold: str,
    amount: float,
    loads: Mapping[str, float],
) -> Proposal | None:
    """The contiguous run of ``hot``'s users (within one range) whose weight is closest to ``amount``."""
    best: tuple[float, int, Proposal] | None = None
    worst_now = loads[hot]
    for item in ranges:
        if item.alias != hot:
            continue
        inside = users[bisect.bisect_left(users, item.lo) : bisect.bisect_left(users, item.hi)]
        prefix = [0.0]
        for uid in inside:
            prefix.append(prefix[-1] + weights[uid])
        for i in range(len(inside)):
            # The end j whose run sum is closest to amount: the runs from i grow with j.
            j = bisect.bisect_left(prefix, prefix[i] + amount, lo=i + 1)
            for end in (j - 1, j):
                if end <= i or end > len(inside):
                    continue
                weight = prefix[end] - prefix[i]
                if weight <= 0 or max(loads[hot] - weight, loads[cold] + weight) >= worst_now:
                    continue  # moving it would not make the heaviest of the two lighter
                lo = item.lo if i == 0 else inside[i]
                hi = item.hi if end == len(inside) else inside[end - 1] + 1
                single = inside[i] if end - i == 1 else None
                if single is not None:
                    lo, hi = single, single + 1  # a noisy tenant: its own range, nothing else with it
                pieces = (lo != item.lo) + (hi != item.hi)
                proposal = Proposal(lo, hi, hot, cold, weight, end - i, single)
                key = (abs(weight - amount), pieces)
                if best is None or key < (best[0], best[1]):
                    best = (key[0], key[1], proposal)
    return best[2] if best else None
