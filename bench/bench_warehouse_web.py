"""Does the warehouse spare the shards? Web p95 of the Locust baseline while the cross-shard query loops.

    .venv/bin/python bench/cpu_shares.py -- .venv/bin/python bench/bench_warehouse_web.py

Starts a throwaway platform the way ``make loadtest`` does (embedded PostgreSQL x3 + Redis, gunicorn, Celery,
the generation service; ``locustfiles.localplatform``) in a temporary folder, adds ``--generations`` rows to its
shards (under the seeded load users, so the shard map holds), loads a DuckDB warehouse from them, then runs the
Locust baseline (``python -m locustfiles.run --headless``) four times, back to back:

    (c) no query   (a) the query loops on the shards   (b) the query loops on the warehouse   (c) no query again

The query is "tokens per day per model over all users" (the ``generations`` report), run back to back by one
process: scatter-gather over the shards (``apps.analytics.shards``) or the report on the warehouse on an open
connection. That process runs in its own cgroup capped at ``--query-cpus`` of a core: in production the
warehouse is another machine, so its own work must not be charged to the web servers here; on the shards the
work is the shards' (their servers are outside that cap). Web p95: every ``page:``, ``api:`` and ``auth:``
request after the ramp (``stream:`` and ``grpc:`` entries time generations, not the web tier).

Options: ``--generations`` (default 200000), ``--users`` (Locust users, default 10), ``--run-seconds`` per run
(default 60), ``--query-cpus`` (default 0.25), ``--json PATH``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quantumquill.devstack.cgroups import CpuCgroup  # noqa: E402
from quantumquill.devstack.preflight import DevstackError  # noqa: E402

SINCE, UNTIL = "2025-01-01", "2026-12-31"
WEB_GROUPS = ("page:", "api:", "auth:")


def log(message: str) -> None:
    print(message, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# --- work done inside the platform's environment (subprocesses with its settings) ---------------------------


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")
    import django

    django.setup()


def worker_fill(generations: int) -> None:
    """Bulk generations (each with a usage event) under the seeded users, on the shard that owns each user."""
    _django()
    import psycopg

    from shardrouter.control import conninfo_for
    from shardrouter.mapstore import load_map_from_database

    shard_map = load_map_from_database()
    with psycopg.connect(conninfo_for("default"), autocommit=True) as control:
        users = [int(u) for (u,) in control.execute("SELECT id FROM auth_user ORDER BY id").fetchall()]
    by_alias: dict[str, list[int]] = {}
    for user in users:
        by_alias.setdefault(shard_map.write_alias(user), []).append(user)
    for n, (alias, owned) in enumerate(sorted(by_alias.items())):
        count = generations * len(owned) // len(users)
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, seed,
                  stop, status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at, updated_at,
                  started_at, completed_at, claim_token, claimed_at, attempts, model_name, time_to_first_token_ms,
                  total_ms, claimed_by, idempotency_key)
                SELECT %(base)s + g, (%(users)s::bigint[])[1 + g %% %(nusers)s], gen_random_uuid(), 'prompt ' || g,
                  200, 0.8, 0.95, NULL, '[]'::jsonb,
                  (ARRAY['succeeded','succeeded','succeeded','failed','cancelled'])[1 + g %% 5],
                  repeat('x', 200 + g %% 300), '', 'length', 10 + g %% 40, 50 + g %% 150,
                  timestamptz '2025-06-01' + (g %% 330) * interval '1 day' + (g %% 86400) * interval '1 second',
                  now(), NULL, NULL, NULL, NULL, 1,
                  (ARRAY['ngram-small','ngram-large','gpt-like'])[1 + g %% 3], 20 + g %% 50,
                  100 + (g::bigint * 37) %% 2000, '', ''
                FROM generate_series(1, %(n)s) AS g
                """,
                {"base": (n + 1) * 10**15, "users": owned, "nusers": len(owned), "n": count},
            )
            conn.execute(
                "INSERT INTO content_usageevent (id, user_id, kind, generation_id, tokens, created_at) "
                "SELECT id + 100000000000000, user_id, 'generation_completed', id, prompt_tokens + completion_tokens, "
                "created_at FROM content_generation WHERE id >= %s",
                [(n + 1) * 10**15],
            )
            conn.execute("VACUUM ANALYZE content_generation")
            conn.execute("VACUUM ANALYZE content_usageevent")
        print(f"{alias}: {count:,} generations", flush=True)


