"""Benchmark of live data moves: copy rate vs raw COPY, write freeze under load, replication lag.

Run it on a private embedded stack (fresh servers, thrown away afterwards):

    .venv/bin/python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_moves.py

Options: ``--rows`` generations in the moved range (each with a usage event,
default 150000, so 300000 rows in all), ``--cutovers`` (default 10),
``--rate`` background writes per second (default 200), ``--json PATH``.

1. Copy: the same rows are copied from shard2 (server pg2) to shard1 (server
   pg1) twice each way: by a raw ``COPY (SELECT ... WHERE range) TO STDOUT`` on
   the source piped into ``COPY ... FROM STDIN`` on the target (the baseline,
   run first, before the move installs its fence trigger on the target), and by
   ``shardmove start`` until the move reaches ``catching_up`` (set-up included);
   the best of each pair is compared.
2. Cut-overs: with writes going on at ``--rate`` per second (half of them for
   users in the moving range), alternate ``switch-writes`` and ``rollback``
   (each a full freeze protocol) and record each freeze and every request's
   latency and outcome.
3. Lag: time from a commit on the source until it is visible on the target,
   sampled under the same load.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")

import django

django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from apps.content.models import Generation  # noqa: E402
from apps.content.services import generation_create  # noqa: E402
from migrations_tooling import fence, services  # noqa: E402
from migrations_tooling.copying import refresh_copy_state  # noqa: E402
from migrations_tooling.models import MoveRange, Phase  # noqa: E402
from migrations_tooling.pgconn import connect  # noqa: E402
from migrations_tooling.progress import Reporter  # noqa: E402
from shardrouter.control import conninfo_for  # noqa: E402
from shardrouter.keyspace import KEYSPACE_END, ShardRange  # noqa: E402
from shardrouter.mapstore import apply_map, load_map_from_database  # noqa: E402
from shardrouter.writes import run_sharded_write  # noqa: E402

LO, HI = 1000, 100_000  # the moved range (on shard2 in the map below)
SOURCE, TARGET = "shard2", "shard1"
TABLES = ("content_generation", "content_usageevent")


def log(message: str) -> None:
    print(message, flush=True)


def prepare(rows: int) -> None:
    call_command("migrate_shards", stdout=io.StringIO())
    base = load_map_from_database()
    apply_map(
        [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")],
        expected_version=base.version,
        reason="bench: two shards",
    )
    with connect(SOURCE) as conn:
        conn.execute("TRUNCATE content_generation, content_usageevent")
        # ~0.5 kB per generation (prompt and output text), like real rows; IDs above any Snowflake ID used later.
        conn.execute(
            """
            INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, seed,
                stop, status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at, updated_at,
                attempts, model_name, claimed_by, idempotency_key)
            SELECT g, %(lo)s + g %% (%(hi)s - %(lo)s), gen_random_uuid(), 'prompt ' || md5(g::text) || repeat(' words', 30),
                200, 0.8, 0.95, g, '["\\n\\n"]', 'succeeded', repeat(md5((g * 7)::text), 10), '', 'stop', 40, 200,
                now() - make_interval(secs => g), now(), 1, 'bench', '', ''
            FROM generate_series(1, %(rows)s) g
            """,
            {"lo": LO, "hi": HI, "rows": rows},
        )
        conn.execute(
            """
            INSERT INTO content_usageevent (id, user_id, kind, generation_id, tokens, created_at)
            SELECT id + %(rows)s, user_id, 'generation_requested', id, 240, created_at FROM content_generation
            """,
            {"rows": rows},
        )
        conn.execute("VACUUM ANALYZE content_generation")
        conn.execute("VACUUM ANALYZE content_usageevent")
    with connect(TARGET) as conn:
        conn.execute("TRUNCATE content_generation, content_usageevent")


def raw_copy() -> tuple[float, int]:
    """The baseline: COPY TO STDOUT on the source piped into COPY FROM STDIN on the target."""
    started = time.monotonic()
    copied = 0
    with psycopg.connect(conninfo_for(SOURCE)) as src, psycopg.connect(conninfo_for(TARGET)) as dst:
        for table in TABLES:
            with (
                src.cursor().copy(
                    f"COPY (SELECT * FROM {table} WHERE user_id >= {LO} AND user_id < {HI}) TO STDOUT"
                ) as out,
                dst.cursor().copy(f"COPY {table} FROM STDIN") as inp,
            ):
                for block in out:
                    inp.write(block)
        dst.commit()
        for table in TABLES:
            copied += dst.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
    seconds = time.monotonic() - started
    with connect(TARGET) as conn:
        conn.execute("TRUNCATE content_generation, content_usageevent")
    return seconds, copied


def move_copy() -> tuple[float, int, MoveRange]:
    """The move: from `shardmove start` until every table is copied and replication has taken over."""
    started = time.monotonic()
    move = services.move_start(lo=LO, hi=HI, target=TARGET, reporter=Reporter())
    with connect(TARGET) as target:
        while True:
            refresh_copy_state(move, target)
            if move.phase != Phase.COPYING:
                break
            time.sleep(0.02)
    seconds = time.monotonic() - started
    copied = sum(move.tables.values_list("rows_copied", flat=True))
    return seconds, copied, move


class Load:
    """Writes at a fixed total rate from a few threads; records every request's latency and outcome."""

    def __init__(self, rate: float, threads: int = 4) -> None:
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (start time, seconds)
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.interval = threads / rate
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def run(self, index: int) -> None:
        rng = random.Random(index)
        mine: dict[int, list[int]] = {}
        # Half the users inside the moving range, half outside it.
        users = [LO + 10 + index * 7 + k * 101 for k in range(4)] + [HI + 10 + index * 7 + k * 101 for k in range(4)]
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                user = rng.choice(users)
                started = time.monotonic()
                try:
                    if rng.random() < 0.6 or not mine.get(user):
                        mine.setdefault(user, []).append(generation_create(user_id=user, prompt="load").id)
                    else:
                        gid = rng.choice(mine[user])
                        run_sharded_write(
                            user_id=user,
                            work=lambda gid=gid, user=user: (
                                Generation.objects.for_user(user).filter(id=gid).update(prompt="edited")
                            ),
                        )
                except Exception as exc:
                    with self.lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                with self.lock:
                    self.latencies.append((started, time.monotonic() - started))
                next_at += self.interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            connections.close_all()

    def worst_between(self, start: float, end: float) -> float:
        with self.lock:
            return max((s for t, s in self.latencies if start <= t <= end), default=0.0)


