"""Benchmark of the analytics warehouse: initial load vs raw COPY, follow lag, the cross-shard query.

Run it on a private embedded stack (fresh servers, thrown away afterwards):

    .venv/bin/python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_warehouse.py

On a shared machine, run it under ``bench/cpu_shares.py`` (servers and benchmark in one cgroup with a high
``cpu.shares``). The case study's size: ``--generations 1000000`` (2,000,000 rows; about 5 minutes).

Options: ``--generations`` (default 100000, each with a usage event: 200000 rows) spread over shard1 and shard2,
``--rate`` writes per second while following (default 200), ``--seconds`` of following (default 30),
``--load-only`` (part 1 alone), ``--rounds N`` of part 1 (each into new, empty warehouses; default 1),
``--engines`` (default ``postgresql,duckdb``), ``--json PATH``.

1. Load: the same rows the loader reads, by a raw ``COPY (SELECT ...) TO STDOUT`` out of every shard (the
   baseline: reading them and nothing else; as CSV and as binary, the faster of the two), then ``Syncer.catch_up()`` on an empty PostgreSQL database and on
   an empty DuckDB file (the initial load: read, write, aggregate, commit), the raw COPY again after each.
   Ratio = load rate / COPY rate, the COPY rate being the mean of the two COPYs around that load (and, reported
   too, the COPY before it alone). Each load's steps are timed too (``PhaseTimer``: each table's read and insert,
   commits, the daily aggregates, closing the warehouse), logged and kept in the JSON; ``plot_warehouse_steps.py``
   draws them.
2. Lag: single-row insert transactions at ``--rate`` per second in all (half on each shard) while the sync
   follows (DuckDB); for each applied source transaction, the time from its commit on the shard to the end of the
   sync cycle whose warehouse commit contains it.
3. The cross-shard question "tokens per day per model over all users": scatter-gather over the shards
   (``apps.analytics.shards``, what the platform had) vs the ``generations`` report on each warehouse, and vs a
   GROUP BY over the warehouse's raw facts. Median of 5 runs each; ratio = shards / warehouse.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")

import django

django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from apps.analytics import aggregates, capture  # noqa: E402
from apps.analytics.conf import WarehouseConfig  # noqa: E402
from apps.analytics.engines import DuckDBWarehouse, PostgresWarehouse, Warehouse, warehouse  # noqa: E402
from apps.analytics.facts import INITIAL_SELECT  # noqa: E402
from apps.analytics.reports import run_report, run_report_on  # noqa: E402
from apps.analytics.shards import run_report_on_shards  # noqa: E402
from apps.analytics.sync import Syncer  # noqa: E402
from bench._django import machine, percentile  # noqa: E402
from shardrouter.control import conninfo_for  # noqa: E402
from shardrouter.keyspace import KEYSPACE_END, ShardRange  # noqa: E402
from shardrouter.mapstore import apply_map, load_map_from_database  # noqa: E402

SHARDS = {"shard1": (1, 1000), "shard2": (1000, 1_000_000)}  # users drawn from these ranges
SINCE, UNTIL = date(2026, 1, 1), date(2026, 12, 31)


def log(message: str) -> None:
    print(message, flush=True)


def prepare(generations: int) -> None:
    call_command("migrate_shards", stdout=io.StringIO())
    base = load_map_from_database()
    apply_map(
        [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")],
        expected_version=base.version,
        reason="bench: two shards",
    )
    per_shard = generations // len(SHARDS)
    for n, (alias, (lo, hi)) in enumerate(SHARDS.items()):
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            capture.drop_capture(conn)
            conn.execute("TRUNCATE content_generation, content_usageevent")
            base_id = (n + 1) * 10**12
            conn.execute(
                """
                INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, seed,
                  stop, status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at, updated_at,
                  started_at, completed_at, claim_token, claimed_at, attempts, model_name, time_to_first_token_ms,
                  total_ms, claimed_by, idempotency_key)
                SELECT %(base)s + g, %(lo)s + (g::bigint * 7919) %% (%(hi)s - %(lo)s), gen_random_uuid(),
                  'prompt ' || g, 200, 0.8, 0.95, NULL, '[]'::jsonb,
                  (ARRAY['succeeded','succeeded','succeeded','failed','cancelled'])[1 + g %% 5],
                  repeat('x', 200 + g %% 300), '', 'length', 10 + g %% 40, 50 + g %% 150,
                  timestamptz '2026-01-01' + (g %% 330) * interval '1 day' + (g %% 86400) * interval '1 second',
                  now(), NULL, NULL, NULL, NULL, 1,
                  (ARRAY['ngram-small','ngram-large','gpt-like'])[1 + g %% 3], 20 + g %% 50, 100 + (g::bigint * 37) %% 2000, '', ''
                FROM generate_series(1, %(n)s) AS g
                """,
                {"base": base_id, "lo": lo, "hi": hi, "n": per_shard},
            )
            conn.execute(
                """
                INSERT INTO content_usageevent (id, user_id, kind, generation_id, tokens, created_at)
                SELECT id + 500000000000, user_id, 'generation_completed', id, prompt_tokens + completion_tokens, created_at
                FROM content_generation
                """
            )
            conn.execute("VACUUM ANALYZE content_generation")
            conn.execute("VACUUM ANALYZE content_usageevent")
    connections.close_all()


def raw_copy_seconds() -> tuple[float, int]:
    """The faster of a raw COPY as CSV (what the DuckDB load reads) and as binary (what the PostgreSQL load reads)."""
    rows = 0
    times = []
    for fmt in ("csv", "binary"):
        started = time.perf_counter()
        for alias in SHARDS:
            with psycopg.connect(conninfo_for(alias), autocommit=True) as conn, conn.cursor() as cur:
                for select in INITIAL_SELECT.values():
                    with cur.copy(f"COPY ({select}) TO STDOUT (FORMAT {fmt})") as copy:
                        for chunk in copy:
                            if fmt == "csv":
                                rows += bytes(chunk).count(b"\n")
        times.append(time.perf_counter() - started)
    return min(times), rows


def drop_capture() -> None:
    for alias in connections.settings:
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            capture.drop_capture(conn)


def load_seconds(config: WarehouseConfig, phases: list[tuple[str, float, float]]) -> float:
    """One initial load (``Syncer.catch_up()`` on an empty warehouse); ``phases`` gets its steps."""
    drop_capture()
    started = time.perf_counter()
    with PhaseTimer(started, phases):
        outcome = Syncer(config).catch_up()
    elapsed = time.perf_counter() - started
    assert all(s.error is None for s in outcome.sources), outcome
    return elapsed


class PhaseTimer:
    """Times the steps of a load by wrapping the warehouse's methods: ``(phase, start, end)``, seconds from start.

    Phases: each table's read and insert (``copy_rows_into``), each commit, the daily aggregates (with their
    commit) and closing the warehouse (DuckDB checkpoints there); the rest (schema, dimensions, slots, the load's
    checks on the source) is what lies between them.
    """

    def __init__(self, started: float, phases: list[tuple[str, float, float]]) -> None:
        self._started, self._phases = started, phases
        self._undo: list[tuple[Any, str, Any]] = []

    def _record(self, phase: str, begin: float) -> None:
        self._phases.append((phase, begin - self._started, time.perf_counter() - self._started))

    def _wrap(self, owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._record(phase, begin)

        setattr(owner, name, wrapped)
        self._undo.append((owner, name, original))

    def _wrap_transaction(self, owner: Any) -> None:
        original = owner.transaction

        @contextlib.contextmanager
        def wrapped(*args: Any, **kwargs: Any) -> Iterator[None]:
            with original(*args, **kwargs):
                yield
                body_done = time.perf_counter()
            self._record("commit", body_done)

        owner.transaction = wrapped
        self._undo.append((owner, "transaction", original))

    def __enter__(self) -> PhaseTimer:
        for cls in (DuckDBWarehouse, PostgresWarehouse):
            self._wrap(cls, "copy_rows_into", "read and insert")
            self._wrap(cls, "close", "close")
            self._wrap_transaction(cls)
        self._wrap(aggregates, "refresh_stale", "aggregates")
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        # Commits shorter than 10 ms (bookkeeping) and the aggregates' own (counted in theirs) are left out.
        aggregates_spans = [(b, e) for p, b, e in self._phases if p == "aggregates"]
        kept = [
            (p, b, e)
            for p, b, e in self._phases
            if p != "commit" or (e - b > 0.01 and not any(ab <= b and e <= ae for ab, ae in aggregates_spans))
        ]
        self._phases[:] = sorted(kept, key=lambda span: span[1])


def follow_lag(config: WarehouseConfig, *, rate: float, seconds: float) -> dict[str, Any]:
    lags: list[float] = []
    stop = threading.Event()
    syncer = Syncer(config)

    def on_cycle(outcome: Any) -> None:
        now = datetime.now(UTC)
        for source in outcome.sources:
            lags.extend((now - t).total_seconds() for t in source.commit_times)

    follower = threading.Thread(target=syncer.follow, args=(stop.is_set, on_cycle), daemon=True)
    follower.start()
    # Writers: single-row commits straight into the shards (what the application's writes look like in the WAL),
    # paced to ``rate`` in all, half on each shard.
    counts = {"writes": 0}
    lock = threading.Lock()

    def writer(alias: str, user: int, share: float) -> None:
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            n = 0
            begin = time.perf_counter()
            while time.perf_counter() - begin < seconds:
                delay = begin + n / share - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                gid = 9 * 10**12 + user * 10**6 + n
                conn.execute(
                    "INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, "
                    "stop, status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at, "
                    "updated_at, attempts, model_name, claimed_by, idempotency_key) VALUES (%s, %s, gen_random_uuid(), "
                    "'lag', 10, 0.8, 0.95, '[]', 'queued', '', '', '', 5, 0, now(), now(), 0, '', '', '')",
                    [gid, user],
                )
                n += 1
                with lock:
                    counts["writes"] += 1

    started = time.perf_counter()
    writers = [
        threading.Thread(target=writer, args=(alias, user, rate / 2), daemon=True)
        for alias, user in (("shard1", 7), ("shard2", 4242))
    ]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    writes = counts["writes"]
    elapsed = time.perf_counter() - started
    time.sleep(3)
    stop.set()
    follower.join(timeout=60)
    connections.close_all()
    return {
        "writes": writes,
        "writes_per_second": round(writes / elapsed, 1),
        "transactions_measured": len(lags),
        "lag_p50_s": round(statistics.median(lags), 3),
        "lag_p95_s": round(percentile(lags, 95), 3),
        "lag_max_s": round(max(lags), 3),
    }


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(fn: Any, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def facts_query(wh: Warehouse) -> None:
    wh.fetchall(
        "SELECT day, model_name, sum(prompt_tokens + completion_tokens) FROM fact_generation "
        "WHERE NOT deleted AND day BETWEEN %s AND %s GROUP BY day, model_name",
        [SINCE, UNTIL],
    )


def phase_summary(phases: list[tuple[str, float, float]], total: float) -> str:
    spent: dict[str, float] = {}
    for phase, begin, end in phases:
        spent[phase] = spent.get(phase, 0.0) + end - begin
    spent["other (schema, dimensions, slots, checks)"] = total - sum(spent.values())
    return ", ".join(f"{phase} {seconds:.2f}s" for phase, seconds in spent.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--load-only", action="store_true", help="only part 1: the initial loads and the raw COPYs")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of part 1, each into new, empty warehouses")
    parser.add_argument("--engines", default="postgresql,duckdb", help="warehouse engines to load, in this order")
    args = parser.parse_args()

    log(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    prepare(args.generations)
    scratch = Path(tempfile.mkdtemp(prefix="qq-bench-warehouse-"))
    engines = [e for e in args.engines.split(",") if e]
    results: dict[str, Any] = {"machine": machine(), "generations": args.generations, "rounds": []}
    pg_names: list[str] = []
    try:
        # The baseline is measured before and after each load (the machine's load moves between them): each
        # load's ratio is against the mean of the two COPYs around it.
        copies: list[float] = []
        copy_s, rows = raw_copy_seconds()
        copies.append(copy_s)
        results["rows"] = rows
        log(f"raw COPY out of the shards: {rows:,} rows in {copy_s:.2f}s ({rows / copy_s:,.0f} rows/s)")
        for round_number in range(1, args.rounds + 1):
            duck = WarehouseConfig(duckdb_path=scratch / f"warehouse-{round_number}.duckdb")
            pg_names.append(f"bench_warehouse_{uuid.uuid4().hex[:6]}")
            with psycopg.connect(conninfo_for("default"), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_names[-1]}"')
                pg_url = f"postgres://{conn.info.user}@{conn.info.host}:{conn.info.port}/{pg_names[-1]}"
            pg = WarehouseConfig(url=pg_url, duckdb_path=scratch / "x")
            configs = {"postgresql": pg, "duckdb": duck}
            loads: dict[str, Any] = {"round": round_number, "loadavg_start": _loadavg()}
            for label in engines:
                phases: list[tuple[str, float, float]] = []
                seconds = load_seconds(configs[label], phases)
                after, _ = raw_copy_seconds()
                copies.append(after)
                around = (copies[-2] + copies[-1]) / 2
                loads[label] = {
                    "load_s": round(seconds, 2),
                    "copy_before_s": round(copies[-2], 2),
                    "copy_after_s": round(after, 2),
                    "ratio": round(around / seconds, 2),
                    # Against the COPY just before the load alone as well: the one after it may run on a busier
                    # machine.
                    "ratio_copy_before": round(copies[-2] / seconds, 2),
                    "phases": [(p, round(b, 3), round(e, 3)) for p, b, e in phases],
                }
                log(
                    f"round {round_number}: initial load into {label}: {seconds:.2f}s ({rows / seconds:,.0f} rows/s); "
                    f"raw COPY before/after {copies[-2]:.2f}s/{after:.2f}s; ratio {around / seconds:.2f} "
                    f"({copies[-2] / seconds:.2f} against the COPY before it); load average {_loadavg()}"
                )
                log(f"  steps: {phase_summary(phases, seconds)}")
            loads["loadavg_end"] = _loadavg()
            results["rounds"].append(loads)
        results["raw_copy_s"] = [round(c, 2) for c in copies]
        if args.load_only:
            return
        shards_s = timed(lambda: run_report_on_shards("generations", since=SINCE, until=UNTIL))
        results["query_shards_s"] = round(shards_s, 4)
        log(f"tokens per day per model, scatter-gather on the shards: {shards_s * 1000:.1f} ms")
        for label, config in (("duckdb", duck), ("postgresql", pg)):
            if label not in engines:
                continue
            report_s = timed(lambda config=config: run_report(config, "generations", since=SINCE, until=UNTIL))
            with warehouse(config, read_only=True) as wh:
                held_s = timed(lambda wh=wh: run_report_on(wh, "generations", since=SINCE, until=UNTIL))
                facts_s = timed(lambda wh=wh: facts_query(wh))
            results[f"query_{label}_report_s"] = round(report_s, 4)
            results[f"query_{label}_report_open_connection_s"] = round(held_s, 4)
            results[f"query_{label}_facts_open_connection_s"] = round(facts_s, 4)
            log(
                f"  on {label}: report {report_s * 1000:.1f} ms with opening the warehouse ({shards_s / report_s:.1f}x), "
                f"{held_s * 1000:.1f} ms on an open connection ({shards_s / held_s:.0f}x); GROUP BY over the raw "
                f"facts on an open connection {facts_s * 1000:.1f} ms ({shards_s / facts_s:.1f}x)"
            )

        if "duckdb" in engines:
            lag = follow_lag(duck, rate=args.rate, seconds=args.seconds)
            results["follow_duckdb"] = lag
            log(
                f"follow at {lag['writes_per_second']} writes/s (DuckDB): lag p50 {lag['lag_p50_s']}s, "
                f"p95 {lag['lag_p95_s']}s"
            )
    finally:
        drop_capture()
        with psycopg.connect(conninfo_for("default"), autocommit=True) as conn:
            for name in pg_names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(json.dumps(results, indent=2))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
