"""Sharding-readiness audit overhead: primary-key lookups with the audit on vs off, in the same run.

Run (starts private PostgreSQL servers for the run):
    python -m quantumquill.devstack exec --profile test -- python bench/bench_audit.py

Three cases, each interleaved with the audit off in every round so drift on a
busy machine favours neither:
- a routed lookup that names its user (``for_user(uid).get(id=...)``): what a
  ready code path costs under the audit (target: under 10% over off);
- a lookup that relies on the request context (``get(id=...)`` inside the
  middleware's context): a finding on every query, the audit's worst case;
- one routing decision (``db_for_read``) with a ``for_user`` hint.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._django import machine, median, percentile, setup_django

ROWS = 2000
ROUNDS = 30
LOOKUPS_PER_ROUND = 400
DECISIONS = 100_000


def main() -> None:
    setup_django()
    from apps.content.models import Generation
    from shardrouter import audit
    from shardrouter.context import _current_key
    from shardrouter.keyspace import KEYSPACE_END, ShardRange
    from shardrouter.mapstore import apply_map, load_map_from_database
    from shardrouter.router import ShardRouter
    from shardrouter.shardmap import current_map

    base = load_map_from_database()
    wanted = [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")]
    if list(base.ranges) != wanted:
        apply_map(wanted, expected_version=base.version, reason="bench_audit")
    user_id = 1500
    alias = current_map().write_alias(user_id)
    Generation.objects.using(alias).filter(user_id=user_id).delete()
    ids = [Generation.objects.for_user(user_id).create(user_id=user_id, prompt=f"bench {n}").id for n in range(ROWS)]
    rng = random.Random(11)
    audit.recorder.persist = False  # measure the analysis, not the periodic flush to the control database

    def timed(fn: Callable[[int], object], keys: list[int], *, audited: bool) -> float:
        audit.force_audit(audited)
        start = time.perf_counter_ns()
        for key in keys:
            fn(key)
        return (time.perf_counter_ns() - start) / len(keys) / 1000

    def named(key: int) -> object:
        return Generation.objects.for_user(user_id).get(id=key)

    def by_context(key: int) -> object:
        token = _current_key.set(user_id)
        try:
            return Generation.objects.get(id=key)
        finally:
            _current_key.reset(token)

    results: dict[str, dict[bool, list[float]]] = {"named": {True: [], False: []}, "context": {True: [], False: []}}
    for fn in (named, by_context):
        timed(fn, ids[:200], audited=True), timed(fn, ids[:200], audited=False)  # warm up
    for round_no in range(ROUNDS):
        keys = [rng.choice(ids) for _ in range(LOOKUPS_PER_ROUND)]
        for name, fn in (("named", named), ("context", by_context)):
            order = (True, False) if round_no % 2 else (False, True)
            for audited in order:
                results[name][audited].append(timed(fn, keys, audited=audited))

    # The analysis alone, in CPU time and without a database: how a queryset asks the router for its database.
    analysis_us: dict[tuple[str, bool], float] = {}
    for audited in (False, True, False, True):
        audit.force_audit(audited)
        for name, make in (
            ("named", lambda: Generation.objects.for_user(user_id).filter(id=1)),
            ("context", lambda: Generation.objects.filter(id=1)),
        ):
            token = _current_key.set(user_id)
            try:
                start = time.process_time_ns()
                for _ in range(DECISIONS // 10):
                    make().db  # noqa: B018 - the router call is the point
                analysis_us[(name, audited)] = (time.process_time_ns() - start) / (DECISIONS // 10) / 1000
            finally:
                _current_key.reset(token)

    router = ShardRouter()
    decision_us: dict[bool, float] = {}
    for audited in (False, True, False, True):
        audit.force_audit(audited)
        start = time.perf_counter_ns()
        for n in range(DECISIONS):
            router.db_for_read(Generation, shard_key=n & 0xFFFF)
        decision_us[audited] = (time.perf_counter_ns() - start) / DECISIONS / 1000
    audit.force_audit(None)
    findings = audit.recorder.findings()

    print(f"Machine: {machine()}")
    print(f"PK lookups on {alias}: {ROUNDS} rounds x {LOOKUPS_PER_ROUND}, medians of per-round means\n")
    print("| lookup | audit off µs | audit on µs | on / off | p90 on / p90 off |")
    print("|---|---|---|---|---|")
    labels = {
        "named": "names its user: `for_user(uid).get(id=...)`",
        "context": "relies on the request context: `get(id=...)` (a finding each time)",
    }
    for name, label in labels.items():
        off, on = median(results[name][False]), median(results[name][True])
        p90 = percentile(results[name][True], 90) / percentile(results[name][False], 90)
        print(f"| {label} | {off:.1f} | {on:.1f} | {on / off:.3f} | {p90:.3f} |")
    print("\nBuilding a queryset and asking for its database, CPU µs per query (no database):")
    for name in ("named", "context"):
        off, on = analysis_us[(name, False)], analysis_us[(name, True)]
        print(f"  {name}: off {off:.1f}, on {on:.1f}, audit adds {on - off:.1f} µs")
    print(f"Routing decision with a for_user hint: off {decision_us[False]:.2f} µs, on {decision_us[True]:.2f} µs")
    print(f"Findings recorded: {[(f.kind, f.count) for f in findings]}")
    Generation.objects.using(alias).filter(user_id=user_id).delete()


if __name__ == "__main__":
    main()
