"""Routing overhead: a primary-key lookup through the shard router vs the same query with .using(alias).

Run (starts private PostgreSQL servers for the run):
    python -m quantumquill.devstack exec --profile test -- python bench/bench_routing.py

Target: routed lookups at most 5% slower than .using(alias), and a routing
decision under 5 microseconds.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._django import machine, median, percentile, setup_django

ROWS = 2000
ROUNDS = 30
LOOKUPS_PER_ROUND = 500
DECISIONS = 200_000


def main() -> None:
    setup_django()
    from apps.content.models import Generation
    from shardrouter.keyspace import KEYSPACE_END, ShardRange
    from shardrouter.mapstore import apply_map, load_map_from_database
    from shardrouter.router import ShardRouter
    from shardrouter.shardmap import current_map

    base = load_map_from_database()
    wanted = [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")]
    if list(base.ranges) != wanted:
        apply_map(wanted, expected_version=base.version, reason="bench_routing")
    user_id = 1500
    alias = current_map().write_alias(user_id)
    Generation.objects.using(alias).filter(user_id=user_id).delete()
    ids = [Generation.objects.for_user(user_id).create(user_id=user_id, prompt=f"bench {n}").id for n in range(ROWS)]
    rng = random.Random(7)

    def routed(keys: list[int]) -> float:
        start = time.perf_counter_ns()
        for key in keys:
            Generation.objects.for_user(user_id).get(id=key)
        return (time.perf_counter_ns() - start) / len(keys) / 1000

    def explicit(keys: list[int]) -> float:
        start = time.perf_counter_ns()
        for key in keys:
            Generation.objects.using(alias).filter(user_id=user_id).get(id=key)
        return (time.perf_counter_ns() - start) / len(keys) / 1000

    routed([ids[0]] * 200), explicit([ids[0]] * 200)  # warm connections and caches
    routed_us: list[float] = []
    explicit_us: list[float] = []
    for round_no in range(ROUNDS):
        keys = [rng.choice(ids) for _ in range(LOOKUPS_PER_ROUND)]
        # Alternate which goes first so drift on a busy machine does not favour either.
        if round_no % 2:
            routed_us.append(routed(keys))
            explicit_us.append(explicit(keys))
        else:
            explicit_us.append(explicit(keys))
            routed_us.append(routed(keys))

    router = ShardRouter()
    start = time.perf_counter_ns()
    for n in range(DECISIONS):
        router.db_for_read(Generation, shard_key=n & 0xFFFF)
    decision_us = (time.perf_counter_ns() - start) / DECISIONS / 1000

    r_med, e_med = median(routed_us), median(explicit_us)
    print(f"Machine: {machine()}")
    print(f"PK lookups on {alias}: {ROUNDS} rounds x {LOOKUPS_PER_ROUND}, medians of per-round means\n")
    print("| query | median µs/lookup | p90 of rounds µs |")
    print("|---|---|---|")
    print(f"| routed: `for_user(uid).get(id=...)` | {r_med:.1f} | {percentile(routed_us, 90):.1f} |")
    print(
        f"| explicit: `.using(alias).filter(user_id=uid).get(id=...)` | {e_med:.1f} | {percentile(explicit_us, 90):.1f} |"
    )
    print(f"\nRouted / explicit: {r_med / e_med:.3f} (target <= 1.05)")
    print(f"Routing decision (db_for_read): {decision_us:.2f} µs (target < 5 µs)")
    Generation.objects.using(alias).filter(user_id=user_id).delete()


if __name__ == "__main__":
    main()