def worker_sync(path: str) -> None:
    _django()
    from apps.analytics.conf import WarehouseConfig
    from apps.analytics.sync import Syncer

    outcome = Syncer(WarehouseConfig(duckdb_path=Path(path))).catch_up()
    print(f"warehouse loaded: {sum(s.loaded_rows for s in outcome.sources):,} rows", flush=True)


def worker_drop_capture() -> None:
    _django()
    import psycopg
    from django.conf import settings

    from apps.analytics import capture
    from shardrouter.control import conninfo_for

    for alias in settings.DATABASES:
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            capture.drop_capture(conn)


def worker_query(target: str, path: str) -> None:
    """Run the query back to back until SIGTERM; print how many ran and their median time."""
    _django()
    from datetime import date

    from apps.analytics.conf import WarehouseConfig
    from apps.analytics.engines import warehouse
    from apps.analytics.reports import run_report_on
    from apps.analytics.shards import run_report_on_shards

    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    since, until = date.fromisoformat(SINCE), date.fromisoformat(UNTIL)
    times: list[float] = []
    if target == "shards":
        while not stopping["now"]:
            started = time.perf_counter()
            run_report_on_shards("generations", since=since, until=until)
            times.append(time.perf_counter() - started)
    else:
        with warehouse(WarehouseConfig(duckdb_path=Path(path)), read_only=True) as wh:
            while not stopping["now"]:
                started = time.perf_counter()
                run_report_on(wh, "generations", since=since, until=until)
                times.append(time.perf_counter() - started)
    print(json.dumps({"queries": len(times), "median_ms": round(statistics.median(times) * 1000, 1)}), flush=True)


# --- the orchestration ---------------------------------------------------------------------------------------