def lag_samples(move: MoveRange, count: int) -> list[float]:
    samples = []
    with connect(move.source) as source, connect(move.target) as target:
        for _ in range(count):
            seq = fence.marker_bump(source, move.id)
            waited = fence.wait_for_marker(target, move.id, seq, timeout=10)
            samples.append(waited if waited is not None else float("inf"))
            time.sleep(0.1)
    return samples


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rows", type=int, default=150_000, help="generations in the moved range (plus as many usage events)"
    )
    parser.add_argument(
        "--cutovers", type=int, default=10, help="cut-overs to time (switch-writes and rollback alternate)"
    )
    parser.add_argument("--rate", type=float, default=200, help="background writes per second during the cut-overs")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()

    log(f"Preparing {args.rows:,} generations + {args.rows:,} usage events in [{LO}, {HI}) on {SOURCE} ...")
    prepare(args.rows)
    results: dict[str, Any] = {"rows": 2 * args.rows}

    raw_times, move_times = [], []
    for round_no in (1, 2):
        seconds, copied = raw_copy()
        raw_times.append(seconds)
        log(f"raw COPY pipe, round {round_no}:   {copied:,} rows in {seconds:.2f}s = {copied / seconds:,.0f} rows/s")
    move: MoveRange | None = None
    for round_no in (1, 2):
        if move is not None:
            services.move_cancel(move, reporter=Reporter(), dry_run=False, throttle=services.Throttle(20_000, 0))
        seconds, copied, move = move_copy()
        move_times.append(seconds)
        log(f"shardmove start, round {round_no}: {copied:,} rows in {seconds:.2f}s = {copied / seconds:,.0f} rows/s")
    assert move is not None
    rows = 2 * args.rows
    results["copy"] = {
        "raw_seconds": raw_times,
        "move_seconds": move_times,
        "raw_rows_per_s": rows / min(raw_times),
        "move_rows_per_s": rows / min(move_times),
        "ratio": min(raw_times) / min(move_times),
    }
    log(
        f"copy rate: move {rows / min(move_times):,.0f} rows/s vs raw COPY {rows / min(raw_times):,.0f} rows/s "
        f"= {100 * min(raw_times) / min(move_times):.0f}% (best of 2 each)"
    )

    reporter = Reporter()
    freezes: list[dict[str, float | str]] = []
    with Load(args.rate) as load:
        time.sleep(2)
        lags = lag_samples(move, 30)
        services.move_switch_reads(move, reporter=reporter, back=False, max_lag=1.0, dry_run=False)
        started = time.monotonic()
        services.move_verify(move, reporter=reporter, restart=False, chunk_rows=None)
        results["verify_rows_per_s"] = rows / (time.monotonic() - started)
        for n in range(args.cutovers):
            move.refresh_from_db()
            if move.phase == Phase.ROLLED_BACK:
                services.move_switch_reads(move, reporter=reporter, back=False, max_lag=1.0, dry_run=False)
            action = services.move_switch_writes if move.phase == Phase.READS_SWITCHED else services.move_rollback
            time.sleep(1)
            t0 = time.monotonic()
            result = action(move, reporter=reporter, max_freeze=2.0, max_lag=1.0, dry_run=False)
            t1 = time.monotonic()
            assert result is not None
            freezes.append(
                {"direction": result.direction, "freeze": result.freeze, "worst_request": load.worst_between(t0, t1)}
            )
            steps = ", ".join(f"{k} {v * 1000:.1f}" for k, v in result.timings.items())
            log(
                f"cut-over {n + 1:>2}: {result.direction:<13} freeze {result.freeze * 1000:6.1f} ms "
                f"(steps in ms: {steps}); slowest request meanwhile {load.worst_between(t0, t1) * 1000:6.1f} ms"
            )
        time.sleep(1)
    requests = len(load.latencies)
    seconds = [f["freeze"] for f in freezes]
    results["cutovers"] = freezes
    results["freeze_median_ms"] = 1000 * statistics.median(seconds)  # type: ignore[arg-type]
    results["freeze_worst_ms"] = 1000 * max(seconds)  # type: ignore[type-var]
    results["worst_request_ms"] = 1000 * max(float(f["worst_request"]) for f in freezes)
    results["requests"] = requests
    results["failed_requests"] = len(load.errors)
    results["request_rate"] = requests / (load.latencies[-1][0] - load.latencies[0][0])
    results["request_p50_ms"] = 1000 * percentile([s for _, s in load.latencies], 50)
    results["request_p99_ms"] = 1000 * percentile([s for _, s in load.latencies], 99)
    results["lag_median_ms"] = 1000 * statistics.median(lags)
    results["lag_worst_ms"] = 1000 * max(lags)
    log(json.dumps(results, indent=2, default=str))
    if load.errors:
        log("FAILED REQUESTS: " + "; ".join(load.errors[:5]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0 if not load.errors else 1


if __name__ == "__main__":
    sys.exit(main())
