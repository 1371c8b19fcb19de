"""Benchmark of mirrored reads: request latency with 0%, 1% and 10% of a moving range's reads mirrored.

Run it on a private embedded stack (fresh servers, thrown away afterwards):

    .venv/bin/python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_mirrored_reads.py

A move of ``[0, 500)`` from shard1 to shard3 is started and left in
``catching_up``; a writer thread keeps writing to the range (``--write-rate``
per second). Then, in the same process, rounds of ``--requests`` reads
(``Generation.objects.for_user(u).order_by("-id")[:20]``, the list page's
query) run with ``MIRROR_READS_SHARE`` at 0, 0.01 and 0.10, interleaved
(``--rounds`` times each), so drift of the shared machine hits every share
alike. Each read's latency is measured in the caller, so the observer, the
queue and the background comparisons (same process, same GIL) all count.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._django import machine, median, percentile, setup_django

setup_django()

from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402

from apps.content.models import Generation  # noqa: E402
from apps.content.services import generation_create  # noqa: E402
from migrations_tooling import services  # noqa: E402
from migrations_tooling.mirror import mirror, mirror_summary  # noqa: E402
from migrations_tooling.models import Phase  # noqa: E402
from migrations_tooling.pgconn import connect  # noqa: E402
from migrations_tooling.progress import Reporter  # noqa: E402
from shardrouter.keyspace import KEYSPACE_END, ShardRange  # noqa: E402
from shardrouter.mapstore import apply_map, load_map_from_database  # noqa: E402

SHARES = (0.0, 0.01, 0.10)
USERS = list(range(1, 500, 5))


def prepare() -> int:
    base = load_map_from_database()
    apply_map(
        [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")],
        expected_version=base.version,
        reason="bench: two shards",
    )
    with connect("shard1") as conn:
        conn.execute("TRUNCATE content_generation, content_usageevent")
        conn.execute(
            """
            INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, seed,
                stop, status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at, updated_at,
                attempts, model_name)
            SELECT g, (g % 100) * 5 + 1, gen_random_uuid(), 'prompt ' || md5(g::text), 200, 0.8, 0.95, g, '[]',
                'succeeded', repeat(md5(g::text), 4), '', 'stop', 40, 200, now(), now(), 1, 'bench'
            FROM generate_series(1, 20000) g
            """
        )
        conn.execute("VACUUM ANALYZE content_generation")
    move = services.move_start(lo=0, hi=500, target="shard3", reporter=Reporter())
    while services.move_refresh(move).phase == Phase.COPYING:
        time.sleep(0.1)
    return move.id


def writer(stop: threading.Event, rate: float) -> None:
    n = 0
    while not stop.is_set():
        generation_create(user_id=USERS[n % len(USERS)], prompt=f"bench write {n}")
        n += 1
        stop.wait(1 / rate)
    connections.close_all()


def one_round(requests: int) -> list[float]:
    latencies = []
    for n in range(requests):
        started = time.perf_counter()
        list(Generation.objects.for_user(USERS[n % len(USERS)]).order_by("-id")[:20])
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="reads per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per share (interleaved)")
    parser.add_argument("--write-rate", type=float, default=50, help="background writes per second to the range")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    move_id = prepare()
    print(f"move {move_id} catching_up; {machine()}", flush=True)
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(stop, args.write_rate), daemon=True)
    thread.start()
    results: dict[float, list[float]] = {share: [] for share in SHARES}
    one_round(200)  # warm-up: connections, caches
    for _ in range(args.rounds):
        for share in SHARES:
            settings.SHARDMOVE = {"MIRROR_READS_SHARE": share}
            results[share] += one_round(args.requests)
    stop.set()
    thread.join()
    settings.SHARDMOVE = {"MIRROR_READS_SHARE": 0.0}
    deadline = time.monotonic() + 120
    while not mirror.idle() and time.monotonic() < deadline:
        time.sleep(0.1)
    from migrations_tooling.models import MoveRange

    summary = mirror_summary(MoveRange.objects.get(id=move_id))
    base_p50, base_p99 = median(results[0.0]), percentile(results[0.0], 99)
    figures = {}
    print(f"{'mirrored':>9} {'reads':>7} {'p50 ms':>8} {'p99 ms':>8} {'p50/0%':>7} {'p99/0%':>7}")
    for share, values in results.items():
        p50, p99 = median(values), percentile(values, 99)
        figures[f"{share:.0%}"] = {"reads": len(values), "p50_ms": p50, "p99_ms": p99}
        print(f"{share:>9.0%} {len(values):>7} {p50:>8.3f} {p99:>8.3f} {p50 / base_p50:>7.3f} {p99 / base_p99:>7.3f}")
    print(
        f"mirrored reads compared: {summary.reads}, mismatches: {summary.mismatches}, dropped: {summary.dropped}, "
        f"latency target/source: {summary.latency_ratio or 0:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