def _worker(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", *args]


def _run_worker(env: dict[str, str], *args: str) -> None:
    subprocess.run(_worker(env, *args), env=env, cwd=REPO, check=True)


class QueryLoop:
    """The query loop as a process in its own cgroup, capped at ``cpus`` cores (high ``cpu.shares`` too)."""

    def __init__(self, env: dict[str, str], target: str, path: Path, cpus: float) -> None:
        self.group = CpuCgroup(f"qq-bench-warehouse-query-{os.getpid()}")
        self.process = subprocess.Popen(
            _worker(env, "query", target, str(path)), env=env, cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        try:
            self.group.create(cpus).add(self.process.pid)
        except (OSError, DevstackError) as exc:  # no root or cgroup v1 here, or a cap below the kernel's minimum
            log(f"  (no cgroup for the query loop: {exc}; it runs uncapped)")

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=120)
        try:
            self.group.remove()
        except OSError as exc:
            log(f"  cgroup {self.group.folders[0]} left behind: {exc}")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def web_figures(request_log: Path, *, skip_seconds: float) -> dict[str, Any]:
    with request_log.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"no requests in {request_log}")
    start = min(float(r["end"]) for r in rows)
    web = [r for r in rows if r["name"].startswith(WEB_GROUPS) and float(r["end"]) >= start + skip_seconds]
    times = sorted(float(r["response_ms"]) for r in web)
    span = max(float(r["end"]) for r in web) - min(float(r["end"]) for r in web)

    def pct(p: float) -> float:
        return _percentile(times, p)

    by_group = {
        group.rstrip(":"): round(
            _percentile(sorted(float(r["response_ms"]) for r in web if r["name"].startswith(group)), 0.95), 1
        )
        for group in WEB_GROUPS
        if any(r["name"].startswith(group) for r in web)
    }
    return {
        "p95_ms_by_group": by_group,
        "requests": len(times),
        "requests_per_second": round(len(times) / span, 1) if span else 0.0,
        "p50_ms": round(pct(0.50), 1),
        "p95_ms": round(pct(0.95), 1),
        "failed": sum(int(r["failed"]) for r in web),
    }


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def locust_run(platform: Any, work: Path, label: str, args: argparse.Namespace) -> dict[str, Any]:
    request_log = work / f"requests-{label}.csv"
    command = [
        sys.executable, "-m", "locustfiles.run", "--headless", "--shape", "baseline", "--host", platform.url,
        "--contentgen-target", platform.contentgen_target, "--reports-dir", str(work / "reports"),
        "--", "--baseline-users", str(args.users), "--ramp-seconds", "5", "--run-seconds", str(args.run_seconds),
        "--request-log", str(request_log),
    ]  # fmt: skip
    env = {**os.environ, "CONTENTGEN_TOKEN": platform.contentgen_token}
    with (work / f"locust-{label}.log").open("w") as out:
        subprocess.run(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False)
    return web_figures(request_log, skip_seconds=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--run-seconds", type=int, default=60)
    parser.add_argument("--query-cpus", type=float, default=0.25)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        {
            "fill": lambda: worker_fill(int(rest[0])),
            "sync": lambda: worker_sync(rest[0]),
            "drop-capture": worker_drop_capture,
            "query": lambda: worker_query(rest[0], rest[1]),
        }[kind]()
        return

    from bench._django import machine
    from locustfiles.localplatform import LocalPlatform, PlatformSettings

    work = Path(tempfile.mkdtemp(prefix="qq-bench-warehouse-web-"))
    results: dict[str, Any] = {"machine": machine(), "generations": args.generations, "users": args.users}
    log(f"machine: {machine()}; load average {load_average()}; work in {work}")
    # Four runs of sign-ups from one address would meet the per-address sign-up limit (20/hour) by the third.
    os.environ["QQ_SIGNUP_RATE"] = "100000/hour"
    platform = LocalPlatform(
        PlatformSettings(http_port=0, stack_dir=work / "stack", log_dir=work / "logs", seed_users=40), say=log
    )
    try:
        platform.start()
        env = {**platform.env, "DJANGO_SETTINGS_MODULE": "quantumquill.settings"}
        _run_worker(env, "fill", str(args.generations))
        path = work / "warehouse.duckdb"
        _run_worker(env, "sync", str(path))
        runs: list[tuple[str, str | None]] = [
            ("c_no_query", None),
            ("a_query_on_shards", "shards"),
            ("b_query_on_warehouse", "warehouse"),
            ("c_no_query_again", None),
        ]
        for label, target in runs:
            loop = QueryLoop(env, target, path, args.query_cpus) if target else None
            before = load_average()
            figures = locust_run(platform, work, label, args)
            if loop is not None:
                figures["query"] = loop.stop()
            figures["load_average_before_after"] = [before, load_average()]
            results[label] = figures
            log(f"{label}: {json.dumps(figures)}")
        base = statistics.mean([results["c_no_query"]["p95_ms"], results["c_no_query_again"]["p95_ms"]])
        results["baseline_p95_ms"] = round(base, 1)
        for label in ("a_query_on_shards", "b_query_on_warehouse"):
            results[f"{label}_p95_vs_baseline"] = round(results[label]["p95_ms"] / base, 2)
        log(
            f"web p95: no query {base:.0f} ms (mean of two runs); query on the shards "
            f"{results['a_query_on_shards']['p95_ms']:.0f} ms ({results['a_query_on_shards_p95_vs_baseline']}x); "
            f"on the warehouse {results['b_query_on_warehouse']['p95_ms']:.0f} ms "
            f"({results['b_query_on_warehouse_p95_vs_baseline']}x)"
        )
    finally:
        if platform.env:
            subprocess.run(_worker(platform.env, "drop-capture"), env=platform.env, cwd=REPO, check=False)
        platform.stop()
    log(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
